//! The official Pipecat JS client in headless Chromium against a Pipecat echo pipeline on
//! our Pipecat transport (`python/examples/pipecat_echo_bot.py`, the Python package over
//! the C ABI), with the same checks as against the Rust echo example
//! (tests/browser_official_client.rs): `connect()` resolves on Pipecat's own RTVI
//! bot-ready, app messages come back as `{"echo": m}`, and the client hears its tone bursts
//! come back. Audio only: the camera echo through Pipecat is checked against aiortc
//! (tests/python_bindings.rs); with it, a busy 2-core machine broke the bursts up. Needs `.ci/setup-browser.sh`,
//! `.ci/setup-pipecat.sh` and root (for `unshare -n`).

#[path = "browser/harness.rs"]
mod harness;
mod python_support;

#[test]
fn official_client_against_pipecat_pipeline_on_our_transport() {
    // The harness runs this command instead of the echo example, in both its outer run
    // (which builds nothing else) and its inner run in the network namespace. This binary
    // holds this one test, so setting the variable races with nothing.
    let cmd = python_support::command_line(
        "python/examples/pipecat_echo_bot.py",
        &["--addr", "127.0.0.1:0", "--no-video"],
    );
    std::env::set_var("SWRTC_ECHO_CMD", cmd);
    let Some(result) = harness::run(&harness::BrowserTest {
        test_name: "official_client_against_pipecat_pipeline_on_our_transport",
        driver: "official_client.mjs",
        driver_args: &[],
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
