//! WHIP and WHEP from a browser: headless Chromium publishes a WebAudio tone and a
//! canvas camera over WHIP with a few lines of JS, and the app (a server in this test's
//! process) hears the tone's frequency and reads the video frames; a second peer
//! connection in the same page views over WHEP and hears the tone the app writes. DELETE
//! ends both sessions and the app sees both peers close. Browser and app run in a
//! loopback-only network namespace; needs `.ci/setup-browser.sh` and root (see
//! tests/browser/harness.rs and tests/browser/whip_publish.mjs).

mod common;
#[path = "browser/harness.rs"]
mod harness;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::str0m_client::tone;
use serde_json::{json, Value};
use smallwebrtc::signalling::{NewPeer, Protocol, Server, ServerConfig};
use smallwebrtc::{PeerConfig, PeerState, VideoSource};

/// The publisher's tone (WebAudio oscillator in the page).
const PUBLISH_HZ: f64 = 520.0;
/// The tone the app writes to the viewer.
const VIEW_HZ: f32 = 660.0;
/// Video frames the app wants from the publisher before it answers the viewer.
const WANT_FRAMES: u64 = 10;
/// Deadline of each step of the app (the driver's own deadline is 90 s).
const STEP: Duration = Duration::from_secs(45);

#[test]
fn chromium_publishes_over_whip_and_views_over_whep() {
    let Some(result) = harness::run_with_app(
        &harness::BrowserTest {
            test_name: "chromium_publishes_over_whip_and_views_over_whep",
            driver: "whip_publish.mjs",
            driver_args: &[
                "--hz",
                &PUBLISH_HZ.to_string(),
                "--view-hz",
                &VIEW_HZ.to_string(),
            ],
        },
        start_app,
    ) else {
        return;
    };
    let app = &result["app"];
    eprintln!("app: {app}");
    harness::assert_ok(&result);
    let heard = app["publisher_hz"].as_f64().unwrap_or(0.0);
    assert!(
        (heard - PUBLISH_HZ).abs() < PUBLISH_HZ * 0.05,
        "the app heard {heard} Hz from the WHIP publisher: {app}"
    );
    assert!(
        app["publisher_frames"].as_u64().unwrap_or(0) >= WANT_FRAMES,
        "{app}"
    );
    assert_eq!(app["publisher_size"], json!([320, 240]), "{app}");
    assert_eq!(
        app["whip_closed"], true,
        "DELETE did not close the publisher: {app}"
    );
    assert_eq!(
        app["whep_closed"], true,
        "DELETE did not close the viewer: {app}"
    );
    eprintln!(
        "browser WHIP→app: {heard:.1} Hz, {} frames; app→WHEP viewer: heard {:.1} Hz, {} frames decoded; timings {}",
        app["publisher_frames"], result["heard"]["hz"], result["framesDecoded"], result["timings"]
    );
}

/// Serves WHIP and WHEP in this process (inside the namespace).
fn start_app() -> harness::App {
    let cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        peer: PeerConfig {
            audio_in_sample_rate: 48_000,
            audio_out_sample_rate: 48_000,
            audio_in_channels: 1,
            audio_out_channels: 1,
            video_in_enabled: true,
            video_out_enabled: true,
            ..common::peers::loopback()
        },
        ..ServerConfig::default()
    };
    let server = Server::start(cfg, None).expect("server starts");
    let url = server.url();
    let stop = Arc::new(AtomicBool::new(false));
    let app = {
        let stop = stop.clone();
        // The server lives until the driver has ended (the page's last DELETEs come
        // after the app's checks).
        thread::spawn(move || (run_app(&server, &stop), server))
    };
    harness::App {
        url,
        finish: Box::new(move || {
            stop.store(true, Ordering::Relaxed);
            app.join()
                .map(|(v, _server)| v)
                .unwrap_or_else(|_| json!({"error": "the app thread panicked"}))
        }),
    }
}

/// Takes one WHEP viewer and one WHIP publisher; once the publisher's tone and video
/// have arrived, writes a tone and video to the viewer until it goes. Returns what it
/// saw. `stop` (the driver ended) cuts every wait short.
fn run_app(server: &Server, stop: &AtomicBool) -> Value {
    let mut out = json!({});
    let (mut whip, mut whep): (Option<NewPeer>, Option<NewPeer>) = (None, None);
    let end = Instant::now() + STEP;
    while (whip.is_none() || whep.is_none()) && Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return out;
        }
        let Some(new) = server.accept(Some(Duration::from_millis(200))) else {
            continue;
        };
        new.peer.connect().expect("connect");
        match new.protocol {
            Protocol::Whip => whip = Some(new),
            Protocol::Whep => whep = Some(new),
            other => out["unexpected"] = json!(format!("{other:?}")),
        }
    }
    let (Some(whip), Some(whep)) = (whip, whep) else {
        out["error"] = json!("the app did not get both a WHIP publisher and a WHEP viewer");
        return out;
    };

    // The publisher's camera, counted on a thread of its own.
    let frames = Arc::new(AtomicU64::new(0));
    let video = {
        let (peer, frames) = (whip.peer.clone(), frames.clone());
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let h = thread::spawn(move || {
            let mut size = None;
            while !d.load(Ordering::Relaxed) {
                match peer.read_video(VideoSource::Camera, Some(Duration::from_millis(200))) {
                    Ok(f) => {
                        size = Some([f.width, f.height]);
                        frames.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) if peer.state() == PeerState::Closed => break,
                    Err(_) => {}
                }
            }
            size
        });
        (h, done)
    };
    let heard = common::tone::hear_tone(&whip.peer, PUBLISH_HZ, STEP, || {
        stop.load(Ordering::Relaxed)
    });
    out["publisher_hz"] = match heard {
        Ok(hz) => json!(hz),
        Err(last) => json!({"never": PUBLISH_HZ, "last": last}),
    };
    let end = Instant::now() + STEP;
    while frames.load(Ordering::Relaxed) < WANT_FRAMES
        && Instant::now() < end
        && !stop.load(Ordering::Relaxed)
    {
        thread::sleep(Duration::from_millis(50));
    }

    // Only now does the viewer get anything: its hearing the tone tells the page the
    // app's checks are done.
    if heard.is_ok() && frames.load(Ordering::Relaxed) >= WANT_FRAMES {
        let rgb = vec![100u8; 320 * 240 * 3];
        let mut pos = 0u64;
        let end = Instant::now() + STEP;
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            // Real time: write_audio waits for each 20 ms frame to leave.
            let pcm = tone(VIEW_HZ, pos, 960, 48_000);
            pos += 960;
            if let Err(e) = whep.peer.write_audio(&pcm, Duration::from_secs(5)) {
                out["viewer_write_ended"] = json!(e.to_string());
                break;
            }
            if pos.is_multiple_of(960 * 2) {
                let _ = whep.peer.write_video(&rgb, 320, 240, 0);
            }
        }
        out["viewer_written_ms"] = json!(pos / 48);
    }
    video.1.store(true, Ordering::Relaxed);
    out["publisher_frames"] = json!(frames.load(Ordering::Relaxed));
    out["publisher_size"] = json!(video.0.join().ok().flatten());

    // The page DELETEs both sessions before the driver ends.
    let end = Instant::now() + Duration::from_secs(10);
    for (name, p) in [("whip_closed", &whip), ("whep_closed", &whep)] {
        while p.peer.state() != PeerState::Closed && Instant::now() < end {
            let _ = p.peer.poll_event(Some(Duration::from_millis(50)));
        }
        out[name] = json!(p.peer.state() == PeerState::Closed);
    }
    out
}
