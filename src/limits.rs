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

/// The signalling server's wait for a request line and headers, from the first byte (or
/// from the end of the previous response). A client that trickles its head holds one
/// connection slot at most this long.
pub const HTTP_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The wait for a request body once its head is in. Offers are a few kB, sent at once;
/// a body that stalls frees its connection slot after this.
pub const HTTP_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// A kept-alive connection with no request this long is closed (Pipecat's clients post an
/// offer and a few PATCHes within a second or two; browsers reconnect when they need to).
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// A response the client does not read within this is dropped with its connection (a
/// client that pipelines requests and never reads the replies fills the socket buffer).
pub const HTTP_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers per request; more get 431. Browsers send about 20.
pub const HTTP_MAX_HEADERS: usize = 64;

/// Bytes of request line plus headers; more get 431. Browsers send under 2 KiB; a page
/// with many cookies stays well under this.
pub const HTTP_MAX_HEAD_BYTES: usize = 16 * 1024;

/// Open HTTP connections at once; past it new ones get 503 and are closed. Each one costs
/// an fd and its buffers (no thread); this keeps fds free for peers under a 1024-fd limit.
pub const HTTP_MAX_CONNECTIONS: usize = 256;

/// Open HTTP connections from one source address, so one flooding source cannot take all
/// of [`HTTP_MAX_CONNECTIONS`] (a browser opens at most 6 per host).
pub const HTTP_MAX_CONNECTIONS_PER_SOURCE: usize = 32;

/// Requests read and waiting for a handler thread; past it the request gets 503. Handlers
/// run app code (`on_peer`) and take milliseconds, so a short queue is enough.
pub const HTTP_HANDLER_QUEUE: usize = 64;

/// How long the accept loop pauses after `EMFILE`/`ENFILE` before it tries again;
/// connections wait in the kernel's backlog meanwhile (they hold none of our fds).
pub const HTTP_ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The `Retry-After` seconds of a 503 (a cap or a full queue: try again soon).
pub const HTTP_RETRY_AFTER_SECS: u32 = 2;

/// m-lines (media sections) per offer; more get 400. Pipecat's clients send at most four
/// (audio, video, screen video, data); each section costs the peer memory and sockets
/// work, so an offer of hundreds of sections is an amplification attack.
pub const MAX_OFFER_M_LINES: usize = 8;

/// Remote ICE candidates added to one peer over its PATCHes; a PATCH past it is refused
/// (the ones already added stay). Every candidate is a pair for ICE to check: thousands
/// kept the I/O thread busy for seconds. Browsers trickle about 10.
pub const MAX_REMOTE_CANDIDATES: usize = 64;

/// Live peers of one signalling server (connecting or connected); past it an offer gets
/// 503. Each holds UDP sockets (fds, ports) and codec state.
pub const MAX_PEERS: usize = 256;

/// Live peers whose offers came from one source address.
pub const MAX_PEERS_PER_SOURCE: usize = 32;

/// Peers answered but not yet connected (they hold sockets until their connect timeout,
/// 60 s); past it an offer gets 503. A flood of offers that never connect stops here.
pub const MAX_CONNECTING_PEERS: usize = 64;

/// Not-yet-connected peers from one source address.
pub const MAX_CONNECTING_PEERS_PER_SOURCE: usize = 8;

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

/// How long after a client address's first authenticated check its first DTLS flight is
/// held before str0m sees it. libdatachannel starts DTLS from inside
/// `rtcSetRemoteDescription` (its ICE agent, which answered our checks before it had our
/// answer, connects as soon as it gets our credentials) but stores the answer, and with it
/// our fingerprint, only afterwards: a ServerHello back within that window has its
/// certificate checked against no answer and the handshake fails for good. Held, our
/// certificate reaches the client after it has stored the answer; other clients lose at
/// most this much of their connect time.
pub const DTLS_FIRST_FLIGHT_HOLD: Duration = Duration::from_millis(5);

/// How long the candidates of a client's first offer wait for its first authenticated
/// check before our checks go to them anyway. Checks that reach a client before it has our
/// answer teach its ICE agent our address early: libdatachannel then connects (and starts
/// DTLS) before it has stored our answer, and pairs that address once more when it reads
/// the answer's candidate, which holds its nomination back by its 50 ms pacing; and a
/// client's TURN server drops them until the client has installed its permissions, after
/// which str0m waits for its next retransmission. Once the client has checked us it has
/// our answer, and our checks go at once. A bot behind a NAT, whose checks must go out
/// before the client's can come in, loses at most this much.
pub const REMOTE_CANDIDATE_WAIT: Duration = Duration::from_millis(50);

