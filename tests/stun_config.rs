//! STUN settings of a runtime on loopback: a dead STUN server (nothing listening; named by
//! host name, so the lookup thread runs too) costs a first answer no more than the gather
//! timeout, is counted, and the session still connects on its host candidate; bad URLs
//! and settings fail at start with a message naming them, in Rust and over the C ABI.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::peers::loopback;
use common::str0m_client::{ClientEvent, ClientOptions, TestClient};
use smallwebrtc::{IceServer, Peer, Runtime, RuntimeConfig};

const T: Duration = Duration::from_secs(20);

fn stun(url: &str) -> Vec<IceServer> {
    vec![IceServer {
        urls: vec![url.to_owned()],
        ..IceServer::default()
    }]
}

#[test]
fn a_dead_stun_server_is_counted_and_the_offer_still_answered_within_the_bound() {
    // A port nobody listens on (bound a moment ago, then freed).
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bound = Duration::from_millis(400);
    let rt = Runtime::new(RuntimeConfig {
        ice_servers: stun(&format!("stun:localhost:{}", dead.port())),
        gather_timeout: bound,
        worker_threads: 2,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let peer = Peer::with_runtime(&rt, loopback(), None).unwrap();
    let mut client = TestClient::new(ClientOptions {
        video: false,
        ..ClientOptions::default()
    });
    let offer = client.offer();
    let t0 = Instant::now();
    let answer = peer.handle_offer(&offer).unwrap();
    let took = t0.elapsed();
    // It waited for the STUN server, and no longer than the bound (plus a busy machine's
    // scheduling).
    assert!(
        took >= bound - Duration::from_millis(100),
        "did not wait: {took:?}"
    );
    assert!(took < bound + Duration::from_secs(2), "waited {took:?}");
    assert!(!answer.contains("typ srflx"), "{answer}");
    client.accept_answer(&answer).unwrap();
    assert!(
        client
            .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
            .is_some(),
        "the session did not connect on its host candidate"
    );
    let s = rt.stats();
    assert!(s.stun_requests >= 1, "{s:?}");
    assert_eq!(
        (s.stun_answers_without_srflx, s.stun_responses),
        (1, 0),
        "{s:?}"
    );
    // The transaction gives up after its retransmissions (about 3 s).
    let end = Instant::now() + T;
    while rt.stats().stun_timeouts == 0 {
        assert!(Instant::now() < end, "no timeout counted: {:?}", rt.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn without_stun_servers_nothing_waits_or_counts() {
    let rt = Runtime::new(RuntimeConfig {
        ice_servers: vec![IceServer {
            urls: vec!["turn:127.0.0.1:3478?transport=tcp".into()],
            username: Some("u".into()),
            credential: Some("p".into()),
        }],
        worker_threads: 2,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let peer = Peer::with_runtime(&rt, loopback(), None).unwrap();
    let mut client = TestClient::new(ClientOptions {
        video: false,
        ..ClientOptions::default()
    });
    let answer = peer.handle_offer(&client.offer()).unwrap();
    client.accept_answer(&answer).unwrap();
    assert!(client
        .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
        .is_some());
    let s = rt.stats();
    assert_eq!(
        (s.stun_requests, s.stun_answers_without_srflx),
        (0, 0),
        "{s:?}"
    );
}

#[test]
fn bad_ice_settings_fail_at_start_and_say_why() {
    for (url, why) in [
        ("stun.example.org:3478", "scheme"),
        ("stun://stun.example.org", "//"),
        ("turn:host?transport=sctp", "transport"),
        ("stun:host:70000", "port"),
        ("turn:127.0.0.1:3478", "credential"),
    ] {
        let e = Runtime::new(RuntimeConfig {
            ice_servers: stun(url),
            ..RuntimeConfig::default()
        })
        .err()
        .unwrap_or_else(|| panic!("{url} was accepted"));
        let msg = e.to_string();
        assert!(msg.contains(url) && msg.contains(why), "{url}: {msg}");
    }
    let e = Runtime::new(RuntimeConfig {
        gather_timeout: Duration::from_secs(10),
        ..RuntimeConfig::default()
    })
    .err()
    .expect("a 10 s gather timeout is refused");
    assert!(e.to_string().contains("gather_timeout"), "{e}");
}

#[test]
fn ice_servers_over_the_c_abi() {
    use smallwebrtc::ffi::*;
    use std::ptr::null_mut;
    // SAFETY: every pointer is NULL, a live local, or a runtime from swrtc_runtime_new.
    unsafe {
        let mut c = std::mem::zeroed::<SwrtcRuntimeConfig>();
        assert_eq!(swrtc_runtime_config_default(&mut c), SWRTC_OK);
        assert!(c.ice_servers_json.is_null());
        assert_eq!(c.gather_timeout_ms, 1000);
        let mut rt: *mut SwrtcRuntime = null_mut();
        for bad in [
            c"not json",
            c"{\"urls\":\"stun:x\"}",
            c"[{\"urls\":\"stun:\"}]",
        ] {
            c.ice_servers_json = bad.as_ptr();
            assert_eq!(swrtc_runtime_new(&c, &mut rt), SWRTC_ERR_INVALID_ARGUMENT);
            assert!(rt.is_null());
        }
        c.ice_servers_json = c"[{\"urls\":[\"stun:127.0.0.1:9\"]}]".as_ptr();
        c.gather_timeout_ms = 5000;
        assert_eq!(swrtc_runtime_new(&c, &mut rt), SWRTC_ERR_INVALID_ARGUMENT);
        c.gather_timeout_ms = 200;
        c.worker_threads = 1;
        assert_eq!(swrtc_runtime_new(&c, &mut rt), SWRTC_OK);
        // The bindings start with the first peer (no shared socket): none yet.
        let mut s = SwrtcRuntimeStats::default();
        assert_eq!(swrtc_runtime_stats(rt, &mut s), SWRTC_OK);
        assert_eq!(s.stun_requests, 0);
        swrtc_runtime_free(rt);
    }
}
