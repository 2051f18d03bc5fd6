//! Builds the C example against the committed header and the built shared library with
//! `-Wall -Wextra -Werror`, and runs it against aiortc: it answers an offer and echoes an
//! app message through the C callbacks.

mod c_bots;
mod common;
mod signalling_support;

use std::process::Command;
use std::time::Duration;

use c_bots::answer_offer_session;
use common::c_build::compile_c_example;

#[test]
fn c_example_answers_an_offer_and_echoes_a_message() {
    let out_dir = std::env::temp_dir().join(format!("swrtc-c-{}", std::process::id()));
    let exe = compile_c_example("answer_offer", &out_dir, &[]);
    let (status, stderr) =
        answer_offer_session(Command::new(&exe), &out_dir, Duration::from_secs(15));
    assert!(status.success(), "the C example failed: {status}\n{stderr}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
