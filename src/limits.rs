//! Every bound and timeout of the library as a named constant, with the reason for its value.
//! Pure constants: no logic lives here.

use std::time::Duration;

/// Datagrams longer than this are dropped before str0m sees them. WebRTC never sends more
/// than a path MTU (str0m's own receive examples use the same size).
pub const MAX_DATAGRAM: usize = 2000;

/// A peer that has not reached connected this long after its offer is closed (Pipecat's value).
pub const CONNECTING_TIMEOUT: Duration = Duration::from_secs(60);

/// The client counts as alive while a `ping` arrived within this window (Pipecat's value).
pub const PING_WINDOW: Duration = Duration::from_secs(3);

/// A peer whose transport stays disconnected this long is reported failed and closed.
pub const DISCONNECTED_TIMEOUT: Duration = Duration::from_secs(30);

/// Outbound app messages queued before the data channel opens (Pipecat's value).
pub const MAX_PENDING_OUTBOUND: usize = 50;

/// Once the transport is connected, queueing for a data channel stops after this long and
/// later messages are dropped and counted (Pipecat's value).
pub const CHANNEL_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Inbound app messages held until the app calls connect; the oldest is dropped past this.
pub const MAX_HELD_INBOUND: usize = 256;

/// Events waiting for `poll_event` per peer; the oldest app message is dropped past this.
pub const MAX_EVENT_QUEUE: usize = 1024;

/// Largest app message accepted for sending. SCTP fragments it into MTU-sized chunks; this
/// bound keeps one message from monopolising the association.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// The minimum gap between two `renegotiate` requests sent to the client (Pipecat's value).
pub const RENEGOTIATE_INTERVAL: Duration = Duration::from_secs(2);

/// How long an API call waits for the I/O thread to answer a command before giving up.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Commands queued for one I/O thread; callers block briefly (then fail) past this.
pub const COMMAND_QUEUE: usize = 4096;

/// SCTP messages are kept below a 1280-byte path MTU (IPv6 minimum) minus headers.
pub const DATAGRAM_MTU: usize = 1150;

/// Datagrams kept per peer while their source is not yet accepted (its candidate pair is
/// still being checked). A DTLS first flight is 1 to 4 datagrams; this leaves room for a
/// few retransmissions and early RTP without letting a stranger fill memory.
pub const MAX_EARLY_DATAGRAMS: usize = 16;

/// Bytes kept per peer in those early datagrams (a DTLS client's flights with its
/// certificate take 2 to 3 kB).
pub const MAX_EARLY_BYTES: usize = 16 * 1024;

/// How long an early datagram waits for its pair. OpenSSL resends a lost ClientHello after
/// 1 s, so past 2 s a newer copy has arrived anyway.
pub const EARLY_DATAGRAM_TTL: Duration = Duration::from_secs(2);

/// Remote addresses remembered per peer as having sent an authenticated STUN check (their
/// datagrams are accepted before the pair is); the oldest is forgotten past this.
pub const MAX_CHECKED_SOURCES: usize = 8;
