//! WHIP and WHEP routes as plain functions (no listening server): 201 with answer,
//! Location, ETag and Link headers; trickle PATCH (204), stale If-Match (412), ICE restart
//! refused (422); DELETE ends the session; the errors `/api/offer` has (400, 404, 413,
//! 415, single mode); the access hook on every protocol, with 401's WWW-Authenticate.

mod signalling_support;

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use signalling_support::synthetic_offer;
use smallwebrtc::signalling::{
    routes, whip, Access, AccessRequest, ConnectionMode, IceServer, NewPeer, Protocol, Registry,
    Request, Response, ServerConfig,
};
use smallwebrtc::PeerState;

type Peers = Arc<Mutex<Vec<NewPeer>>>;

fn registry_with(cfg: ServerConfig) -> (Registry, Peers) {
    let peers: Peers = Arc::default();
    let p = peers.clone();
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..cfg
    };
    let reg = Registry::new(cfg, Some(Arc::new(move |n: NewPeer| p.lock().push(n)))).unwrap();
    (reg, peers)
}

fn registry() -> (Registry, Peers) {
    registry_with(ServerConfig::default())
}

fn send(reg: &Registry, req: Request) -> Response {
    let r = routes::handle(&req, reg);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    r
}

fn post_sdp(reg: &Registry, path: &str, sdp: &str) -> Response {
    send(
        reg,
        Request::new("POST", path, sdp).with_header("Content-Type", "application/sdp"),
    )
}

fn assert_error(r: &Response, status: u16, contains: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let msg = r.body_json()["error"].as_str().unwrap_or("").to_owned();
    assert!(
        msg.contains(contains),
        "{msg:?} should mention {contains:?}"
    );
}

fn frag(ufrag: &str, candidate: &str) -> String {
    format!(
        "a=ice-ufrag:{ufrag}\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=audio 9 RTP/AVP 0\r\n\
         a=mid:0\r\na={candidate}\r\na=end-of-candidates\r\n"
    )
}

fn patch(reg: &Registry, location: &str, body: &str, if_match: Option<&str>) -> Response {
    let mut req = Request::new("PATCH", location, body)
        .with_header("Content-Type", "application/trickle-ice-sdpfrag");
    if let Some(tag) = if_match {
        req = req.with_header("If-Match", tag);
    }
    send(reg, req)
}

