//! The server's built-in test page (at `/`) in headless Chromium against the
//! echo example, both in a loopback-only network namespace: #connect
//! connects, a chat message comes back as `{"echo": m}`, the tone bursts of
//! the fake mic come back, the fake camera's video comes back decoded, and
//! getStats has an RTT. Needs
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
}
