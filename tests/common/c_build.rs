//! Builds the C and C++ examples the way a user would: against the committed headers and
//! the shared library of this build profile, with `-Wall -Wextra -Werror`, optionally with
//! AddressSanitizer and UndefinedBehaviorSanitizer.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the cdylib of this build profile: `cargo test` builds the library
/// target with all its crate types (rlib, cdylib, staticlib) into `target/<profile>/deps`
/// before it runs a test binary, with the same features as the tests.
fn lib_dir() -> PathBuf {
    // target/<profile>/deps/<test binary> → target/<profile>/deps
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().to_path_buf()
}

/// Checks that the shared library of this test build is there. (Not `cargo build --lib`:
/// without the dev-dependencies' features that rebuilds every dependency, and it writes
/// the same `deps/libsmallwebrtc.so` the test build does.)
pub fn build_lib() {
    let so = lib_dir().join("libsmallwebrtc.so");
    assert!(
        so.exists(),
        "{} is missing: run the tests with cargo test",
        so.display()
    );
}

/// The flags of a sanitized build (compile and link): ASan and UBSan, every UB report
/// fatal, frames kept for readable reports.
pub const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
];

/// Compiles the example `src` (a path from the repository root; `.cpp` is built as C++17
/// with `c++`, anything else as C11 with `cc`) into `exe` with warnings as errors, adding
/// `flags` (include paths, libraries, sanitizers) after the source.
pub fn compile(src: &str, exe: &Path, flags: &[String]) {
    let cpp = src.ends_with(".cpp");
    let (var, default, std) = if cpp {
        ("CXX", "c++", "-std=c++17")
    } else {
        ("CC", "cc", "-std=c11")
    };
    let compiler = std::env::var(var).unwrap_or_else(|_| default.into());
    if let Some(dir) = exe.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let out = Command::new(&compiler)
        .args([
            std,
            "-Wall",
            "-Wextra",
            "-Werror",
            "-D_POSIX_C_SOURCE=200809L",
        ])
        .arg(root().join(src))
        .arg("-o")
        .arg(exe)
        .args(flags)
        .output()
        .unwrap_or_else(|e| panic!("{compiler}: {e}"));
    assert!(
        out.status.success(),
        "{src} does not compile with {compiler} {flags:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Flags to build against the repository's headers and this profile's shared library.
pub fn local_flags() -> Vec<String> {
    let lib = lib_dir();
    vec![
        format!("-I{}", root().join("include").display()),
        format!("-L{}", lib.display()),
        format!("-Wl,-rpath,{}", lib.display()),
        "-lsmallwebrtc".into(),
        "-lpthread".into(),
    ]
}

/// Compiles `examples/c/<name>.c` into `out_dir/<name>` against the shared library of this
/// test build, and returns the executable's path. `libs` are extra `-l` flags.
pub fn compile_c_example(name: &str, out_dir: &Path, libs: &[&str]) -> PathBuf {
    build_lib();
    let exe = out_dir.join(name);
    let mut flags = local_flags();
    flags.extend(libs.iter().map(|l| l.to_string()));
    compile(&format!("examples/c/{name}.c"), &exe, &flags);
    exe
}