#[test]
fn whip_post_creates_a_resource_that_trickles_and_ends() {
    let (reg, peers) = registry_with(ServerConfig {
        ice_servers: vec![
            IceServer {
                urls: vec!["stun:stun.example.net:3478".into()],
                username: None,
                credential: None,
            },
            IceServer {
                urls: vec!["turn:turn.example.net:3478?transport=udp".into()],
                username: Some("user".into()),
                credential: Some("pa\"ss".into()),
            },
        ],
        ..ServerConfig::default()
    });
    let r = post_sdp(&reg, "/whip?room=lobby&name=a%20b", &synthetic_offer());
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Content-Type"), Some("application/sdp"));
    let answer = String::from_utf8(r.body.clone()).unwrap();
    assert!(answer.starts_with("v=0"), "{answer}");
    let location = r.header("Location").expect("Location").to_owned();
    let pc_id = location.strip_prefix("/whip/").expect("under /whip/");
    let etag = r.header("ETag").expect("ETag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{etag}"
    );
    let links: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "Link")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        links,
        [
            "<stun:stun.example.net:3478>; rel=\"ice-server\"",
            "<turn:turn.example.net:3478?transport=udp>; rel=\"ice-server\"; username=\"user\"; \
             credential=\"pa\\\"ss\"; credential-type=\"password\"",
        ]
    );
    let expose = r.header("Access-Control-Expose-Headers").unwrap();
    for h in ["Location", "ETag", "Link"] {
        assert!(expose.contains(h), "{expose} exposes {h}");
    }

    // The app got the peer, knowing it came by WHIP, with the query as request_data.
    let new = peers.lock().pop().expect("the app got the peer");
    assert_eq!(new.protocol, Protocol::Whip);
    assert_eq!(new.pc_id, pc_id);
    assert_eq!(new.request_data, json!({"room": "lobby", "name": "a b"}));

    // Trickle: 204 with the current tag or none; a stale tag is 412; a new ufrag is an
    // ICE restart, refused with 422.
    let cand = "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host";
    assert_eq!(
        patch(&reg, &location, &frag("abcd", cand), Some(&etag)).status,
        204
    );
    assert_eq!(
        patch(&reg, &location, &frag("abcd", cand), None).status,
        204
    );
    assert_error(
        &patch(&reg, &location, &frag("abcd", cand), Some("\"stale\"")),
        412,
        "If-Match",
    );
    assert_error(
        &patch(&reg, &location, &frag("zzzz", cand), Some("*")),
        422,
        "ICE restart",
    );
    let r = send(&reg, Request::new("PATCH", &location, frag("abcd", cand)));
    assert_error(&r, 415, "application/trickle-ice-sdpfrag");
    assert_error(
        &patch(&reg, &location, "hello\r\n", None),
        400,
        "not an SDP line",
    );

    // The resource is WHIP's: the same id under /whep is unknown.
    let r = send(&reg, Request::new("DELETE", &format!("/whep/{pc_id}"), ""));
    assert_error(&r, 404, "no whep session");

    assert_eq!(
        send(&reg, Request::new("DELETE", &location, "")).status,
        200
    );
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while new.peer.state() != PeerState::Closed {
        assert!(std::time::Instant::now() < end, "DELETE closes the peer");
        let _ = new
            .peer
            .poll_event(Some(std::time::Duration::from_millis(20)));
    }
    assert!(reg.peer(pc_id).is_none());
    assert_error(
        &send(&reg, Request::new("DELETE", &location, "")),
        404,
        pc_id,
    );
    assert_error(
        &patch(&reg, &location, &frag("abcd", cand), None),
        404,
        pc_id,
    );
}

#[test]
fn whep_post_makes_a_whep_peer() {
    let (reg, peers) = registry();
    let offer = synthetic_offer().replace("a=sendrecv", "a=recvonly");
    let r = post_sdp(&reg, "/whep", &offer);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let location = r.header("Location").unwrap();
    assert!(location.starts_with("/whep/"), "{location}");
    let answer = String::from_utf8(r.body.clone()).unwrap();
    assert!(
        answer.contains("a=sendonly"),
        "answers recvonly with sendonly: {answer}"
    );
    let new = peers.lock().pop().unwrap();
    assert_eq!(new.protocol, Protocol::Whep);
    assert_eq!(new.request_data, Value::Null);
    // Pipecat peers say so too.
    let body = json!({"sdp": synthetic_offer(), "type": "offer"}).to_string();
    assert_eq!(
        send(&reg, Request::new("POST", "/api/offer", body)).status,
        200
    );
    assert_eq!(peers.lock().pop().unwrap().protocol, Protocol::Pipecat);
}

