//! Replays every committed fuzz input (the seed corpus in `fuzz/corpus/<target>/` and the
//! inputs that once crashed, in `fuzz/regressions/<target>/`) through the same entry points
//! the fuzz targets call, so a fixed crash stays fixed in a plain `cargo test`.

use std::path::PathBuf;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("offer", smallwebrtc::fuzz::offer),
    ("dc_message", smallwebrtc::fuzz::dc_message),
    ("candidates", smallwebrtc::fuzz::candidates),
    ("datagrams", smallwebrtc::fuzz::datagrams),
    ("http_request", smallwebrtc::fuzz::http_request),
    ("routes", smallwebrtc::fuzz::routes),
];

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_a_seed_corpus_and_a_fuzz_binary() {
    let manifest =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    for (target, _) in TARGETS {
        assert!(
            !inputs("corpus", target).is_empty(),
            "fuzz/corpus/{target} is empty"
        );
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
    }
}

#[test]
fn corpus_and_regressions_replay_clean() {
    let mut n = 0;
    for (target, run) in TARGETS {
        for kind in ["corpus", "regressions"] {
            for path in inputs(kind, target) {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| run(&data));
                assert!(outcome.is_ok(), "{target}: {} panics", path.display());
                n += 1;
            }
        }
    }
    let accepted = smallwebrtc::fuzz::ACCEPTED.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{n} inputs replayed; {accepted} offers accepted");
    // The real offers among the seeds (aiortc's, Chromium-shaped, ESP32) get through.
    assert!(accepted >= 4, "only {accepted} seed offers accepted");
}
