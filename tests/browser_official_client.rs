//! The official Pipecat JS client (`@pipecat-ai/client-js` +
//! `@pipecat-ai/small-webrtc-transport`, bundled with esbuild) in headless
//! Chromium against the echo example, both in a loopback-only network
//! namespace: `connect()` resolves (bot-ready), app messages come back as
//! `{"echo": m}`, the client hears its own tone bursts come back, and the
//! echoed camera video is decoded.
//! Needs `.ci/setup-browser.sh` and root (for `unshare -n`); see
//! tests/browser/harness.rs and tests/browser/official_client.mjs.

#[path = "browser/harness.rs"]
mod harness;

#[test]
fn official_client_connects_and_hears_its_echo() {
    let Some(result) = harness::run(&harness::BrowserTest {
        test_name: "official_client_connects_and_hears_its_echo",
        driver: "official_client.mjs",
        // The client sends the fake camera too; its echo must be decoded.
        driver_args: &["--expect-video"],
    }) else {
        return;
    };
    harness::assert_ok(&result);
    assert_eq!(result["messages"]["rtvi"]["ok"], true);
    assert_eq!(result["messages"]["raw4k"]["ok"], true);
    assert!(
        result["audio"]["goodBursts"].as_u64().unwrap_or(0) >= 5,
        "{}",
        result["audio"]
    );
}
