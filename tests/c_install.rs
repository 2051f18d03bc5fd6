//! Installed like a C library: `cargo cinstall` (cargo-c) into a temporary prefix puts the
//! committed headers, `libsmallwebrtc.so` with a versioned soname, `libsmallwebrtc.a` and
//! `smallwebrtc.pc` there. The C examples build from those files alone with
//! `pkg-config --cflags --libs smallwebrtc` (and statically with `--static`), a CMake
//! project builds with `pkg_check_modules`, and the installed builds serve aiortc.

mod c_bots;
mod common;
mod signalling_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use c_bots::{echo_session, game_loop_session, Bot};
use common::c_build::compile;

const T: Duration = Duration::from_secs(15);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo_c_present() -> bool {
    Command::new(env!("CARGO"))
        .args(["cinstall", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `pkg-config <args> smallwebrtc` against the prefix, split into flags.
fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("smallwebrtc")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pkg-config {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.split_whitespace().map(str::to_string).collect()
}

fn soname(lib: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(lib)
        .output()
        .expect("readelf runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("(SONAME)"))
        .unwrap_or_else(|| panic!("{} has no SONAME:\n{text}", lib.display()));
    line.rsplit('[')
        .next()
        .unwrap()
        .trim_end_matches(']')
        .to_string()
}

/// Builds examples/c/echo_bot.c with CMake's `pkg_check_modules`, as the README shows.
fn cmake_build(prefix: &Path, dir: &Path) {
    let project = dir.join("cmake-project");
    std::fs::create_dir_all(&project).unwrap();
    let src = root().join("examples/c/echo_bot.c");
    std::fs::write(
        project.join("CMakeLists.txt"),
        format!(
            "cmake_minimum_required(VERSION 3.16)\n\
             project(echo_bot C)\n\
             find_package(PkgConfig REQUIRED)\n\
             pkg_check_modules(SMALLWEBRTC REQUIRED IMPORTED_TARGET smallwebrtc)\n\
             find_package(Threads REQUIRED)\n\
             add_executable(echo_bot {})\n\
             target_compile_definitions(echo_bot PRIVATE _POSIX_C_SOURCE=200809L)\n\
             target_link_libraries(echo_bot PkgConfig::SMALLWEBRTC Threads::Threads)\n",
            src.display()
        ),
    )
    .unwrap();
    let build = project.join("build");
    for args in [
        vec![
            "-S".to_string(),
            project.display().to_string(),
            "-B".into(),
            build.display().to_string(),
            format!("-DCMAKE_PREFIX_PATH={}", prefix.display()),
        ],
        vec!["--build".into(), build.display().to_string()],
    ] {
        let out = Command::new("cmake")
            .args(&args)
            .output()
            .expect("cmake runs");
        assert!(
            out.status.success(),
            "cmake {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(build.join("echo_bot").exists());
}

#[test]
fn cinstall_into_a_prefix_then_build_and_run_the_c_examples_with_pkg_config() {
    assert!(
        cargo_c_present(),
        "cargo-c is not installed: `bash .ci/setup.sh --tests` installs it \
         (`cargo install cargo-c --locked`)"
    );
    let dir = std::env::temp_dir().join(format!("swrtc-install-{}", std::process::id()));
    let prefix = dir.join("prefix");
    let out = Command::new(env!("CARGO"))
        .args([
            // The debug profile: the test checks what is installed and how it links, not
            // speed, and a release build of every dependency would double its time.
            "cinstall", "--debug", "--libdir", "lib", "--prefix",
        ])
        .arg(&prefix)
        .current_dir(root())
        .output()
        .expect("cargo cinstall runs");
    assert!(
        out.status.success(),
        "cargo cinstall:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The committed headers, byte for byte (cargo-c must not generate another one).
    for h in ["smallwebrtc.h", "smallwebrtc.hpp"] {
        let installed = std::fs::read(prefix.join("include/smallwebrtc").join(h)).unwrap();
        assert_eq!(
            installed,
            std::fs::read(root().join("include").join(h)).unwrap(),
            "{h}"
        );
    }
    let lib = prefix.join("lib");
    let so = soname(&lib.join("libsmallwebrtc.so"));
    assert!(
        so.starts_with("libsmallwebrtc.so.") && lib.join(&so).exists(),
        "soname {so}"
    );
    assert!(lib.join("libsmallwebrtc.a").exists());

    // Shared: the flags pkg-config gives, nothing from the repository but the sources.
    let mut flags = pkg_config(&prefix, &["--cflags", "--libs"]);
    assert!(flags.contains(&"-lsmallwebrtc".to_string()), "{flags:?}");
    flags.push(format!("-Wl,-rpath,{}", lib.display()));
    flags.push("-lpthread".into());
    for name in ["answer_offer", "echo_bot", "game_loop"] {
        compile(&format!("examples/c/{name}.c"), &dir.join(name), &flags);
    }
    let mut cmd = Command::new(dir.join("echo_bot"));
    cmd.args(["127.0.0.1:0", "120"]);
    let bot = Bot::spawn("installed echo_bot", cmd, T);
    echo_session(&bot, T);
    let (status, stderr) = bot.stop(T);
    assert!(status.success(), "installed echo_bot: {status}\n{stderr}");

    // Static: libsmallwebrtc.a plus the pc file's Libs.private are enough to link and run.
    let flags: Vec<String> = pkg_config(&prefix, &["--static", "--cflags", "--libs"])
        .into_iter()
        .map(|f| {
            if f == "-lsmallwebrtc" {
                "-l:libsmallwebrtc.a".into()
            } else {
                f
            }
        })
        .collect();
    let exe = dir.join("game_loop_static");
    compile("examples/c/game_loop.c", &exe, &flags);
    let ldd = Command::new("ldd").arg(&exe).output().unwrap();
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    assert!(
        !ldd.contains("libsmallwebrtc"),
        "linked dynamically:\n{ldd}"
    );
    let mut cmd = Command::new(&exe);
    cmd.args(["127.0.0.1:0", "120"]);
    let bot = Bot::spawn("static game_loop", cmd, T);
    game_loop_session(&bot, T);
    let (status, stderr) = bot.stop(T);
    assert!(status.success(), "static game_loop: {status}\n{stderr}");

    cmake_build(&prefix, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}
