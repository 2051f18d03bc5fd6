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

/// The client counts as gone when nothing at all arrived from it this long, pinging or not.
/// We check its consent every [`CONSENT_CHECK_INTERVAL`], so a live client, even idle and
/// silent, answers several times within this window; a lost answer or two is tolerated.
pub const QUIET_WINDOW: Duration = Duration::from_secs(4);

/// How often our ICE agent checks the nominated pair once connected (str0m's maximum STUN
/// retransmission time; its default, 3 s, let a vanished client linger 22 s).
pub const CONSENT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// STUN retries before ICE gives a pair up: with checks every second, about 20 s, as with
/// str0m's defaults (9 retries, 3 s apart at most).
pub const CONSENT_RETRIES: usize = 20;

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
