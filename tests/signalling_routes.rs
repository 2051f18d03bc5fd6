//! The signalling routes as plain functions (no listening server): every bad request gets
//! its status and a JSON error, CORS on every response, the registry's pc_id rules
//! (renegotiate, restart, single mode, forgetting closed peers), `/start` sessions.

mod signalling_support;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use signalling_support::synthetic_offer;
use smallwebrtc::signalling::{
    routes, ConnectionMode, NewPeer, Registry, Request, Response, ServerConfig,
};
use smallwebrtc::PeerState;

fn config() -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    }
}

fn registry() -> Registry {
    Registry::new(config(), None).unwrap()
}

fn call(reg: &Registry, method: &str, path: &str, body: &str) -> Response {
    let r = routes::handle(&Request::new(method, path, body.as_bytes()), reg);
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("*"),
        "CORS on {method} {path}"
    );
    r
}

fn assert_error(r: &Response, status: u16, contains: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let e = r.body_json();
    let msg = e["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error in {e}"));
    assert!(
        msg.contains(contains),
        "{msg:?} should mention {contains:?}"
    );
}

fn offer_body(pc_id: Option<&str>, restart: bool) -> String {
    json!({"sdp": synthetic_offer(), "type": "offer", "pc_id": pc_id, "restart_pc": restart})
        .to_string()
}

