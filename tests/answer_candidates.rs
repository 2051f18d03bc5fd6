//! Our answer lists its candidates in every bundled m-section, so a client that reads any
//! one section finds them: stock aiortc reads the last section's, and behind a NAT it
//! cannot connect without them (it must send the first check).

mod common;

use std::time::Duration;

use common::aiortc::AiortcPeer;
use common::peers::loopback;
use serde_json::json;
use smallwebrtc::Peer;

const T: Duration = Duration::from_secs(15);

#[test]
fn aiortc_takes_our_candidates_from_the_answer_for_any_layout() {
    let mut client = AiortcPeer::spawn();
    // Audio + camera + screen + data channel (four sections), then audio only + channel.
    for opts in [
        json!({"audio": true, "video": true, "screen": true}),
        json!({"audio": true, "video_line": false}),
    ] {
        let peer = Peer::new(loopback(), None).unwrap();
        let offer = client.offer(opts.clone());
        let answer = peer.handle_offer(&offer).unwrap();
        let sections: Vec<&str> = answer.split("\r\nm=").skip(1).collect();
        assert!(sections.len() >= 2, "{answer}");
        for s in &sections {
            assert!(
                s.contains("a=candidate:"),
                "a section without candidates: {s}"
            );
        }
        let taken = client.answer(&answer);
        assert!(taken >= 1, "aiortc took no remote candidate ({opts})");
        client.wait_channel_open(T);
        peer.close().unwrap();
    }
}
