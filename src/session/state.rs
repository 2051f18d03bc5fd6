//! The peer lifecycle as Pipecat defines it: transport state, ping liveness, the app's
//! connect counter, and which state the app has been told. Pure: instants in, verdicts out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::limits;

/// The state of a peer as the app sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// Created, no offer yet.
    New,
    /// Offer answered; ICE/DTLS under way (or connected but the app has not called connect).
    Connecting,
    /// Transport up, client alive, app ready.
    Connected,
    /// Transport lost, nothing heard from the client for 4 s, or no ping for 3 s; may
    /// come back.
    Disconnected,
    /// Gave up (connect timeout, disconnected too long, transport error). Closed follows.
    Failed,
    /// Closed; reported once, last.
    Closed,
}

/// What `update` asks of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Keep,
    /// Close the peer (a timeout expired).
    Close,
}

pub(crate) struct Lifecycle {
    connection_timeout: Duration,
    offer_at: Option<Instant>,
    connected_at: Option<Instant>,
    transport_up: bool,
    last_ping: Option<Instant>,
    ping_fresh: bool,
    /// Last datagram str0m accepted from the client (any kind: media, STUN, DTLS).
    last_heard: Option<Instant>,
    heard_fresh: bool,
    down_since: Option<Instant>,
    channel_wait_over: bool,
    app_connects: u32,
    app_ready: bool,
    failed: bool,
    closed: bool,
    reported: PeerState,
    reports: VecDeque<PeerState>,
}

impl Lifecycle {
    pub fn new(_now: Instant, connection_timeout: Duration) -> Self {
        Lifecycle {
            connection_timeout,
            offer_at: None,
            connected_at: None,
            transport_up: false,
            last_ping: None,
            ping_fresh: true,
            last_heard: None,
            heard_fresh: true,
            down_since: None,
            channel_wait_over: false,
            app_connects: 0,
            app_ready: false,
            failed: false,
            closed: false,
            reported: PeerState::New,
            reports: VecDeque::new(),
        }
    }

    pub fn offer_accepted(&mut self, now: Instant) {
        self.offer_at.get_or_insert(now);
    }

    pub fn transport_connected(&mut self, now: Instant) {
        self.transport_up = true;
        self.connected_at.get_or_insert(now);
    }

    pub fn ice_changed(&mut self, up: bool, _now: Instant) {
        // Before DTLS is up, ICE alone does not make a peer connected.
        if self.connected_at.is_some() {
            self.transport_up = up;
        }
    }

    pub fn ping(&mut self, now: Instant) {
        self.last_ping = Some(now);
        self.ping_fresh = true;
    }

    /// A datagram from the client arrived: it is there, whether or not it pings.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
        self.heard_fresh = true;
    }

    pub fn app_connect(&mut self) {
        self.app_connects = self.app_connects.saturating_add(1);
        self.app_ready = true;
    }

    /// Returns true when this was the last connect to undo.
    pub fn app_disconnect(&mut self) -> bool {
        self.app_connects = self.app_connects.saturating_sub(1);
        self.app_connects == 0
    }

    pub fn fail(&mut self) {
        if !self.failed && !self.closed {
            self.failed = true;
            self.push(PeerState::Failed);
        }
    }

    pub fn close(&mut self) {
        self.closed = true;
    }

    pub fn app_ready(&self) -> bool {
        self.app_ready
    }

    pub fn ever_connected(&self) -> bool {
        self.connected_at.is_some()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn reported(&self) -> PeerState {
        self.reported
    }

    /// True once the transport has been connected 10 s (or more) without the session
    /// having seen a data channel; the session checks for the channel itself.
    pub fn channel_wait_over(&self, now: Instant) -> bool {
        self.channel_wait_over
            || self
                .connected_at
                .is_some_and(|t| now >= t + limits::CHANNEL_OPEN_TIMEOUT)
    }

    fn alive(&self) -> bool {
        self.transport_up && self.ping_fresh && self.heard_fresh
    }

    fn actual(&self) -> PeerState {
        if self.closed {
            PeerState::Closed
        } else if self.failed {
            PeerState::Failed
        } else if self.connected_at.is_none() {
            if self.offer_at.is_some() {
                PeerState::Connecting
            } else {
                PeerState::New
            }
        } else if self.alive() {
            PeerState::Connected
        } else {
            PeerState::Disconnected
        }
    }

    /// Applies the clock; returns whether the peer must close. Queues state reports.
    pub fn update(&mut self, now: Instant) -> Verdict {
        if self.closed {
            self.report_visible();
            return Verdict::Keep;
        }
        if let Some(t) = self.last_ping {
            self.ping_fresh = now < t + limits::PING_WINDOW;
        }
        if let Some(t) = self.last_heard {
            self.heard_fresh = now < t + limits::QUIET_WINDOW;
        }
        if !self.channel_wait_over {
            self.channel_wait_over = self.channel_wait_over(now);
        }
        let mut verdict = Verdict::Keep;
        match self.connected_at {
            None => {
                if self
                    .offer_at
                    .is_some_and(|t| now >= t + self.connection_timeout)
                {
                    self.fail();
                    verdict = Verdict::Close;
                }
            }
            Some(_) if !self.alive() => {
                let since = *self.down_since.get_or_insert(now);
                if now >= since + limits::DISCONNECTED_TIMEOUT {
                    self.fail();
                    verdict = Verdict::Close;
                }
            }
            Some(_) => self.down_since = None,
        }
        self.report_visible();
        verdict
    }

    fn report_visible(&mut self) {
        let mut visible = self.actual();
        // Connected is only delivered once the app is ready (it called connect).
        if visible == PeerState::Connected && !self.app_ready {
            visible = PeerState::Connecting;
        }
        if visible != self.reported && self.reported != PeerState::Closed {
            self.push(visible);
        }
    }

    fn push(&mut self, s: PeerState) {
        self.reported = s;
        self.reports.push_back(s);
    }

    pub fn take_report(&mut self) -> Option<PeerState> {
        self.reports.pop_front()
    }

    /// The next instant at which `update` may change something.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let mut out: Option<Instant> = None;
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                out = Some(out.map_or(d, |o| o.min(d)));
            }
        };
        match self.connected_at {
            None => consider(self.offer_at.map(|t| t + self.connection_timeout)),
            Some(c) => {
                if !self.channel_wait_over {
                    consider(Some(c + limits::CHANNEL_OPEN_TIMEOUT));
                }
                if self.ping_fresh {
                    consider(self.last_ping.map(|t| t + limits::PING_WINDOW));
                }
                if self.heard_fresh {
                    consider(self.last_heard.map(|t| t + limits::QUIET_WINDOW));
                }
                consider(self.down_since.map(|t| t + limits::DISCONNECTED_TIMEOUT));
            }
        }
        out
    }
}
