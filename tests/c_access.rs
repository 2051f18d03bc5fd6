//! Access control from C (examples/c/bearer_access.c, built with `-Wall -Wextra -Werror`
//! against the committed header): its `on_access` callback refuses WHIP, WHEP and
//! `/api/offer` requests without `Authorization: Bearer <token>` with 401 (and
//! `WWW-Authenticate: Bearer`), a wrong token with 403, and lets the right one in, which
//! gets an answer and a peer the app accepts. Checked with real HTTP requests.

mod c_bots;
mod common;
mod signalling_support;

use std::process::Command;
use std::time::Duration;

use c_bots::Bot;
use common::c_build::compile_c_example;
use serde_json::json;
use signalling_support::{request_with, synthetic_offer, HttpResponse};

const T: Duration = Duration::from_secs(15);
const TOKEN: &str = "s3cret-t0ken";

fn post(bot: &Bot, path: &str, auth: Option<&str>, content_type: &str, body: &str) -> HttpResponse {
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    request_with(bot.addr, "POST", path, &headers, body.as_bytes())
}

fn assert_refused(r: &HttpResponse, status: u16, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    if status == 401 {
        assert!(
            r.header("WWW-Authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{what}: 401 without WWW-Authenticate: Bearer ({:?})",
            r.headers
        );
    }
}

#[test]
fn c_on_access_wants_a_bearer_token() {
    let out_dir = std::env::temp_dir().join(format!("swrtc-c-access-{}", std::process::id()));
    let exe = compile_c_example("bearer_access", &out_dir, &[]);
    let mut cmd = Command::new(&exe);
    cmd.arg(TOKEN);
    let bot = Bot::spawn("bearer_access", cmd, T);
    let sdp = synthetic_offer();
    let pipecat = json!({"sdp": sdp, "type": "offer"}).to_string();
    let good = format!("Bearer {TOKEN}");
    let routes = [
        ("/whip", "application/sdp", sdp.as_str(), "whip"),
        ("/whep", "application/sdp", sdp.as_str(), "whep"),
        (
            "/api/offer",
            "application/json",
            pipecat.as_str(),
            "pipecat",
        ),
    ];

    for (path, ct, body, proto) in routes {
        let r = post(&bot, path, None, ct, body);
        assert_refused(&r, 401, &format!("{path} without a token"));
        bot.wait_line(T, &format!("access POST {path} {proto} 401"));

        let r = post(&bot, path, Some("Bearer wrong"), ct, body);
        assert_refused(&r, 403, &format!("{path} with a wrong token"));
        bot.wait_line(T, &format!("access POST {path} {proto} 403"));

        let r = post(&bot, path, Some("Basic dXNlcjpwYXNz"), ct, body);
        assert_refused(&r, 403, &format!("{path} with Basic credentials"));
        bot.wait_line(T, &format!("access POST {path} {proto} 403"));

        let r = post(&bot, path, Some(&good), ct, body);
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let expect = if proto == "pipecat" { 200 } else { 201 };
        assert_eq!(r.status, expect, "{path} with the token: {text}");
        if proto == "pipecat" {
            assert!(
                r.json()["sdp"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("v=0")),
                "{text}"
            );
        } else {
            assert!(text.starts_with("v=0"), "{text}");
            assert!(r
                .header("Location")
                .is_some_and(|l| l.starts_with(&format!("{path}/"))));
        }
        bot.wait_line(T, &format!("access POST {path} {proto} 200"));
        let peer = bot.wait_line(T, "peer ");
        assert!(peer.ends_with(&format!(" {proto}")), "{peer}");
    }
    let (status, stderr) = bot.stop(T);
    assert!(
        status.success(),
        "bearer_access exited with {status}: {stderr}"
    );
}
