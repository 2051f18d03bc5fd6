//! No lock of ours is held around app code, over real UDP with str0m clients sending
//! audio: two peers whose frame callbacks (on two worker threads at once) replace each
//! other's callbacks keep running; a callback that frees another peer completes, and no
//! callback of the freed peer runs after the free returns; event handlers that replace
//! each other's handlers complete too.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::peers::{loopback, open_str0m, wait_connected};
use common::str0m_client::{tone, ClientOptions, TestClient};
use smallwebrtc::media::audio::{AudioFrame, OpusEncoder};
use smallwebrtc::{Peer, PeerEvent, PeerHandler, Runtime, RuntimeConfig};

const T: Duration = Duration::from_secs(15);

fn runtime() -> Runtime {
    // Two workers at least, so the two peers' callbacks really run at the same time.
    Runtime::new(RuntimeConfig {
        worker_threads: 2,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn connect(rt: &Runtime) -> (TestClient, Arc<Peer>) {
    let mut client = TestClient::new(ClientOptions::default());
    let peer = Arc::new(Peer::with_runtime(rt, loopback(), None).unwrap());
    open_str0m(&mut client, &peer, T);
    wait_connected(&peer, T);
    (client, peer)
}

/// Sends a 1 kHz tone from every client at once, `n` 20 ms packets at real time.
fn send_tone(clients: &[&TestClient], n: u64) {
    let mut encs: Vec<OpusEncoder> = clients
        .iter()
        .map(|_| OpusEncoder::new(48_000, 1, 32_000, 5, false).unwrap())
        .collect();
    let mut out = vec![0u8; 4000];
    let start = Instant::now();
    for i in 0..n {
        let pcm = tone(1000.0, i * 960, 960, 48_000);
        for (c, enc) in clients.iter().zip(encs.iter_mut()) {
            let len = enc.encode(&pcm, &mut out).unwrap();
            c.send_opus(out[..len].to_vec(), i * 960);
        }
        let due = start + Duration::from_millis(20 * (i + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

type Cb = Box<dyn FnMut(&AudioFrame) + Send>;

/// A callback for `target` that counts into `calls` and, every frame, installs a fresh
/// one like it on `other` (which does the same back).
fn swapper(
    me: Arc<Peer>,
    other: Arc<Peer>,
    calls: Arc<AtomicU64>,
    other_calls: Arc<AtomicU64>,
    depth: u32,
) -> Cb {
    let weak_me = Arc::downgrade(&me);
    drop(me);
    Box::new(move |_f: &AudioFrame| {
        calls.fetch_add(1, Ordering::Relaxed);
        if depth == 0 {
            return;
        }
        if let Some(me) = weak_me.upgrade() {
            let next = swapper(
                other.clone(),
                me,
                other_calls.clone(),
                calls.clone(),
                depth - 1,
            );
            let _ = other.set_audio_callback(Some(next));
        }
    })
}

#[test]
fn frame_callbacks_replacing_each_other_on_two_workers_keep_running() {
    let rt = runtime();
    let (ca, a) = connect(&rt);
    let (cb, b) = connect(&rt);
    let (na, nb) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Deep enough for the whole run (each call builds the next one level shallower).
    a.set_audio_callback(Some(swapper(
        a.clone(),
        b.clone(),
        na.clone(),
        nb.clone(),
        10_000,
    )))
    .unwrap();
    b.set_audio_callback(Some(swapper(
        b.clone(),
        a.clone(),
        nb.clone(),
        na.clone(),
        10_000,
    )))
    .unwrap();
    send_tone(&[&ca, &cb], 150);
    wait_until("frames on both peers", || {
        na.load(Ordering::Relaxed) >= 100 && nb.load(Ordering::Relaxed) >= 100
    });
    // Both slots still hold a callback and the peers still answer from outside.
    a.set_audio_callback(None).unwrap();
    b.set_audio_callback(None).unwrap();
    eprintln!(
        "calls: a {} b {}",
        na.load(Ordering::Relaxed),
        nb.load(Ordering::Relaxed)
    );
}

#[test]
fn a_callback_that_frees_another_peer_completes_and_the_freed_peer_goes_quiet() {
    let rt = runtime();
    let (ca, a) = connect(&rt);
    let (cb, b) = connect(&rt);
    let b_calls = Arc::new(AtomicU64::new(0));
    let n = b_calls.clone();
    b.set_audio_callback(Some(Box::new(move |_f: &AudioFrame| {
        n.fetch_add(1, Ordering::Relaxed);
        // Long enough that A's free often lands while this runs on the other worker.
        std::thread::sleep(Duration::from_millis(2));
    })))
    .unwrap();
    let held = Arc::new(Mutex::new(Some(b)));
    let calls_at_free = Arc::new(Mutex::new(None));
    let a_calls = Arc::new(AtomicU64::new(0));
    let (h, at, bc, ac) = (
        held.clone(),
        calls_at_free.clone(),
        b_calls.clone(),
        a_calls.clone(),
    );
    a.set_audio_callback(Some(Box::new(move |_f: &AudioFrame| {
        let n = ac.fetch_add(1, Ordering::Relaxed);
        if n == 40 {
            // The last reference to B: dropping it frees B here, on A's worker.
            let b = h.lock().unwrap().take();
            drop(b);
            *at.lock().unwrap() = Some(bc.load(Ordering::SeqCst));
        }
    })))
    .unwrap();
    send_tone(&[&ca, &cb], 120);
    wait_until("A's callback to free B", || {
        calls_at_free.lock().unwrap().is_some()
    });
    let at_free = calls_at_free.lock().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(at_free > 0, "B's callback never ran");
    assert_eq!(
        b_calls.load(Ordering::SeqCst),
        at_free,
        "B's callback ran after B was freed"
    );
    assert!(a_calls.load(Ordering::Relaxed) > 41, "A's callback stopped");
    a.set_audio_callback(None).unwrap();
}

struct Replacer {
    other: Mutex<Option<Arc<Peer>>>,
    events: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl PeerHandler for Replacer {
    fn on_event(&self, _event: &PeerEvent) {
        self.events.fetch_add(1, Ordering::Relaxed);
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        if let Some(other) = self.other.lock().unwrap().clone() {
            // Installs a handler on the other peer that does the same back to this one's
            // peer would need a cycle of Arcs; a counting one is enough to exercise the slot.
            other.set_handler(Some(Arc::new(Replacer {
                other: Mutex::new(None),
                events: self.events.clone(),
                stop: self.stop.clone(),
            })));
        }
    }
}

#[test]
fn event_handlers_replacing_each_other_complete() {
    let rt = runtime();
    let (ca, a) = connect(&rt);
    let (cb, b) = connect(&rt);
    let events = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    a.set_handler(Some(Arc::new(Replacer {
        other: Mutex::new(Some(b.clone())),
        events: events.clone(),
        stop: stop.clone(),
    })));
    b.set_handler(Some(Arc::new(Replacer {
        other: Mutex::new(Some(a.clone())),
        events: events.clone(),
        stop: stop.clone(),
    })));
    for i in 0..50 {
        ca.send_text(&format!("a-{i}"));
        cb.send_text(&format!("b-{i}"));
    }
    wait_until("the messages' events", || {
        events.load(Ordering::Relaxed) >= 2
    });
    stop.store(true, Ordering::Relaxed);
    a.set_handler(None);
    b.set_handler(None);
}
