//! The C examples and the C++ example built with `-fsanitize=address,undefined` (every
//! report fatal, LeakSanitizer on) and run against aiortc for a whole session, ending with
//! a clean exit; and the C echo bot run under valgrind for one full session: 0 errors and
//! 0 definitely lost bytes. Our library itself is not instrumented; what is checked is
//! everything the programs do across the C ABI (buffers, strings, events, frames, frees).

mod c_bots;
mod common;
mod signalling_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use c_bots::{answer_offer_session, assert_clean, echo_session, game_loop_session, Bot};
use common::c_build::{build_lib, compile, compile_c_example, local_flags, SANITIZE};

const T: Duration = Duration::from_secs(20);

fn out_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("swrtc-san-{name}-{}", std::process::id()))
}

/// Builds `src` with the sanitizers into `dir/name`.
fn sanitized(src: &str, dir: &Path, name: &str) -> PathBuf {
    build_lib();
    let exe = dir.join(name);
    let mut flags = local_flags();
    flags.extend(SANITIZE.iter().map(|f| f.to_string()));
    compile(src, &exe, &flags);
    exe
}

/// A command that runs `exe` with reports on stderr and a failing exit on any finding.
fn sanitized_command(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1:exitcode=66")
        .env(
            "UBSAN_OPTIONS",
            "print_stacktrace=1:halt_on_error=1:exitcode=67",
        );
    cmd
}

fn run_bot(src: &str, name: &str, session: fn(&Bot, Duration)) {
    let dir = out_dir(name);
    let exe = sanitized(src, &dir, name);
    let mut cmd = sanitized_command(&exe);
    cmd.args(["127.0.0.1:0", "120"]);
    let bot = Bot::spawn(name, cmd, T);
    session(&bot, T);
    let (status, stderr) = bot.stop(T);
    assert_clean(name, status, &stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn c_echo_bot_under_asan_and_ubsan() {
    run_bot("examples/c/echo_bot.c", "echo_bot", echo_session);
}

#[test]
fn c_game_loop_under_asan_and_ubsan() {
    run_bot("examples/c/game_loop.c", "game_loop", game_loop_session);
}

#[test]
fn cpp_echo_bot_under_asan_and_ubsan() {
    run_bot("examples/cpp/echo_bot.cpp", "echo_bot_cpp", echo_session);
}

#[test]
fn c_answer_offer_under_asan_and_ubsan() {
    let dir = out_dir("answer_offer");
    let exe = sanitized("examples/c/answer_offer.c", &dir, "answer_offer");
    let (status, stderr) = answer_offer_session(sanitized_command(&exe), &dir, T);
    assert_clean("answer_offer", status, &stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One full session of the C echo bot under valgrind (memcheck): connect, messages, the
/// tone echoed, the caller leaves, SIGTERM, the bot frees its server and peers and exits.
/// Any memory error or definitely lost block fails it.
#[test]
fn c_echo_bot_under_valgrind_for_one_session() {
    let has_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_valgrind,
        "valgrind is missing: run `.ci/setup.sh --tests`"
    );
    let dir = out_dir("valgrind");
    let exe = compile_c_example("echo_bot", &dir, &["-g"]);
    // Everything is ~20-50x slower under valgrind: generous deadlines.
    let slow = Duration::from_secs(90);
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--error-exitcode=99",
        "--leak-check=full",
        "--show-leak-kinds=definite",
        "--errors-for-leak-kinds=definite",
        "--num-callers=30",
    ])
    .arg(&exe)
    .args(["127.0.0.1:0", "600"]);
    let bot = Bot::spawn("echo_bot@valgrind", cmd, slow);
    echo_session(&bot, slow);
    let (status, stderr) = bot.stop(slow);
    assert!(
        stderr.contains("ERROR SUMMARY: 0 errors"),
        "valgrind found errors or definite leaks:\n{stderr}"
    );
    assert!(
        status.success(),
        "echo_bot under valgrind exited with {status}\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