/// Candidates held back that way (SDP and trickled); past this they go to str0m at once.
pub const MAX_WITHHELD_CANDIDATES: usize = 64;

/// Remote addresses bound to one peer on the shared UDP socket (a client's host and
/// reflexive addresses, plus a NAT rebinding or two); past it the peer's least recently
/// seen address is unbound.
pub const MAX_BINDINGS_PER_PEER: usize = 4;

/// Remote addresses bound on one shared UDP socket, all peers together. Only clients that
/// passed an authenticated check get one, so this is about 4 per live peer at most; past
/// it the least recently seen binding of all is unbound (its client rebinds with its next
/// check).
pub const MAX_BINDINGS: usize = 4096;

/// A binding on the shared UDP socket that has carried nothing for this long is dropped
/// (a live client sends media, pings or consent answers every second or so).
pub const BINDING_IDLE: Duration = Duration::from_secs(30);

/// A client address on the shared UDP socket that has sent nothing this long, while a
/// newer address of the same client has, counts as left behind by a NAT rebinding: what we
/// send there goes to the newer one (media arrives every 20 ms, so 1 s of silence is not a
/// live path).
pub const BINDING_STALE: Duration = Duration::from_secs(1);

/// Checks sent by the peers of a shared UDP socket whose answer may still come from an
/// address not bound yet (routed by transaction id); past it the oldest is forgotten (its
/// answer is then dropped and str0m's retransmission gets through once the client is bound).
pub const MAX_PENDING_CHECKS: usize = 4096;

// ICE over TCP (`RuntimeConfig::tcp_addr`, see `runtime::tcp`).

/// TCP connections open on the ICE-TCP port, all clients together; past it new ones are
/// accepted and closed at once (counted). A client uses one or two.
pub const MAX_TCP_CONNECTIONS: usize = 1024;

/// TCP connections open on the ICE-TCP port from one IP address (clients behind one NAT
/// share it); past it new ones from that address are closed at once (counted).
pub const MAX_TCP_CONNECTIONS_PER_IP: usize = 32;

/// A TCP connection that has not sent an authenticated STUN check for one of our peers
/// this long after it was accepted is closed (a browser sends its first check at once).
pub const TCP_FIRST_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// STUN checks an unbound TCP connection may send that name a live peer but fail its
/// integrity check; past it the connection is closed.
pub const TCP_MAX_UNVERIFIED_CHECKS: u32 = 4;

/// Bytes queued for one TCP connection the kernel would not take yet (about 0.5 s of
/// audio and data at voice rates). A frame that does not fit is dropped whole, so the
/// RFC 4571 framing stays intact; RTP copes with loss, DTLS and SCTP retransmit.
pub const TCP_WRITE_BUFFER: usize = 64 * 1024;
/// Longest an answer waits for the server-reflexive address of its sockets (STUN), by
/// default (`RuntimeConfig::gather_timeout`): a STUN server answers within one round trip,
/// and a dead one must not hold a client's offer for longer than this.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(1);

/// First STUN retransmission timeout; it doubles for each of the [`STUN_TRANSMISSIONS`].
/// Shorter than RFC 8489's 500 ms: an answer waits for it (see [`GATHER_TIMEOUT`]).
pub const STUN_RTO: Duration = Duration::from_millis(200);

/// Binding requests sent per transaction (200, 400, 800 ms apart, then
/// [`STUN_LAST_WAIT`]): a STUN server that answers none of them counts as dead.
pub const STUN_TRANSMISSIONS: u32 = 4;

/// Wait after the last binding request before the transaction times out.
pub const STUN_LAST_WAIT: Duration = Duration::from_millis(1600);

/// The shared UDP socket's server-reflexive address is asked again this often: NATs drop
/// idle UDP mappings after 30 s or more, and a rebinding NAT gives a new address.
pub const STUN_REFRESH: Duration = Duration::from_secs(30);

/// After a failed binding (timeout, error response) on the shared socket, the next try.
pub const STUN_RETRY: Duration = Duration::from_secs(10);

/// STUN bindings (local socket × server) an I/O thread keeps at once; past it new
/// per-peer sockets are not gathered for (counted as errors). 8 sockets × 4 servers for
/// every peer of a busy runtime.
pub const MAX_STUN_BINDINGS: usize = 8192;
