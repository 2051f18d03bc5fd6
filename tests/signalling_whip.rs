//! WHIP and WHEP with real clients over the real HTTP server on 127.0.0.1: aiortc
//! publishes a tone and a camera over WHIP and the app hears the tone's frequency; an
//! aiortc WHEP viewer hears the tone the app writes. Each session is ended with DELETE
//! and the app sees it close.

mod common;
mod signalling_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use common::peers::wait_connected;
use common::str0m_client::tone;
use serde_json::json;
use signalling_support::request_with;
use smallwebrtc::signalling::{Access, NewPeer, Protocol, Server, ServerConfig};
use smallwebrtc::{PeerConfig, PeerState, VideoSource};

const T: Duration = Duration::from_secs(20);

fn server(access: Option<&'static str>) -> Server {
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
        access: access.map(|token| {
            Arc::new(
                move |r: &smallwebrtc::signalling::AccessRequest<'_>| match r.bearer_token() {
                    Some(t) if t == token => Access::Allow,
                    Some(_) => Access::Forbidden("wrong token".into()),
                    None => Access::Unauthorized("a bearer token is needed".into()),
                },
            ) as smallwebrtc::signalling::AccessHook
        }),
        ..ServerConfig::default()
    };
    Server::start(cfg, None).expect("server starts")
}

/// POSTs an SDP offer to `path`; returns (answer, Location).
fn post_offer(addr: SocketAddr, path: &str, sdp: &str) -> (String, String) {
    let r = request_with(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/sdp")],
        sdp.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Content-Type"), Some("application/sdp"));
    assert!(r.header("ETag").is_some_and(|t| t.starts_with('"')));
    let location = r.header("Location").expect("Location").to_owned();
    (String::from_utf8(r.body).unwrap(), location)
}

/// Reads the app side of a publisher until one second of audio has the tone `hz` (±5%).
fn hear_tone(new: &NewPeer, hz: f64) -> f64 {
    common::tone::hear_tone(&new.peer, hz, T, || false)
        .unwrap_or_else(|last| panic!("the app never heard {hz} Hz (last {last:.1} Hz)"))
}

fn delete_and_see_close(addr: SocketAddr, location: &str, new: &NewPeer) {
    assert_eq!(request_with(addr, "DELETE", location, &[], b"").status, 200);
    let end = Instant::now() + T;
    while new.peer.state() != PeerState::Closed {
        assert!(Instant::now() < end, "DELETE did not close the peer");
        let _ = new.peer.poll_event(Some(Duration::from_millis(50)));
    }
    let r = request_with(addr, "DELETE", location, &[], b"");
    assert_eq!(r.status, 404, "an ended session is gone");
}

#[test]
fn aiortc_publishes_over_whip_and_the_app_hears_it() {
    let server = server(None);
    let addr = server.local_addr();
    let mut client = AiortcPeer::spawn();
    let offer = client.offer(json!({"direction": "sendonly", "datachannel": false,
                                    "tone_hz": 440, "video": true}));
    let (answer, location) = post_offer(addr, "/whip?room=test", &offer);
    client.answer(&answer);
    let new = server.accept(Some(T)).expect("the app gets the publisher");
    assert_eq!(new.protocol, Protocol::Whip);
    assert_eq!(location, format!("/whip/{}", new.pc_id));
    assert_eq!(new.request_data, json!({"room": "test"}));
    new.peer.connect().unwrap();
    client.wait_connection_state("connected", T);
    let hz = hear_tone(&new, 440.0);
    let frame = new
        .peer
        .read_video(VideoSource::Camera, Some(T))
        .expect("the published camera reaches the app");
    assert_eq!((frame.width, frame.height), (640, 480));
    eprintln!(
        "WHIP publish: app heard {hz:.1} Hz, camera {}x{}",
        frame.width, frame.height
    );
    delete_and_see_close(addr, &location, &new);
    client.close();
}

#[test]
fn aiortc_views_over_whep_what_the_app_writes() {
    let server = server(None);
    let addr = server.local_addr();
    let mut client = AiortcPeer::spawn();
    let offer = client.offer(json!({"direction": "recvonly", "datachannel": false}));
    let (answer, location) = post_offer(addr, "/whep", &offer);
    client.answer(&answer);
    let new = server.accept(Some(T)).expect("the app gets the viewer");
    assert_eq!(new.protocol, Protocol::Whep);
    new.peer.connect().unwrap();
    wait_connected(&new.peer, T);

    // The app writes a 660 Hz tone (real time: write_audio waits for each frame to leave)
    // and a grey camera until the viewer has heard it.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (peer, stop) = (new.peer.clone(), stop.clone());
        std::thread::spawn(move || {
            let rgb = vec![128u8; 640 * 480 * 3];
            let mut pos = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let pcm = tone(660.0, pos, 960, 48_000);
                pos += 960;
                if peer.write_audio(&pcm, T).is_err() {
                    break;
                }
                if pos.is_multiple_of(960 * 2) {
                    let _ = peer.write_video(&rgb, 640, 480, 0);
                }
            }
        })
    };
    let stats = client.wait_audio(T, |s| {
        s["rms_dbfs"].as_f64().unwrap_or(-120.0) > -40.0
            && s["freq_hz"]
                .as_f64()
                .is_some_and(|f| (f - 660.0).abs() < 660.0 * 0.05)
    });
    let end = Instant::now() + T;
    let video = loop {
        let v = client.video_stats();
        if v["frames"].as_u64().unwrap_or(0) >= 5 || Instant::now() > end {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        video["frames"].as_u64().unwrap_or(0) >= 5,
        "viewer video: {video}"
    );
    eprintln!(
        "WHEP view: viewer heard {}, video {video}",
        stats["freq_hz"]
    );
    delete_and_see_close(addr, &location, &new);
    client.close();
}

