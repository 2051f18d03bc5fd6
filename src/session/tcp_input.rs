//! Frames from an ICE-TCP connection (RFC 6544). The runtime hands a connection's frames to
//! a session only after the session authenticated a check from it (see `runtime::tcp`), so
//! unlike UDP nothing is held early: a frame str0m does not accept yet from a checked
//! source is fed anyway (the client's DTLS right after its check passed), anything else is
//! dropped and counted.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::Input;

use super::{is_stun, is_stun_request, Session};

impl Session {
    /// Feeds one RFC 4571 frame received on an ICE-TCP connection from `source` to our
    /// `destination` (the connection's local address, our passive candidate).
    pub fn handle_tcp_frame(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        if self.life.is_closed() {
            return;
        }
        let Ok(contents) = DatagramRecv::try_from(data) else {
            self.stats.datagrams_dropped += 1;
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Tcp,
                source,
                destination,
                contents,
            },
        );
        if self.rtc.accepts(&input) {
            if is_stun_request(data) {
                self.early.note_check(source, now);
                // It has our answer: our checks may go now.
                self.release_candidates(now);
            }
        } else if is_stun(data) || !self.early.is_checked(source) {
            self.stats.datagrams_dropped += 1;
            return;
        } else {
            self.stats.early_delivered += 1;
        }
        self.feed(now, input);
    }
}
