//! Push delivery of decoded frames over real UDP: the audio callback gets every mic frame
//! of the str0m client in order on a worker thread (and `read_audio` nothing meanwhile),
//! can echo from inside, can remove itself, survives a panic, and the same through the C
//! ABI with an `extern "C"` function; the video callback gets aiortc's camera frames while
//! `read_video` gets none.

mod common;

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use common::peers::{open_str0m, wait_connected};
use common::str0m_client::{tone, ClientEvent, ClientOptions, TestClient};
use serde_json::json;
use smallwebrtc::ffi::{
    swrtc_peer_free, swrtc_peer_new, swrtc_peer_set_audio_callback, swrtc_peer_write_audio,
    SwrtcPeer, SwrtcPeerConfig, SwrtcResult,
};
use smallwebrtc::media::audio::{AudioFrame, OpusEncoder};
use smallwebrtc::{ErrorKind, Peer, PeerConfig, PeerState, VideoFrame, VideoSource};

const T: Duration = Duration::from_secs(15);

/// (pts, samples, rms, thread name) of each frame the audio callback got.
type AudioSeen = Arc<Mutex<Vec<(u64, usize, f64, String)>>>;
/// (width, height, bytes, pts, source) of each frame the video callback got.
type VideoSeen = Arc<Mutex<Vec<(u32, u32, usize, u64, VideoSource)>>>;

fn connect(cfg: PeerConfig) -> (TestClient, Arc<Peer>) {
    let mut client = TestClient::new(ClientOptions::default());
    let peer = Arc::new(
        Peer::new(
            PeerConfig {
                bind_ip: Some("127.0.0.1".parse().unwrap()),
                ..cfg
            },
            None,
        )
        .unwrap(),
    );
    open_str0m(&mut client, &peer, T);
    wait_connected(&peer, T);
    (client, peer)
}