#[test]
fn video_only_offers_are_taken_by_whip_and_whep_but_not_by_api_offer() {
    let server = server(None);
    let addr = server.local_addr();

    // A WHIP publisher with only a camera.
    let mut publisher = AiortcPeer::spawn();
    let offer = publisher.offer(json!({"direction": "sendonly", "datachannel": false,
                                       "audio_line": false, "video": true}));
    assert!(!offer.contains("m=audio"), "{offer}");
    // Pipecat's route keeps refusing it: its clients always offer audio.
    let r =
        signalling_support::post_json(addr, "/api/offer", &json!({"sdp": offer, "type": "offer"}));
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json()["error"].as_str().unwrap_or("").contains("audio"),
        "{}",
        r.json()
    );
    let (answer, location) = post_offer(addr, "/whip", &offer);
    publisher.answer(&answer);
    let new = server.accept(Some(T)).expect("the app gets the publisher");
    assert_eq!(new.protocol, Protocol::Whip);
    new.peer.connect().unwrap();
    publisher.wait_connection_state("connected", T);
    let frame = new
        .peer
        .read_video(VideoSource::Camera, Some(T))
        .expect("the published camera reaches the app");
    assert_eq!((frame.width, frame.height), (640, 480));
    delete_and_see_close(addr, &location, &new);
    publisher.close();

    // A WHEP viewer that wants only video.
    let mut viewer = AiortcPeer::spawn();
    let offer = viewer.offer(json!({"direction": "recvonly", "datachannel": false,
                                    "audio_line": false}));
    assert!(!offer.contains("m=audio"), "{offer}");
    let (answer, location) = post_offer(addr, "/whep", &offer);
    viewer.answer(&answer);
    let new = server.accept(Some(T)).expect("the app gets the viewer");
    assert_eq!(new.protocol, Protocol::Whep);
    new.peer.connect().unwrap();
    wait_connected(&new.peer, T);
    // Audio has nowhere to go: writing it fails at once with a clear error, or is dropped.
    let started = Instant::now();
    let wrote = new.peer.write_audio(&tone(660.0, 0, 960, 48_000), T);
    eprintln!(
        "write_audio on a video-only viewer: {wrote:?} after {:?}",
        started.elapsed()
    );
    let rgb = vec![90u8; 320 * 240 * 3];
    let end = Instant::now() + T;
    let video = loop {
        let _ = new.peer.write_video(&rgb, 320, 240, 0);
        let v = viewer.video_stats();
        if v["frames"].as_u64().unwrap_or(0) >= 5 || Instant::now() > end {
            break v;
        }
        std::thread::sleep(Duration::from_millis(40));
    };
    assert!(
        video["frames"].as_u64().unwrap_or(0) >= 5,
        "viewer video: {video}"
    );
    delete_and_see_close(addr, &location, &new);
    viewer.close();
}