#[test]
fn bad_whip_requests_get_the_errors_api_offer_has() {
    let (reg, peers) = registry_with(ServerConfig {
        max_body: 8 * 1024,
        ..ServerConfig::default()
    });
    for path in ["/whip", "/whep"] {
        let r = send(&reg, Request::new("POST", path, synthetic_offer()));
        assert_error(&r, 415, "application/sdp");
        let r = send(
            &reg,
            Request::new("POST", path, synthetic_offer())
                .with_header("Content-Type", "application/json"),
        );
        assert_error(&r, 415, "not application/json");
        assert_error(&post_sdp(&reg, path, "hello"), 400, "SDP");
        assert_error(&post_sdp(&reg, path, "  \r\n"), 400, "no SDP offer");
        let r = send(
            &reg,
            Request::new("POST", path, vec![0xff, 0xfe, b'v'])
                .with_header("Content-Type", "application/sdp"),
        );
        assert_error(&r, 400, "UTF-8");
        assert_error(&post_sdp(&reg, path, &"v".repeat(9000)), 413, "8192");
        let r = send(&reg, Request::new("GET", path, ""));
        assert_eq!(r.status, 405);
        assert_eq!(r.header("Allow"), Some("POST, OPTIONS"));
        let r = send(&reg, Request::new("PUT", &format!("{path}/x"), ""));
        assert_eq!(r.status, 405);
        assert_eq!(r.header("Allow"), Some("PATCH, DELETE, OPTIONS"));
        let r = patch(
            &reg,
            &format!("{path}/nope"),
            "a=end-of-candidates\r\n",
            None,
        );
        assert_error(&r, 404, "nope");
        assert_eq!(
            send(&reg, Request::new("GET", &format!("{path}/a/b"), "")).status,
            404
        );
    }
    // Content-Type parameters and case do not matter.
    let r = send(
        &reg,
        Request::new("POST", "/whip", synthetic_offer())
            .with_header("content-type", "Application/SDP; charset=utf-8"),
    );
    assert_eq!(r.status, 201);
    assert!(peers.lock().len() == 1);
    // Preflights advertise what the endpoints take.
    let r = send(&reg, Request::new("OPTIONS", "/whip", ""));
    assert_eq!(
        (r.status, r.header("Accept-Post")),
        (204, Some("application/sdp"))
    );
    let r = send(&reg, Request::new("OPTIONS", "/whep/any", ""));
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("Accept-Patch"),
        Some("application/trickle-ice-sdpfrag")
    );
    assert!(r
        .header("Access-Control-Allow-Methods")
        .unwrap()
        .contains("DELETE"));
}

#[test]
fn single_mode_caps_whip_like_api_offer() {
    let (reg, peers) = registry_with(ServerConfig {
        mode: ConnectionMode::Single,
        ..ServerConfig::default()
    });
    assert_eq!(post_sdp(&reg, "/whip", &synthetic_offer()).status, 201);
    assert_error(
        &post_sdp(&reg, "/whep", &synthetic_offer()),
        400,
        "single-connection",
    );
    let body = json!({"sdp": synthetic_offer()}).to_string();
    let r = send(&reg, Request::new("POST", "/api/offer", body));
    assert_error(&r, 400, "single-connection");
    // Ending the WHIP session frees the slot.
    let pc_id = peers.lock()[0].pc_id.clone();
    assert_eq!(
        send(&reg, Request::new("DELETE", &format!("/whip/{pc_id}"), "")).status,
        200
    );
    assert_eq!(post_sdp(&reg, "/whep", &synthetic_offer()).status, 201);
}

