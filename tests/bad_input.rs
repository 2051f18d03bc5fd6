//! Bad input from every side: malformed SDP, offers without audio, garbage candidates,
//! NULL pointers and zero lengths over the C ABI, oversized messages, and a burst of random
//! UDP datagrams (some over 2000 bytes) at the peer's port. Each gets an error code with a
//! message, or is dropped and counted; afterwards the same peer and a second one still
//! exchange messages with aiortc over real UDP.

mod common;

use std::ffi::CStr;
use std::net::UdpSocket;
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use common::aiortc::AiortcPeer;
use common::peers::loopback;
use serde_json::json;
use smallwebrtc::ffi::*;
use smallwebrtc::{ErrorKind, Peer, PeerEvent, PeerState};

const T: Duration = Duration::from_secs(15);

fn last_error() -> String {
    // SAFETY: swrtc_last_error never returns NULL.
    unsafe { CStr::from_ptr(swrtc_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn wait_message(peer: &Peer, want: &str) {
    let end = Instant::now() + T;
    while Instant::now() < end {
        if let Some(PeerEvent::Message { data, .. }) =
            peer.poll_event(Some(Duration::from_millis(50)))
        {
            if data == want.as_bytes() {
                return;
            }
        }
    }
    panic!("message {want:?} never arrived");
}

fn connect(client: &mut AiortcPeer, peer: &Peer) {
    let offer = client.offer(json!({"audio": true, "video": true}));
    client.answer(&peer.handle_offer(&offer).unwrap());
    client.wait_channel_open(T);
    peer.connect().unwrap();
}

fn exchange(client: &mut AiortcPeer, peer: &Peer, tag: &str) {
    client.send_text(tag);
    wait_message(peer, tag);
    let back = format!("{{\"back\":\"{tag}\"}}");
    peer.send_message(back.as_bytes(), false).unwrap();
    client.wait_message(T, |m| m == back);
}

#[test]
fn rust_api_rejects_bad_sdp_candidates_and_messages() {
    let peer = Peer::new(loopback(), None).unwrap();
    for (sdp, what) in [
        ("", "empty"),
        ("hello", "garbage"),
        ("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no m-lines"),
        (
            "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\n",
            "video only, no ICE",
        ),
    ] {
        let e = peer.handle_offer(sdp).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidSdp, "{what}: {e}");
        assert!(!e.message().is_empty());
    }
    for cand in [
        "x",
        "candidate:1 1 udp",
        "candidate:a b c d e f g h",
        &"c".repeat(5000),
    ] {
        let e = peer.add_ice_candidate(cand).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidCandidate, "{cand:.40}: {e}");
    }
    peer.add_ice_candidate("")
        .expect("empty candidate ends gathering");
    let e = peer.send_message(&vec![b'x'; 70_000], false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    // The same peer still works.
    let mut client = AiortcPeer::spawn();
    connect(&mut client, &peer);
    exchange(&mut client, &peer, "still-alive");
}

#[test]
fn c_abi_rejects_nulls_and_zero_lengths() {
    unsafe {
        assert_eq!(
            swrtc_peer_config_default(null_mut()),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("NULL"), "{}", last_error());
        assert_eq!(
            swrtc_peer_new(null(), null(), null(), null_mut()),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            swrtc_runtime_new(null(), null_mut()),
            SWRTC_ERR_INVALID_ARGUMENT
        );

        let mut c = std::mem::zeroed::<SwrtcPeerConfig>();
        assert_eq!(swrtc_peer_config_default(&mut c), SWRTC_OK);
        c.bind_ip = c"not-an-ip".as_ptr();
        let mut peer: *mut SwrtcPeer = null_mut();
        assert_eq!(
            swrtc_peer_new(null(), &c, null(), &mut peer),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("not-an-ip"));
        assert!(peer.is_null(), "outputs are written only on success");
        c.bind_ip = c"127.0.0.1".as_ptr();
        c.audio_out_10ms_chunks = 0;
        assert_eq!(
            swrtc_peer_new(null(), &c, null(), &mut peer),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        c.audio_out_10ms_chunks = 2;
        assert_eq!(swrtc_peer_new(null(), &c, null(), &mut peer), SWRTC_OK);
        assert!(!peer.is_null());

        let mut answer: *mut std::ffi::c_char = null_mut();
        let mut len = 0usize;
        assert_eq!(
            swrtc_peer_handle_offer(null(), c"v=0".as_ptr(), 3, &mut answer, &mut len),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            swrtc_peer_handle_offer(peer, null(), 10, &mut answer, &mut len),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            swrtc_peer_handle_offer(peer, c"v=0".as_ptr(), 0, &mut answer, &mut len),
            SWRTC_ERR_INVALID_SDP
        );
        assert_eq!(
            swrtc_peer_handle_offer(peer, c"v=0".as_ptr(), 3, null_mut(), &mut len),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            swrtc_peer_handle_offer(peer, c"garbage".as_ptr(), 7, &mut answer, &mut len),
            SWRTC_ERR_INVALID_SDP
        );
        assert!(answer.is_null());
        let bad_utf8 = [0xffu8, 0xfe, 0x00];
        assert_eq!(
            swrtc_peer_handle_offer(peer, bad_utf8.as_ptr().cast(), 2, &mut answer, &mut len),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            swrtc_peer_add_ice_candidate(peer, null(), 5),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            swrtc_peer_add_ice_candidate(peer, null(), 0),
            SWRTC_OK,
            "end of candidates"
        );
        assert_eq!(
            swrtc_peer_add_ice_candidate(peer, c"nonsense".as_ptr(), 8),
            SWRTC_ERR_INVALID_CANDIDATE
        );
        assert_eq!(
            swrtc_peer_send_message(peer, null(), 4, false),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            swrtc_peer_send_message(peer, b"x".as_ptr(), 0, false),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        let big = vec![b'a'; 70_000];
        assert_eq!(
            swrtc_peer_send_message(peer, big.as_ptr(), big.len(), false),
            SWRTC_ERR_TOO_LARGE
        );
        assert!(last_error().contains("limit"));
        assert_eq!(
            swrtc_peer_poll_event(peer, 0, null_mut()),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        let mut ev = std::mem::zeroed::<SwrtcEvent>();
        assert_eq!(
            swrtc_peer_poll_event(peer, 0, &mut ev),
            SWRTC_ERR_WOULD_BLOCK
        );
        assert_eq!(swrtc_peer_poll_event(peer, 20, &mut ev), SWRTC_ERR_TIMEOUT);
        swrtc_event_clear(null_mut());
        swrtc_event_clear(&mut ev);
        assert_eq!(
            swrtc_peer_state(peer, null_mut()),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        let mut st = SwrtcPeerState::SWRTC_PEER_CLOSED;
        assert_eq!(swrtc_peer_state(peer, &mut st), SWRTC_OK);
        assert_eq!(st, SwrtcPeerState::SWRTC_PEER_NEW);
        assert_eq!(
            swrtc_peer_get_stats(peer, null_mut()),
            SWRTC_ERR_INVALID_ARGUMENT
        );
        assert_eq!(swrtc_peer_connect(null()), SWRTC_ERR_INVALID_ARGUMENT);
        assert_eq!(swrtc_peer_disconnect(null()), SWRTC_ERR_INVALID_ARGUMENT);
        swrtc_peer_free(null_mut());
        swrtc_string_free(null_mut());
        swrtc_runtime_free(null_mut());
        swrtc_peer_free(peer);
        assert!(!CStr::from_ptr(swrtc_version()).to_bytes().is_empty());
    }
}

#[test]
fn random_udp_burst_is_dropped_and_peers_go_on() {
    let peer = Peer::new(loopback(), None).unwrap();
    let other = Peer::new(loopback(), None).unwrap();
    let mut c1 = AiortcPeer::spawn();
    let mut c2 = AiortcPeer::spawn();
    connect(&mut c1, &peer);
    connect(&mut c2, &other);
    let target = peer.local_addrs()[0];
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x1234_5678u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let mut sent_oversized = 0;
    for i in 0..3000 {
        let len = match i % 10 {
            0 => 2001 + (next() % 6000) as usize,
            1 => 0,
            _ => (next() % 1500) as usize,
        };
        if len > 2000 {
            sent_oversized += 1;
        }
        let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Some look like STUN, DTLS or RTP to get past the first demux byte.
        if let Some(b) = data.first_mut() {
            *b = [0x00, 0x16, 0x80, 0x90][i % 4];
        }
        let _ = sock.send_to(&data, target);
    }
    assert!(sent_oversized > 100);
    exchange(&mut c1, &peer, "after-burst-1");
    exchange(&mut c2, &other, "after-burst-2");
    let stats = peer.stats().unwrap();
    assert!(
        stats.datagrams_dropped + stats.input_errors >= 1000,
        "garbage is counted: {stats:?}"
    );
    assert_eq!(peer.state(), PeerState::Connected);
}
