//! A WHIP publisher on GStreamer's WebRTC stack (webrtcbin with libnice, GStreamer's
//! Opus and VP8 encoders; tests/peers/gst_whip_publish.py) publishes a 440 Hz
//! `audiotestsrc` and a `videotestsrc` camera to the server: the app hears the tone's
//! frequency and reads 320x240 frames; the publisher's DELETE closes the peer.
//!
//! Debian's `simple-whip-client` cannot run on Debian 12: it links libsoup 2, and
//! GStreamer's webrtc plugin pulls in libsoup 3 (libnice → gupnp-igd → gupnp 1.6), so it
//! aborts as soon as webrtcbin loads ("libsoup2 symbols detected"), whatever the plugin
//! registry holds. GStreamer's own WHIP elements (gst-plugins-rs) are not packaged there.
//! Hence the short script: its HTTP exchange is ours, all the media and ICE/DTLS/SRTP
//! below it are GStreamer's. It gives webrtcbin an ECDSA certificate: GStreamer 1.22's
//! own is RSA, and the server's DTLS (str0m's dimpl) takes ECDSA client certificates only.
//!
//! libnice gathers no candidates on loopback, so publisher and server share a network
//! namespace of the test's own with a veth interface (10.0.3.1); needs root,
//! iproute2 and `.ci/setup.sh --tests` (python3-gst-1.0 and the GStreamer plugins).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::impair::FaultNet;
use serde_json::Value;
use smallwebrtc::signalling::{Protocol, Server, ServerConfig};
use smallwebrtc::{PeerConfig, PeerState, VideoSource};

const T: Duration = Duration::from_secs(30);
const HZ: f64 = 440.0;

/// A network namespace with lo and a veth interface at 10.0.3.1/24; deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let ns = Netns(format!("gwhip{}", std::process::id()));
        let ip = |args: &[&str]| {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("`ip` (iproute2) runs");
            assert!(
                out.status.success(),
                "`ip {}` failed (this test needs root for its network namespace): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &ns.0]);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        // A veth pair with both ends inside: an interface that is not loopback (the
        // kernel may lack the dummy type).
        ip(&[
            "-n", &ns.0, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
        ip(&["-n", &ns.0, "addr", "add", "10.0.3.1/24", "dev", "v0"]);
        ip(&["-n", &ns.0, "link", "set", "v0", "up"]);
        ip(&["-n", &ns.0, "link", "set", "v1", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// The publisher script, its stdout events collected by a thread.
struct Publisher {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Publisher {
    fn spawn(ns: &str, url: &str) -> Publisher {
        let script = common::aiortc::repo_root().join("tests/peers/gst_whip_publish.py");
        let mut child = FaultNet::command_in(ns, "/usr/bin/python3".as_ref())
            .arg(script)
            .arg(url)
            .args(["--hz", &HZ.to_string(), "--seconds", "60"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let events = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let ev = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                eprintln!("publisher: {line}");
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    ev.lock().unwrap().push(v);
                }
            }
        });
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("publisher stderr: {line}");
            }
        });
        Publisher { child, events }
    }

    /// The first event called `name`, waiting for it up to `within`.
    fn event(&self, name: &str, within: Duration) -> Option<Value> {
        let end = Instant::now() + within;
        loop {
            let found = {
                let events = self.events.lock().unwrap();
                events.iter().find(|e| e["event"] == name).cloned()
            };
            if found.is_some() || Instant::now() > end {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes its stdin (it DELETEs its session and exits) and waits for its exit code.
    fn finish(&mut self) -> Option<i32> {
        drop(self.child.stdin.take());
        let end = Instant::now() + T;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn check_prerequisites() {
    let ok = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0'); \
             from gi.repository import Gst; Gst.init(None); \
             assert all(Gst.ElementFactory.find(e) for e in \
             ('webrtcbin', 'opusenc', 'vp8enc', 'rtpopuspay', 'rtpvp8pay', 'audiotestsrc', 'videotestsrc'))",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "GStreamer with webrtcbin, Opus and VP8 for Debian's python3 is missing: run `.ci/setup.sh --tests`"
    );
    let openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        openssl,
        "the openssl command (for the publisher's certificate) is missing: run `.ci/setup.sh --tests`"
    );
}

#[test]
fn gstreamer_webrtcbin_publishes_over_whip() {
    check_prerequisites();
    let ns = Netns::new();
    let server = FaultNet::run_in(&ns.0, || {
        let cfg = ServerConfig {
            addr: "10.0.3.1:0".parse().unwrap(),
            peer: PeerConfig {
                audio_in_sample_rate: 48_000,
                audio_in_channels: 1,
                video_in_enabled: true,
                ..PeerConfig::default()
            },
            ..ServerConfig::default()
        };
        Server::start(cfg, None).expect("server starts")
    });
    let url = format!("{}whip?from=gstreamer", server.url());
    let mut publisher = Publisher::spawn(&ns.0, &url);

    let new = server.accept(Some(T)).expect("the app gets the publisher");
    assert_eq!(new.protocol, Protocol::Whip);
    assert_eq!(new.request_data["from"], "gstreamer");
    new.peer.connect().unwrap();
    let answered = publisher
        .event("answered", T)
        .expect("the publisher saw the answer");
    assert_eq!(answered["content_type"], "application/sdp");
    assert!(
        answered["location"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!("/whip/{}", new.pc_id))),
        "{answered}"
    );

    let heard = common::tone::hear_tone(&new.peer, HZ, T, || false)
        .unwrap_or_else(|last| panic!("the app never heard {HZ} Hz (last {last:.1} Hz)"));
    let end = Instant::now() + T;
    let mut frames = 0;
    let mut size = (0, 0);
    while frames < 10 && Instant::now() < end {
        if let Ok(f) = new
            .peer
            .read_video(VideoSource::Camera, Some(Duration::from_millis(500)))
        {
            frames += 1;
            size = (f.width, f.height);
        }
    }
    assert!(frames >= 10, "only {frames} video frames from GStreamer");
    assert_eq!(size, (320, 240));

    let code = publisher.finish();
    let deleted = publisher.event("deleted", Duration::ZERO);
    assert_eq!(
        deleted.as_ref().map(|d| d["status"].clone()),
        Some(200.into()),
        "the publisher's DELETE: {deleted:?}"
    );
    assert_eq!(code, Some(0), "the publisher's exit status");
    let end = Instant::now() + T;
    while new.peer.state() != PeerState::Closed {
        assert!(Instant::now() < end, "DELETE did not close the peer");
        let _ = new.peer.poll_event(Some(Duration::from_millis(50)));
    }
    eprintln!("GStreamer WHIP publish: app heard {heard:.1} Hz, {frames} frames {size:?}");
}