/// Sends `n` 20 ms packets of a 1 kHz tone starting at packet `first`, at twice real time.
fn send_tone(client: &TestClient, first: u64, n: u64) {
    let mut enc = OpusEncoder::new(48_000, 1, 32_000, 5, false).unwrap();
    let mut out = vec![0u8; 4000];
    let start = Instant::now();
    for i in first..first + n {
        let pcm = tone(1000.0, i * 960, 960, 48_000);
        let len = enc.encode(&pcm, &mut out).unwrap();
        client.send_opus(out[..len].to_vec(), i * 960);
        let due = start + Duration::from_millis(10 * (i - first + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Loud (tone) audio packets the client receives, counted until `want` or `T`: the echo
/// leaves at real time, slower than the test sends.
fn loud_packets(client: &TestClient, want: usize) -> usize {
    let end = Instant::now() + T;
    let mut n = 0;
    while n < want && Instant::now() < end {
        n += client
            .take_events()
            .iter()
            .filter(|e| matches!(e, ClientEvent::AudioPacket { len, .. } if *len > 20))
            .count();
        std::thread::sleep(Duration::from_millis(20));
    }
    n
}

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

#[test]
fn audio_callback_gets_every_frame_in_order_on_a_worker_and_can_echo() {
    let (client, peer) = connect(PeerConfig {
        audio_in_sample_rate: 48_000,
        audio_out_sample_rate: 48_000,
        ..PeerConfig::default()
    });
    let got: AudioSeen = Arc::default();
    let (g, weak) = (got.clone(), Arc::downgrade(&peer));
    peer.set_audio_callback(Some(Box::new(move |f: &AudioFrame| {
        let name = std::thread::current().name().unwrap_or("").to_string();
        g.lock()
            .unwrap()
            .push((f.pts, f.samples.len(), rms(&f.samples), name));
        // Echo from inside: the non-blocking write is allowed here.
        if let Some(p) = weak.upgrade() {
            p.try_write_audio(&f.samples)
                .expect("echo from the callback");
        }
    })))
    .unwrap();
    send_tone(&client, 0, 100);
    let end = Instant::now() + T;
    while got.lock().unwrap().len() < 100 {
        if Instant::now() > end {
            let f = got.lock().unwrap();
            let pts: Vec<u64> = f.iter().map(|f| f.0 / 960).collect();
            panic!(
                "{} frames within {T:?} (packets {:?}): {pts:?}",
                f.len(),
                client.stats()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let frames = got.lock().unwrap().clone();
    assert_eq!(frames.len(), 100, "one frame per packet, no more");
    for w in frames.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 960, "in order, no gaps");
    }
    assert!(frames.iter().all(|f| f.1 == 960), "20 ms at 48 kHz");
    assert!(
        frames.iter().skip(3).all(|f| f.2 > 1000.0),
        "the tone, not silence"
    );
    assert!(
        frames.iter().all(|f| f.3.starts_with("swrtc-worker")),
        "on a worker: {:?}",
        frames[0].3
    );
    let err = peer.read_audio(None).expect_err("the ring stays empty");
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    // The echo written from the callback reached the client as loud packets.
    let loud = loud_packets(&client, 50);
    assert!(loud >= 50, "echoed tone packets at the client: {loud}");

    // Removed from another thread: frames go back to read_audio, none to the callback.
    peer.set_audio_callback(None).unwrap();
    send_tone(&client, 100, 20);
    let f = peer.read_audio(Some(T)).expect("frames return to the ring");
    assert!(f.pts >= 100 * 960, "pts continues: {}", f.pts);
    assert_eq!(got.lock().unwrap().len(), 100);
}

#[test]
fn audio_callback_can_remove_itself_and_survives_a_panic() {
    let (client, peer) = connect(PeerConfig::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let (c, weak) = (calls.clone(), Arc::downgrade(&peer));
    peer.set_audio_callback(Some(Box::new(move |_f: &AudioFrame| {
        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(n != 3, "a panicking callback drops its frame only");
        if n == 10 {
            if let Some(p) = weak.upgrade() {
                p.set_audio_callback(None).expect("remove from inside");
            }
        }
    })))
    .unwrap();
    send_tone(&client, 0, 40);
    wait_until("frames after the removal", || {
        peer.audio_stats().in_packets_decoded >= 40
    });
    assert_eq!(
        calls.load(Ordering::SeqCst),
        10,
        "no call after removing itself"
    );
    let mut after = 0;
    while peer.read_audio(Some(Duration::from_millis(300))).is_ok() {
        after += 1;
    }
    assert_eq!(after, 30, "the other 30 frames went to the ring");
    assert_eq!(
        peer.state(),
        PeerState::Connected,
        "the panic harmed nothing"
    );
}

struct CEcho {
    peer: *const SwrtcPeer,
    frames: AtomicU64,
    last_pts: AtomicU64,
    bad: AtomicU64,
}

unsafe extern "C" fn c_on_audio(
    user: *mut c_void,
    samples: *const i16,
    len: usize,
    rate: u32,
    channels: u16,
    pts: u64,
) {
    // SAFETY: user is the CEcho the test keeps alive until the peer is freed.
    let echo = unsafe { &*(user as *const CEcho) };
    let n = echo.frames.fetch_add(1, Ordering::SeqCst);
    let prev = echo.last_pts.swap(pts, Ordering::SeqCst);
    if samples.is_null()
        || len != 960
        || rate != 48_000
        || channels != 1
        || (n > 0 && pts != prev + 960)
    {
        echo.bad.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: the peer outlives the callback (freed after removal); samples valid now.
    let r = unsafe { swrtc_peer_write_audio(echo.peer, samples, len, 0) };
    if r != SwrtcResult::SWRTC_OK {
        echo.bad.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn audio_callback_through_the_c_abi() {
    let mut cfg = std::mem::MaybeUninit::<SwrtcPeerConfig>::uninit();
    // SAFETY: writable config.
    unsafe { smallwebrtc::ffi::swrtc_peer_config_default(cfg.as_mut_ptr()) };
    // SAFETY: filled above.
    let mut cfg = unsafe { cfg.assume_init() };
    cfg.audio_in_sample_rate = 48_000;
    cfg.audio_out_sample_rate = 48_000;
    let ip = c"127.0.0.1";
    cfg.bind_ip = ip.as_ptr();
    let mut raw: *mut SwrtcPeer = std::ptr::null_mut();
    // SAFETY: valid config, out pointer.
    let r = unsafe { swrtc_peer_new(std::ptr::null(), &cfg, std::ptr::null(), &mut raw) };
    assert_eq!(r, SwrtcResult::SWRTC_OK);
    let echo = Box::new(CEcho {
        peer: raw,
        frames: AtomicU64::new(0),
        last_pts: AtomicU64::new(0),
        bad: AtomicU64::new(0),
    });
    let user = &*echo as *const CEcho as *mut c_void;
    // SAFETY: NULL peer is an argument error, not a crash.
    let r = unsafe { swrtc_peer_set_audio_callback(std::ptr::null(), Some(c_on_audio), user) };
    assert_eq!(r, SwrtcResult::SWRTC_ERR_INVALID_ARGUMENT);
    // SAFETY: live peer, a callback valid for `user`.
    let r = unsafe { swrtc_peer_set_audio_callback(raw, Some(c_on_audio), user) };
    assert_eq!(r, SwrtcResult::SWRTC_OK);

    // Offer, answer and connect through the C ABI too.
    let mut client = TestClient::new(ClientOptions::default());
    let offer = client.offer();
    let mut answer: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: live peer, offer readable for its length, out pointer.
    let r = unsafe {
        smallwebrtc::ffi::swrtc_peer_handle_offer(
            raw,
            offer.as_ptr().cast(),
            offer.len(),
            &mut answer,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, SwrtcResult::SWRTC_OK);
    // SAFETY: the library returned a NUL-terminated string.
    let sdp = unsafe { std::ffi::CStr::from_ptr(answer) }
        .to_str()
        .unwrap()
        .to_string();
    // SAFETY: returned by the library, freed once.
    unsafe { smallwebrtc::ffi::swrtc_string_free(answer) };
    client.accept_answer(&sdp).unwrap();
    // SAFETY: live peer.
    assert_eq!(
        unsafe { smallwebrtc::ffi::swrtc_peer_connect(raw) },
        SwrtcResult::SWRTC_OK
    );
    client
        .wait_for(T, |e| matches!(e, ClientEvent::ChannelOpen(_)))
        .expect("data channel open");

    send_tone(&client, 0, 60);
    wait_until("60 frames through C", || {
        echo.frames.load(Ordering::SeqCst) >= 60
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(echo.frames.load(Ordering::SeqCst), 60);
    assert_eq!(
        echo.bad.load(Ordering::SeqCst),
        0,
        "sizes, order and writes ok"
    );
    let loud = loud_packets(&client, 30);
    assert!(
        loud >= 30,
        "the C echo reached the client: {loud} loud packets"
    );
    // SAFETY: live peer; removal waits out a running call, then the peer is freed.
    unsafe {
        assert_eq!(
            swrtc_peer_set_audio_callback(raw, None, std::ptr::null_mut()),
            SwrtcResult::SWRTC_OK
        );
        swrtc_peer_free(raw);
    }
    drop(echo);
}

#[test]
fn video_callback_gets_camera_frames_and_read_video_none() {
    let mut client = AiortcPeer::spawn();
    let peer = Arc::new(
        Peer::new(
            PeerConfig {
                bind_ip: Some("127.0.0.1".parse().unwrap()),
                video_in_enabled: true,
                ..PeerConfig::default()
            },
            None,
        )
        .unwrap(),
    );
    let got: VideoSeen = Arc::default();
    let g = got.clone();
    peer.set_video_callback(
        VideoSource::Camera,
        Some(Box::new(move |f: &VideoFrame| {
            g.lock()
                .unwrap()
                .push((f.width, f.height, f.rgb.len(), f.pts, f.source));
        })),
    )
    .unwrap();
    let offer = client.offer(json!({"audio": true, "video": true}));
    client.answer(&peer.handle_offer(&offer).unwrap());
    client.wait_channel_open(T);
    peer.connect().unwrap();
    wait_until("30 camera frames", || got.lock().unwrap().len() >= 30);
    let err = peer
        .read_video(VideoSource::Camera, Some(Duration::from_millis(300)))
        .expect_err("frames go to the callback, not the slot");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let frames = got.lock().unwrap().clone();
    assert!(frames
        .iter()
        .all(|f| (f.0, f.1, f.2, f.4) == (640, 480, 640 * 480 * 3, VideoSource::Camera)));
    for w in frames.windows(2) {
        assert!(w[1].3 > w[0].3, "pts increases");
    }
    peer.set_video_callback(VideoSource::Camera, None).unwrap();
    let n = got.lock().unwrap().len();
    let f = peer
        .read_video(VideoSource::Camera, Some(T))
        .expect("back to read_video");
    assert_eq!((f.width, f.height), (640, 480));
    assert_eq!(got.lock().unwrap().len(), n, "no callback after removal");
    let no_video = Peer::new(PeerConfig::default(), None).unwrap();
    let err = no_video
        .set_video_callback(VideoSource::Camera, None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "video in disabled");
}
