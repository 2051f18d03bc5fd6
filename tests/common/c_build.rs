//! Builds the C examples the way a C user would: against the committed header and the
//! shared library of this build profile, with `-Wall -Wextra -Werror`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the cdylib of this build profile.
fn lib_dir() -> PathBuf {
    // target/<profile>/deps/<test binary> → target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Compiles `examples/c/<name>.c` into `out_dir/<name>`, after building the shared library
/// (`cargo build --lib`), and returns the executable's path. `libs` are extra `-l` flags.
pub fn compile_c_example(name: &str, out_dir: &Path, libs: &[&str]) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--lib", "--quiet"])
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --lib failed");
    std::fs::create_dir_all(out_dir).unwrap();
    let exe = out_dir.join(name);
    let lib = lib_dir();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-D_POSIX_C_SOURCE=200809L",
        ])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join(format!("examples/c/{name}.c")))
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lsmallwebrtc")
        .args(libs)
        .status()
        .expect("a C compiler");
    assert!(status.success(), "examples/c/{name}.c does not compile");
    exe
}