#[test]
fn bad_offer_bodies_get_400_with_a_json_error() {
    let reg = registry();
    let cases: &[(&str, &str)] = &[
        ("{not json", "invalid JSON"),
        ("", "invalid JSON"),
        ("[1,2]", "JSON object"),
        ("\"sdp\"", "JSON object"),
        (r#"{"type":"offer"}"#, "missing field 'sdp'"),
        (r#"{"sdp":42,"type":"offer"}"#, "'sdp' must be a string"),
        (r#"{"sdp":"  ","type":"offer"}"#, "'sdp' is empty"),
        (
            r#"{"sdp":"v=0","type":"answer"}"#,
            "'type' must be \"offer\"",
        ),
        (r#"{"sdp":"v=0","type":"offer","pc_id":7}"#, "'pc_id'"),
        (
            r#"{"sdp":"v=0","type":"offer","restart_pc":"yes"}"#,
            "'restart_pc'",
        ),
        (r#"{"sdp":"hello","type":"offer"}"#, "m-lines"),
        (
            r#"{"sdp":"v=0\r\nm=audio banana\r\n","type":"offer"}"#,
            "SDP",
        ),
    ];
    for (body, msg) in cases {
        for path in ["/api/offer", "/api/offer/"] {
            assert_error(&call(&reg, "POST", path, body), 400, msg);
        }
    }
    assert!(reg.pc_ids().is_empty(), "no peer was created for garbage");
}

#[test]
fn bad_patch_bodies_get_400_and_unknown_pc_id_404() {
    let reg = registry();
    let cases: &[(&str, &str)] = &[
        ("{", "invalid JSON"),
        (r#"{"candidates":[]}"#, "'pc_id'"),
        (r#"{"pc_id":"x"}"#, "'candidates'"),
        (r#"{"pc_id":"x","candidates":{}}"#, "'candidates'"),
        (
            r#"{"pc_id":"x","candidates":[{"sdp_mid":"0"}]}"#,
            "candidates[0]",
        ),
    ];
    for (body, msg) in cases {
        assert_error(&call(&reg, "PATCH", "/api/offer", body), 400, msg);
    }
    let unknown = r#"{"pc_id":"SmallWebRTCConnection-00","candidates":[{"candidate":"","sdp_mid":"0","sdp_mline_index":0}]}"#;
    assert_error(
        &call(&reg, "PATCH", "/api/offer", unknown),
        404,
        "unknown pc_id",
    );
}

#[test]
fn wrong_methods_get_405_with_allow_unknown_paths_404() {
    let reg = registry();
    for (m, p) in [
        ("GET", "/api/offer"),
        ("PUT", "/api/offer"),
        ("DELETE", "/api/offer"),
        ("GET", "/start"),
        ("POST", "/"),
        ("DELETE", "/index.html"),
    ] {
        let r = call(&reg, m, p, "");
        assert_eq!(r.status, 405, "{m} {p}");
        assert!(r.header("Allow").is_some(), "{m} {p} says what is allowed");
        assert!(r.body_json()["error"].is_string());
    }
    assert_error(&call(&reg, "GET", "/nope", ""), 404, "no route");
    assert_error(
        &call(
            &reg,
            "POST",
            "/sessions/nope/api/offer",
            &offer_body(None, false),
        ),
        404,
        "session",
    );
    assert_error(
        &call(&reg, "PATCH", "/sessions/nope/api/offer", "{}"),
        404,
        "session",
    );
}

#[test]
fn preflight_and_page() {
    let reg = registry();
    for p in ["/api/offer", "/start", "/", "/sessions/any/api/offer"] {
        let r = call(&reg, "OPTIONS", p, "");
        assert_eq!(r.status, 204, "{p}");
        assert!(r
            .header("Access-Control-Allow-Methods")
            .unwrap()
            .contains("PATCH"));
        assert!(r
            .header("Access-Control-Allow-Headers")
            .unwrap()
            .contains("Content-Type"));
    }
    let page = call(&reg, "GET", "/?autoconnect=1", "");
    assert_eq!(page.status, 200);
    assert!(page
        .header("Content-Type")
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8(page.body).unwrap();
    for id in [
        "id=\"connect\"",
        "id=\"status\"",
        "id=\"chat-input\"",
        "id=\"chat-log\"",
        "id=\"stats\"",
        "window.swrtcTest",
    ] {
        assert!(html.contains(id), "the page has {id}");
    }
    let no_page = Registry::new(
        ServerConfig {
            serve_page: false,
            ..config()
        },
        None,
    )
    .unwrap();
    assert_eq!(call(&no_page, "GET", "/", "").status, 404);
}

#[test]
fn oversized_bodies_get_413() {
    let reg = Registry::new(
        ServerConfig {
            max_body: 1000,
            ..config()
        },
        None,
    )
    .unwrap();
    let big = format!(r#"{{"sdp":"{}"}}"#, "a".repeat(2000));
    assert_error(
        &call(&reg, "POST", "/api/offer", &big),
        413,
        "over 1000 bytes",
    );
    assert_error(
        &call(&reg, "PATCH", "/api/offer", &big),
        413,
        "over 1000 bytes",
    );
}

#[test]
fn offers_create_renegotiate_and_restart_peers() {
    let delivered: Arc<Mutex<Vec<NewPeer>>> = Arc::default();
    let d = delivered.clone();
    let reg = Registry::new(config(), Some(Arc::new(move |p| d.lock().push(p)))).unwrap();

    let r = call(&reg, "POST", "/api/offer", &offer_body(None, false));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let a = r.body_json();
    assert_eq!(a["type"], "answer");
    let pc1 = a["pc_id"].as_str().unwrap().to_owned();
    let (name, hex) = pc1.rsplit_once('-').unwrap();
    assert_eq!(name, "SmallWebRTCConnection");
    assert_eq!(hex.len(), 32);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(
        a["sdp"].as_str().unwrap().contains("127.0.0.1"),
        "loopback server, loopback candidates"
    );
    assert_eq!(delivered.lock().len(), 1);
    assert_eq!(delivered.lock()[0].pc_id, pc1);

    // Renegotiation: same peer, same pc_id, nothing new delivered.
    let r = call(&reg, "POST", "/api/offer", &offer_body(Some(&pc1), false));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_json()["pc_id"], pc1.as_str());
    assert_eq!(delivered.lock().len(), 1);

    // Trickle, including end-of-candidates.
    let patch = json!({"pc_id": pc1, "candidates": [
        {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host", "sdp_mid": "0", "sdp_mline_index": 0},
        {"candidate": "candidate:2 1 udp 2130706431 abcd.local 40001 typ host", "sdp_mid": "0", "sdp_mline_index": 0},
        {"candidate": "", "sdp_mid": "0", "sdp_mline_index": 0}]});
    let r = call(&reg, "PATCH", "/api/offer", &patch.to_string());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body_json(), json!({"status": "success"}));

    // Restart: the old peer closes, a new one with a new pc_id is delivered.
    let r = call(&reg, "POST", "/api/offer", &offer_body(Some(&pc1), true));
    assert_eq!(r.status, 200);
    let pc2 = r.body_json()["pc_id"].as_str().unwrap().to_owned();
    assert_ne!(pc1, pc2);
    assert_eq!(delivered.lock().len(), 2);
    let old = delivered.lock()[0].peer.clone();
    wait_closed(&old);
    assert_eq!(
        reg.pc_ids(),
        vec![pc2.clone()],
        "the old pc_id is forgotten"
    );
    assert_error(
        &call(&reg, "PATCH", "/api/offer", &patch.to_string()),
        404,
        "unknown pc_id",
    );

    // An unknown pc_id is a new connection (multiple mode).
    let r = call(
        &reg,
        "POST",
        "/api/offer",
        &offer_body(Some("SmallWebRTCConnection-gone"), false),
    );
    assert_eq!(r.status, 200);
    assert_eq!(reg.pc_ids().len(), 2);

    // Peers the app drops are forgotten.
    delivered.lock().clear();
    drop(old);
    assert!(reg.pc_ids().is_empty(), "{:?}", reg.pc_ids());
}

fn wait_closed(peer: &smallwebrtc::Peer) {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while peer.state() != PeerState::Closed {
        assert!(
            std::time::Instant::now() < end,
            "peer not closed: {:?}",
            peer.state()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn single_mode_refuses_a_second_connection() {
    let reg = Registry::new(
        ServerConfig {
            mode: ConnectionMode::Single,
            ..config()
        },
        None,
    )
    .unwrap();
    let r = call(&reg, "POST", "/api/offer", &offer_body(None, false));
    assert_eq!(r.status, 200);
    let pc1 = r.body_json()["pc_id"].as_str().unwrap().to_owned();
    let held = reg.accept(None).expect("the peer waits for accept");

    assert_error(
        &call(&reg, "POST", "/api/offer", &offer_body(None, false)),
        400,
        "already active",
    );
    assert_error(
        &call(
            &reg,
            "POST",
            "/api/offer",
            &offer_body(Some("SmallWebRTCConnection-other"), false),
        ),
        400,
        "pc_id mismatch",
    );
    // Its own client may renegotiate and restart.
    assert_eq!(
        call(&reg, "POST", "/api/offer", &offer_body(Some(&pc1), false)).status,
        200
    );
    let r = call(&reg, "POST", "/api/offer", &offer_body(Some(&pc1), true));
    assert_eq!(r.status, 200);
    let pc2 = r.body_json()["pc_id"].as_str().unwrap().to_owned();
    wait_closed(&held.peer);
    // Once the app closes the peer, a new client may come.
    let second = reg.accept(None).unwrap();
    assert_eq!(second.pc_id, pc2);
    second.peer.close().unwrap();
    wait_closed(&second.peer);
    assert_eq!(
        call(&reg, "POST", "/api/offer", &offer_body(None, false)).status,
        200
    );
}

#[test]
fn request_data_reaches_the_app_from_the_body_or_start() {
    let reg = registry();
    let body = json!({"sdp": synthetic_offer(), "type": "offer", "request_data": {"user": "a"}});
    assert_eq!(
        call(&reg, "POST", "/api/offer", &body.to_string()).status,
        200
    );
    assert_eq!(reg.accept(None).unwrap().request_data, json!({"user": "a"}));

    let body = json!({"sdp": synthetic_offer(), "type": "offer", "requestData": {"user": "b"}});
    assert_eq!(
        call(&reg, "POST", "/api/offer", &body.to_string()).status,
        200
    );
    assert_eq!(reg.accept(None).unwrap().request_data, json!({"user": "b"}));

    let s = call(
        &reg,
        "POST",
        "/start",
        r#"{"body":{"room":"r1"},"enableDefaultIceServers":true}"#,
    );
    assert_eq!(s.status, 200);
    let s = s.body_json();
    assert!(s["iceConfig"]["iceServers"].is_array());
    let id = s["sessionId"].as_str().unwrap();
    let r = call(
        &reg,
        "POST",
        &format!("/sessions/{id}/api/offer"),
        &offer_body(None, false),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let new = reg.accept(None).unwrap();
    assert_eq!(new.request_data, json!({"room": "r1"}));
    // PATCH goes to the same session URL.
    let patch = json!({"pc_id": new.pc_id, "candidates": [{"candidate": "", "sdp_mid": "0", "sdp_mline_index": 0}]});
    assert_eq!(
        call(
            &reg,
            "PATCH",
            &format!("/sessions/{id}/api/offer"),
            &patch.to_string()
        )
        .status,
        200
    );

    assert_eq!(
        call(&reg, "POST", "/start", "").status,
        200,
        "an empty /start body is fine"
    );
    assert_error(&call(&reg, "POST", "/start", "{x"), 400, "invalid JSON");
    assert!(reg.accept(Some(Duration::from_millis(10))).is_none());
}

#[test]
fn ice_servers_from_the_config_go_to_start() {
    let cfg = ServerConfig {
        ice_servers: vec![smallwebrtc::signalling::IceServer {
            urls: vec!["turn:turn.example.org:3478".into()],
            username: Some("u".into()),
            credential: Some("p".into()),
        }],
        ..config()
    };
    let reg = Registry::new(cfg, None).unwrap();
    let s: Value = call(&reg, "POST", "/start", "{}").body_json();
    assert_eq!(
        s["iceConfig"]["iceServers"],
        json!([{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}])
    );
}
