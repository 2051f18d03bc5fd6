//! The amplification bounds of the signalling server: an offer of 550 audio sections is
//! refused before any peer exists, a peer takes a bounded number of remote candidates
//! (a PATCH past it is refused, earlier ones stay), peers past the per-source caps get 503
//! with `Retry-After` while other sources still get answers, zero limits are refused.

mod signalling_support;

use serde_json::json;
use signalling_support::{patch_json, post_json, synthetic_offer};
use smallwebrtc::signalling::{Server, ServerConfig, ServerLimits};

fn server(limits: ServerLimits) -> Server {
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        limits,
        ..ServerConfig::default()
    };
    Server::start(cfg, None).unwrap()
}

fn offer_of(sections: usize) -> String {
    let one = synthetic_offer();
    let start = one.find("m=audio").unwrap();
    let end = one.find("m=video").unwrap();
    let (head, audio) = (&one[..start], &one[start..end]);
    let mids: Vec<String> = (0..sections).map(|i| i.to_string()).collect();
    let group = format!("a=group:BUNDLE {}\r\n", mids.join(" "));
    let mut sdp = head.replace("a=group:BUNDLE 0 1 2\r\n", &group);
    for i in 0..sections {
        sdp.push_str(&audio.replace("a=mid:0", &format!("a=mid:{i}")));
    }
    sdp
}

#[test]
fn an_offer_of_550_audio_sections_is_refused() {
    let s = server(ServerLimits::default());
    let r = post_json(
        s.local_addr(),
        "/api/offer",
        &json!({"sdp": offer_of(550), "type": "offer"}),
    );
    assert_eq!(r.status, 400);
    let msg = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("550 media sections") && msg.contains("at most 8"),
        "{msg}"
    );
    assert!(s.registry().pc_ids().is_empty(), "no peer was made for it");
    // Pipecat's clients send up to four: still answered.
    let r = post_json(
        s.local_addr(),
        "/api/offer",
        &json!({"sdp": offer_of(4), "type": "offer"}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
}

#[test]
fn remote_candidates_per_peer_are_bounded() {
    let s = server(ServerLimits {
        max_remote_candidates: 10,
        ..ServerLimits::default()
    });
    let r = post_json(
        s.local_addr(),
        "/api/offer",
        &json!({"sdp": synthetic_offer(), "type": "offer"}),
    );
    assert_eq!(r.status, 200);
    let pc_id = r.json()["pc_id"].as_str().unwrap().to_owned();
    let cands = |n: usize, first: usize| {
        (first..first + n)
            .map(|i| json!({"candidate": format!("candidate:{i} 1 udp 2122260223 127.0.0.1 {} typ host", 40000 + i), "sdp_mid": "0", "sdp_mline_index": 0}))
            .collect::<Vec<_>>()
    };
    let patch = |list: Vec<serde_json::Value>| {
        patch_json(
            s.local_addr(),
            "/api/offer",
            &json!({"pc_id": pc_id, "candidates": list}),
        )
    };
    assert_eq!(patch(cands(6, 0)).status, 200);
    let r = patch(cands(6, 6));
    assert_eq!(r.status, 400);
    let msg = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("too many remote candidates") && msg.contains("at most 10"),
        "{msg}"
    );
    // Up to the bound still goes, and the earlier ones stayed counted.
    assert_eq!(patch(cands(4, 6)).status, 200);
    assert_eq!(patch(cands(1, 10)).status, 400);
    // End-of-candidates is not a candidate.
    assert_eq!(patch(vec![json!({"candidate": ""})]).status, 200);
}

#[test]
fn peers_past_the_caps_get_503_with_retry_after() {
    let s = server(ServerLimits {
        max_connecting_peers_per_source: 3,
        ..ServerLimits::default()
    });
    let mut held = Vec::new();
    for _ in 0..3 {
        let r = post_json(
            s.local_addr(),
            "/api/offer",
            &json!({"sdp": synthetic_offer(), "type": "offer"}),
        );
        assert_eq!(r.status, 200);
        held.push(s.accept(Some(std::time::Duration::from_secs(5))).unwrap());
    }
    let r = post_json(
        s.local_addr(),
        "/api/offer",
        &json!({"sdp": synthetic_offer(), "type": "offer"}),
    );
    assert_eq!(r.status, 503);
    assert!(r.header("Retry-After").is_some());
    assert!(r.json()["error"].as_str().unwrap().contains("connecting"));
    // A closed peer frees its place.
    held.pop().unwrap().peer.close().unwrap();
    let r = post_json(
        s.local_addr(),
        "/api/offer",
        &json!({"sdp": synthetic_offer(), "type": "offer"}),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn zero_limits_are_refused() {
    for l in [
        ServerLimits {
            max_peers: 0,
            ..ServerLimits::default()
        },
        ServerLimits {
            head_timeout: std::time::Duration::ZERO,
            ..ServerLimits::default()
        },
    ] {
        let cfg = ServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            limits: l,
            ..ServerConfig::default()
        };
        let e = Server::start(cfg, None).err().expect("refused");
        assert!(e.to_string().contains("must be above zero"), "{e}");
    }
}

/// The fuzz target's seed corpus (and any crash it finds, once added there) through the
/// same checks the fuzz target makes.
#[test]
fn the_request_parser_holds_on_the_fuzz_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/http_request");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        smallwebrtc::signalling::fuzz_http_request(&data);
        // Every split size too.
        for split in 1..=32u8 {
            let mut d = data.clone();
            d[0] = split;
            smallwebrtc::signalling::fuzz_http_request(&d);
        }
        n += 1;
    }
    assert!(n >= 5);
}