#[test]
fn access_hook_guards_every_protocol() {
    type Seen = Arc<Mutex<Vec<(String, String, Protocol, Value)>>>;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let (reg, peers) = registry_with(ServerConfig {
        access: Some(Arc::new(move |r: &AccessRequest<'_>| {
            s.lock().push((
                r.method.to_owned(),
                r.path.to_owned(),
                r.protocol,
                r.request_data.clone(),
            ));
            match r.bearer_token() {
                Some("good") => Access::Allow,
                Some(_) => Access::Forbidden("that token may not publish".into()),
                None => Access::Unauthorized(String::new()),
            }
        })),
        ..ServerConfig::default()
    });
    let authed =
        |req: Request, token: &str| req.with_header("Authorization", &format!("Bearer {token}"));
    let whip = || {
        Request::new("POST", "/whip?room=a", synthetic_offer())
            .with_header("Content-Type", "application/sdp")
    };

    let r = send(&reg, whip());
    assert_error(&r, 401, "unauthorized");
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    assert_error(&send(&reg, authed(whip(), "bad")), 403, "may not publish");
    assert!(peers.lock().is_empty(), "no peer for refused requests");
    let r = send(&reg, authed(whip(), "good"));
    assert_eq!(r.status, 201);
    let location = r.header("Location").unwrap().to_owned();
    assert_eq!(
        seen.lock().last().cloned().unwrap(),
        (
            "POST".into(),
            "/whip".into(),
            Protocol::Whip,
            json!({"room": "a"})
        )
    );
    // Resource requests are asked too (before revealing whether the resource exists).
    assert_error(&send(&reg, Request::new("DELETE", &location, "")), 401, "");
    assert_error(
        &send(&reg, Request::new("DELETE", "/whip/none", "")),
        401,
        "",
    );
    let cand = "a=end-of-candidates\r\n";
    let r = send(
        &reg,
        authed(Request::new("PATCH", &location, cand), "good")
            .with_header("Content-Type", "application/trickle-ice-sdpfrag"),
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        send(&reg, authed(Request::new("DELETE", &location, ""), "good")).status,
        200
    );

    // WHEP, /api/offer, PATCH /api/offer and /start.
    let whep = Request::new("POST", "/whep", synthetic_offer())
        .with_header("Content-Type", "application/sdp");
    assert_eq!(send(&reg, whep.clone()).status, 401);
    assert_eq!(send(&reg, authed(whep, "good")).status, 201);
    assert_eq!(seen.lock().last().unwrap().2, Protocol::Whep);
    let body = json!({"sdp": synthetic_offer(), "request_data": {"user": 7}}).to_string();
    let r = send(&reg, Request::new("POST", "/api/offer", body.clone()));
    assert_eq!(
        (r.status, r.header("WWW-Authenticate")),
        (401, Some("Bearer"))
    );
    assert_eq!(
        seen.lock().last().cloned().unwrap(),
        (
            "POST".into(),
            "/api/offer".into(),
            Protocol::Pipecat,
            json!({"user": 7})
        )
    );
    assert_eq!(
        send(
            &reg,
            authed(Request::new("POST", "/api/offer", body), "good")
        )
        .status,
        200
    );
    let patch_body = json!({"pc_id": "x", "candidates": []}).to_string();
    assert_eq!(
        send(&reg, Request::new("PATCH", "/api/offer", patch_body)).status,
        401
    );
    let start = json!({"body": {"room": 1}}).to_string();
    assert_eq!(
        send(
            &reg,
            authed(Request::new("POST", "/start", start.clone()), "bad")
        )
        .status,
        403
    );
    assert_eq!(seen.lock().last().unwrap().3, json!({"room": 1}));
    assert_eq!(
        send(&reg, authed(Request::new("POST", "/start", start), "good")).status,
        200
    );
    // Preflights and the page are never asked about.
    let asked = seen.lock().len();
    assert_eq!(send(&reg, Request::new("OPTIONS", "/whip", "")).status, 204);
    assert_eq!(
        send(&reg, Request::new("OPTIONS", "/api/offer", "")).status,
        204
    );
    assert_eq!(send(&reg, Request::new("GET", "/", "")).status, 200);
    assert_eq!(seen.lock().len(), asked);
}

#[test]
fn sdpfrag_and_query_parsing() {
    let f = whip::parse_sdpfrag(
        "a=ice-ufrag:Ab\r\na=ice-pwd:x\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
         a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\nm=video 9 RTP/AVP 0\r\na=mid:1\r\n\
         a=candidate:2 1 udp 1 10.0.0.2 5000 typ host\na=end-of-candidates\r\n",
    )
    .unwrap();
    assert_eq!(f.ufrag.as_deref(), Some("Ab"));
    assert_eq!(
        f.candidates,
        [
            "candidate:1 1 udp 1 10.0.0.1 5000 typ host",
            "candidate:2 1 udp 1 10.0.0.2 5000 typ host",
            ""
        ]
    );
    let many = "a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n".repeat(65);
    assert_eq!(whip::parse_sdpfrag(&many).unwrap_err().status, 400);
    assert_eq!(whip::query_object(""), Value::Null);
    assert_eq!(
        whip::query_object("a=1&b=x+y%21&c&%zz=%4"),
        json!({"a": "1", "b": "x y!", "c": "", "%zz": "%4"})
    );
}
