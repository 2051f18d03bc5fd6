//! The server's built-in test page (at `/`) in headless Chromium against the
//! echo example, both in a loopback-only network namespace: #connect
//! connects, a chat message comes back as `{"echo": m}`, the tone bursts of
//! the fake mic come back, the fake camera's video comes back decoded, and
//! getStats has an RTT, and the server-side stats panel (from `/api/stats`) fills in
//! with its plot. Needs
//! `.ci/setup-browser.sh` and root (for `unshare -n`); see
//! tests/browser/harness.rs and tests/browser/builtin_page.mjs.

#[path = "browser/harness.rs"]
mod harness;

#[test]
fn builtin_page_connects_and_hears_its_echo() {
    let Some(result) = harness::run(&harness::BrowserTest {
        test_name: "builtin_page_connects_and_hears_its_echo",
        driver: "builtin_page.mjs",
        // The page's camera is off by default: send the fake camera, and
        // expect the echoed video to be decoded.
        driver_args: &["--query", "cam=1", "--expect-video"],
    }) else {
        return;
    };
    harness::assert_ok(&result);
    assert_eq!(result["messages"]["chat"]["ok"], true);
    assert!(
        result["audio"]["goodBursts"].as_u64().unwrap_or(0) >= 5,
        "{}",
        result["audio"]
    );
    // The server-side stats panel filled in from /api/stats: loopback host candidates, an
    // RTT, bytes both ways, and a drawn plot.
    let s = &result["serverStats"];
    let n = &s["network"];
    assert!(n["rtt_ms"].as_f64().is_some_and(|r| r > 0.0), "{s}");
    assert_eq!(n["selected_pair"]["local_type"], "host", "{s}");
    assert_eq!(n["selected_pair"]["protocol"], "udp", "{s}");
    assert!(n["bytes_in"].as_u64().unwrap_or(0) > 0 && n["bytes_out"].as_u64().unwrap_or(0) > 0);
    assert!(s["plotPoints"].as_u64().unwrap_or(0) >= 3, "{s}");
    assert!(
        s["text"].as_str().unwrap_or("").contains("pair: host"),
        "{s}"
    );
}
