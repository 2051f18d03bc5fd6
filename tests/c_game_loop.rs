//! The game-loop example (examples/c/game_loop.c), built with `-Wall -Wextra -Werror`,
//! serves aiortc from a fixed 100 Hz loop of pull calls only: the caller's tone comes
//! back, app messages are answered and camera frames are read; SIGTERM ends it cleanly.

mod c_bots;
mod common;
mod signalling_support;

use std::process::Command;
use std::time::Duration;

use c_bots::{game_loop_session, Bot};
use common::c_build::compile_c_example;

const T: Duration = Duration::from_secs(15);

#[test]
fn game_loop_serves_aiortc_with_pull_calls_only() {
    let out_dir = std::env::temp_dir().join(format!("swrtc-game-loop-{}", std::process::id()));
    let exe = compile_c_example("game_loop", &out_dir, &[]);
    let mut cmd = Command::new(&exe);
    cmd.args(["127.0.0.1:0", "120"]);
    let bot = Bot::spawn("game_loop", cmd, T);
    game_loop_session(&bot, T);
    let (status, stderr) = bot.stop(T);
    assert!(status.success(), "game_loop exited with {status}\n{stderr}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
