//! The C side of logs and stats: `examples/c/stats_log.c`, built against the header and
//! the shared library, installs a log callback, answers aiortc's offer and prints the
//! network stats struct and the stats JSON, which must agree with each other and with
//! what the session really is (host candidates on loopback, an RTT, bytes both ways).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::aiortc::AiortcPeer;
use common::c_build::compile_c_example;
use serde_json::{json, Value};

#[test]
fn c_program_gets_logs_network_stats_and_json() {
    let out_dir = std::env::temp_dir().join(format!("swrtc-c-stats-{}", std::process::id()));
    let exe = compile_c_example("stats_log", &out_dir, &["-lpthread"]);

    let mut client = AiortcPeer::spawn();
    let offer = client.offer(json!({"audio": true, "video": false, "tone_hz": 440}));
    let offer_file = out_dir.join("offer.sdp");
    std::fs::File::create(&offer_file)
        .unwrap()
        .write_all(offer.as_bytes())
        .unwrap();
    let mut child = Command::new(&exe)
        .arg(&offer_file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut answer = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line == "--END--" {
            break;
        }
        answer.push_str(&line);
        answer.push('\n');
    }
    assert!(answer.starts_with("v=0"), "answer: {answer}");
    client.answer(answer.trim_end());
    client.wait_channel_open(Duration::from_secs(15));

    let out: HashMap<String, String> = lines
        .map_while(|l| l.ok())
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "stats_log failed: {status}; printed {out:?}"
    );
    let num = |k: &str| -> f64 {
        out.get(k)
            .unwrap_or_else(|| panic!("no {k} in {out:?}"))
            .parse()
            .unwrap()
    };

    assert!(num("reports") >= 2.0, "{out:?}");
    assert!(num("rtt_ms") > 0.0 && num("rtt_ms") < 1000.0, "{out:?}");
    assert!(num("bytes_in") > 0.0 && num("bytes_out") > 0.0);
    assert!(num("packets_in") > 0.0);
    assert_eq!(num("local_type"), 1.0, "host");
    assert_eq!(num("remote_type"), 1.0, "host");
    assert_eq!(num("transport"), 1.0, "udp");
    let remote: std::net::SocketAddr = out["remote_address"].parse().unwrap();
    assert!(remote.ip().is_loopback());

    // The JSON, taken just after the struct, says the same.
    let j: Value = serde_json::from_str(&out["json"]).unwrap();
    let n = &j["network"];
    assert_eq!(n["selected_pair"]["local_type"], json!("host"));
    assert_eq!(n["selected_pair"]["remote_type"], json!("host"));
    assert_eq!(n["selected_pair"]["protocol"], json!("udp"));
    assert_eq!(
        n["selected_pair"]["remote_address"],
        json!(out["remote_address"])
    );
    assert_eq!(
        n["selected_pair"]["local_address"],
        json!(out["local_address"])
    );
    assert!(n["bytes_in"].as_f64().unwrap() >= num("bytes_in"));
    assert!(n["reports"].as_f64().unwrap() >= num("reports"));
    assert!(n["rtt_ms"].as_f64().unwrap() > 0.0);

    // Logs arrived at DEBUG (the data channel opening is one), from library threads,
    // with lengths that match their NULs; none after logging was turned off; setting the
    // callback from inside it was refused.
    assert!(num("logs") > 0.0, "{out:?}");
    assert!(num("log_threads_elsewhere") > 0.0, "{out:?}");
    assert_eq!(num("log_bad_strings"), 0.0);
    assert_eq!(num("logs_after_off"), 0.0);
    assert_eq!(num("log_reentry_refused"), 1.0);
    assert!(client.close());
    let _ = std::fs::remove_dir_all(&out_dir);
}
