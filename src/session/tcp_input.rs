//! Frames from an ICE-TCP connection (RFC 6544). The runtime hands a connection's frames to
//! a session only after the session authenticated a check from it (see `runtime::tcp`), so
//! unlike UDP nothing is held early: a frame str0m does not accept yet from a checked
//! source is fed anyway (the client's DTLS right after its check passed), anything else is
//! dropped and counted.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::net::Protocol;

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
        let Some(input) = self.receive(now, Protocol::Tcp, source, destination, data) else {
            return;
        };
        if self.rtc.accepts(&input) {
            if is_stun_request(data) {
                self.client_checked(source, now);
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
