//! The C++ echo bot (examples/cpp/echo_bot.cpp over include/smallwebrtc.hpp), built with
//! `-std=c++17 -Wall -Wextra -Werror`, serves aiortc: std::function callbacks echo the
//! caller's tone and answer app messages; SIGTERM ends it cleanly. The wrapper's inputs
//! also take C++20's std::span, with -Wpedantic.

mod c_bots;
mod common;
mod signalling_support;

use std::process::Command;
use std::time::Duration;

use c_bots::{echo_session, Bot};
use common::c_build::{build_lib, compile, local_flags};

const T: Duration = Duration::from_secs(15);

#[test]
fn cpp_echo_bot_serves_aiortc() {
    let out_dir = std::env::temp_dir().join(format!("swrtc-cpp-{}", std::process::id()));
    build_lib();
    let exe = out_dir.join("echo_bot_cpp");
    compile("examples/cpp/echo_bot.cpp", &exe, &local_flags());
    let mut cmd = Command::new(&exe);
    cmd.args(["127.0.0.1:0", "120"]);
    let bot = Bot::spawn("echo_bot_cpp", cmd, T);
    echo_session(&bot, T);
    let (status, stderr) = bot.stop(T);
    assert!(
        status.success(),
        "echo_bot_cpp exited with {status}\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// Uses of the wrapper's inputs that must compile: std::span (C++20), std::vector,
/// std::array, C arrays, pointer and size, string_view; a moved-from handle is empty and a
/// call on an empty one throws swrtc::Error with the C result code.
const CPP20_USES: &str = r#"
#include <array>
#include <span>
#include <vector>
#include "smallwebrtc.hpp"
static void use(const swrtc::Peer &p) {
    std::vector<std::int16_t> v(480);
    std::array<std::int16_t, 480> a{};
    std::int16_t c[480] = {0};
    p.write_audio(std::span<const std::int16_t>(v));
    p.write_audio(v);
    p.write_audio(a);
    p.write_audio(c);
    p.write_audio({v.data(), v.size()});
    std::uint64_t pts = 0;
    (void)p.read_audio(std::span<std::int16_t>(v), 0, &pts);
    p.send_text(std::string_view("hi"));
    std::vector<std::uint8_t> bytes{1, 2};
    p.send_binary(bytes);
}
int main() {
    SwrtcPeerConfig cfg = swrtc::peer_config();
    cfg.bind_ip = "127.0.0.1";
    swrtc::Peer a(cfg);
    swrtc::Peer b = std::move(a);
    if (a || !b) return 1;
    use(b);
    swrtc::Peer empty;
    try {
        empty.connect();
        return 1;
    } catch (const swrtc::Error &e) {
        return e.code() == SWRTC_ERR_INVALID_ARGUMENT ? 0 : 1;
    }
}
"#;

#[test]
fn cpp_wrapper_takes_std_span_in_cpp20_and_throws_on_an_empty_handle() {
    let out_dir = std::env::temp_dir().join(format!("swrtc-cpp20-{}", std::process::id()));
    build_lib();
    std::fs::create_dir_all(&out_dir).unwrap();
    let src = out_dir.join("uses.cpp");
    std::fs::write(&src, CPP20_USES).unwrap();
    let mut flags = local_flags();
    flags.extend(["-std=c++20".into(), "-Wpedantic".into()]);
    let exe = out_dir.join("uses");
    compile(src.to_str().unwrap(), &exe, &flags);
    // Run it too: a peer before any offer takes audio and messages, an empty handle throws.
    let out = std::process::Command::new(&exe).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// The README's "From C++" snippet, put in a main(), compiles with warnings as errors.
#[test]
fn readme_cpp_snippet_compiles() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## From C++")
        .nth(1)
        .expect("README has a From C++ section");
    let snippet = section
        .split("```cpp\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a cpp code block");
    let (includes, body): (Vec<&str>, Vec<&str>) =
        snippet.lines().partition(|l| l.starts_with("#include"));
    let src = format!(
        "#include <memory>\n#include <mutex>\n#include <vector>\n{}\nint main() {{\n{}\nreturn 0;\n}}\n",
        includes.join("\n"),
        body.join("\n")
    );
    let out_dir = std::env::temp_dir().join(format!("swrtc-cpp-readme-{}", std::process::id()));
    build_lib();
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = out_dir.join("readme.cpp");
    std::fs::write(&file, src).unwrap();
    compile(
        file.to_str().unwrap(),
        &out_dir.join("readme"),
        &local_flags(),
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}
