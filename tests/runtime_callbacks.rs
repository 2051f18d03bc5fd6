//! Runtime and callback contract: callbacks run on the runtime's callback thread, in order;
//! a callback may free its own peer; once a peer is dropped no callback of it runs; a
//! runtime with two I/O threads spreads peers and serves them all.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::peers::{loopback, open_str0m};
use common::str0m_client::{ClientEvent, ClientOptions, TestClient};
use smallwebrtc::{Peer, PeerEvent, PeerHandler, PeerState, Runtime, RuntimeConfig};

const T: Duration = Duration::from_secs(15);

fn open(client: &mut TestClient, peer: &Peer) {
    open_str0m(client, peer, T);
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<PeerEvent>>,
    threads: Mutex<Vec<String>>,
    after_drop: AtomicBool,
    calls_after_drop: AtomicUsize,
    slow: AtomicBool,
    /// A peer the handler frees from inside its own callback.
    own: Mutex<Option<Peer>>,
}

impl PeerHandler for Recorder {
    fn on_event(&self, event: &PeerEvent) {
        if self.after_drop.load(Ordering::SeqCst) {
            self.calls_after_drop.fetch_add(1, Ordering::SeqCst);
        }
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().name().unwrap_or("?").to_string());
        self.events.lock().unwrap().push(event.clone());
        if let PeerEvent::Message { data, .. } = event {
            if data == b"free yourself" {
                // Freeing the peer from inside its own callback must not deadlock.
                drop(self.own.lock().unwrap().take());
            }
        }
        if self.slow.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < end, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn callbacks_run_on_the_callback_thread_in_order() {
    let rec = Arc::new(Recorder::default());
    let peer = Peer::new(loopback(), Some(rec.clone())).unwrap();
    let mut client = TestClient::new(ClientOptions::default());
    open(&mut client, &peer);
    for i in 0..50 {
        client.send_text(&format!("{i}"));
    }
    wait_until("50 messages", || {
        rec.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, PeerEvent::Message { .. }))
            .count()
            == 50
    });
    let events = rec.events.lock().unwrap().clone();
    let msgs: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            PeerEvent::Message { data, .. } => Some(String::from_utf8(data.clone()).unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(msgs, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    assert!(events.contains(&PeerEvent::State(PeerState::Connected)));
    assert!(rec
        .threads
        .lock()
        .unwrap()
        .iter()
        .all(|t| t == "swrtc-callbacks"));
    assert!(
        peer.poll_event(None).is_none(),
        "with a handler nothing is queued for polling"
    );
}

#[test]
fn a_callback_may_free_its_own_peer() {
    let rec = Arc::new(Recorder::default());
    let peer = Peer::new(loopback(), Some(rec.clone())).unwrap();
    let mut client = TestClient::new(ClientOptions::default());
    open(&mut client, &peer);
    *rec.own.lock().unwrap() = Some(peer);
    client.send_text("free yourself");
    assert!(client.wait_message(T, |m| m.contains("peerLeft")).is_some());
    wait_until("peer freed", || rec.own.lock().unwrap().is_none());
}

#[test]
fn no_callback_runs_after_drop_returns() {
    let rec = Arc::new(Recorder::default());
    rec.slow.store(true, Ordering::SeqCst);
    let peer = Peer::new(loopback(), Some(rec.clone())).unwrap();
    let mut client = TestClient::new(ClientOptions::default());
    open(&mut client, &peer);
    for i in 0..40 {
        client.send_text(&format!("spam {i}"));
    }
    wait_until("callbacks under way", || {
        rec.events.lock().unwrap().len() > 3
    });
    drop(peer); // a slow callback is running now; drop waits for it
    rec.after_drop.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rec.calls_after_drop.load(Ordering::SeqCst), 0);
}

#[test]
fn two_io_threads_serve_all_peers() {
    let rt = Runtime::new(RuntimeConfig {
        io_threads: 2,
        worker_threads: 1,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let mut pairs = Vec::new();
    for _ in 0..4 {
        let peer = Peer::with_runtime(&rt, loopback(), None).unwrap();
        let mut client = TestClient::new(ClientOptions::default());
        open(&mut client, &peer);
        pairs.push((client, peer));
    }
    assert_eq!(rt.peer_count(), 4);
    for (i, (client, peer)) in pairs.iter().enumerate() {
        let text = format!("peer {i}");
        client.send_text(&text);
        let end = Instant::now() + T;
        loop {
            assert!(Instant::now() < end, "message to peer {i}");
            if let Some(PeerEvent::Message { data, .. }) =
                peer.poll_event(Some(Duration::from_millis(20)))
            {
                assert_eq!(data, text.as_bytes());
                break;
            }
        }
    }
    drop(pairs);
    wait_until("peers released", || rt.peer_count() == 0);
}

#[test]
fn checks_before_any_candidate_still_connect() {
    // The offer carries no candidates and none is trickled: the client's checks arrive
    // first and the peer learns its address from them (peer-reflexive).
    let peer = Peer::new(loopback(), None).unwrap();
    let mut client = TestClient::new(ClientOptions::default());
    let offer: String = client
        .offer()
        .lines()
        .filter(|l| !l.starts_with("a=candidate"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    client
        .accept_answer(&peer.handle_offer(&offer).unwrap())
        .unwrap();
    assert!(client
        .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
        .is_some());
}
