//! WHIP from a browser: headless Chromium publishes a tone and a canvas camera
//! to the echo example over WHIP with a few lines of JS, and watches them come
//! back over WHEP (the echo relays publishers to viewers): the viewer hears the
//! tone's frequency and decodes video, and DELETE ends both sessions. Both run
//! in a loopback-only network namespace; needs `.ci/setup-browser.sh` and root
//! (see tests/browser/harness.rs and tests/browser/whip_publish.mjs).

#[path = "browser/harness.rs"]
mod harness;

#[test]
fn chromium_publishes_over_whip_and_views_over_whep() {
    let Some(result) = harness::run(&harness::BrowserTest {
        test_name: "chromium_publishes_over_whip_and_views_over_whep",
        driver: "whip_publish.mjs",
        driver_args: &["--hz", "520"],
    }) else {
        return;
    };
    harness::assert_ok(&result);
    let heard = result["heard"]["hz"].as_f64().unwrap_or(0.0);
    assert!((heard - 520.0).abs() < 26.0, "heard {heard} Hz");
    eprintln!(
        "browser WHIP→WHEP: heard {heard:.1} Hz, {} video frames decoded",
        result["framesDecoded"]
    );
}
