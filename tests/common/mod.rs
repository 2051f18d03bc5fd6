#![allow(dead_code)]
pub mod aiortc;
pub mod c_build;
pub mod faults;
pub mod impair;
pub mod nat;
pub mod natnet;
pub mod offer;
pub mod peers;
pub mod str0m_client;
pub mod tone;

/// Builds the echo example (`cargo build --example echo`, the test's own profile) and
/// returns its path: `target/<profile>/deps/<test binary>` → `target/<profile>/examples/echo`.
pub fn echo_example() -> std::path::PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--example", "echo", "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --example echo failed");
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps")
        .join("examples/echo")
}
