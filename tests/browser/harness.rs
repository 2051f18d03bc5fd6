//! Runs a browser driver (`tests/browser/*.mjs`, node + playwright-core +
//! Debian's chromium) against the echo example, with both inside one network
//! namespace that has only loopback, so Chromium's ICE checks stay on
//! 127.0.0.1 (Chromium sends checks from every interface it has).
//!
//! How: the test (outer) re-executes its own test binary, filtered to the same
//! test, under `unshare -n sh -c 'ip link set lo up && exec …'`, with
//! `SWRTC_BROWSER_NETNS=1`. The inner run starts the echo example, reads the
//! URL it prints, runs the node driver against it, and prints the driver's
//! JSON result on a line starting with `SWRTC_BROWSER_RESULT `; the outer run
//! parses it and asserts. A machine without `unshare` (util-linux) or the right
//! to create a network namespace fails the test with a message; it never
//! passes silently. With [`run_with_app`], the inner run serves with a server
//! of the test's own (in its process, to check what the app receives) instead
//! of the echo example, and adds what the app saw to the result as `"app"`.
//!
//! Prerequisites: `.ci/setup-browser.sh` (chromium from apt, `npm ci` in
//! tests/browser). The bundle of the official client (`tests/browser/dist/`)
//! is rebuilt by every run (esbuild, well under a second).
//!
//! Environment:
//! - `SWRTC_ECHO_CMD`: a shell command to run instead of the echo example
//!   (e.g. another SmallWebRTC server, to compare); it must print a line with
//!   `http://127.0.0.1:PORT` on stdout or stderr and serve `/api/offer` there.
//! - `SWRTC_BROWSER_LOG=1`: copy the driver's and the server's logs to stderr
//!   even when the test passes.
//! - `SWRTC_CHROMIUM`: the Chromium binary (default /usr/bin/chromium).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const INNER_ENV: &str = "SWRTC_BROWSER_NETNS";
const RESULT_PREFIX: &str = "SWRTC_BROWSER_RESULT ";
/// Deadline for the whole inner run (server start, browser, driver).
const INNER_DEADLINE: Duration = Duration::from_secs(150);
/// Deadline for the echo example to print its URL.
const SERVER_START_DEADLINE: Duration = Duration::from_secs(30);
/// The driver's own overall deadline (its `--timeout`), in seconds.
const DRIVER_TIMEOUT_S: u64 = 90;
/// Deadline for the driver process, a little over its own.
const DRIVER_DEADLINE: Duration = Duration::from_secs(DRIVER_TIMEOUT_S + 20);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn browser_dir() -> PathBuf {
    repo_root().join("tests").join("browser")
}

/// What a browser test does.
pub struct BrowserTest<'a> {
    /// The `#[test]` function's name (the inner run is filtered to it).
    pub test_name: &'a str,
    /// The driver script in tests/browser.
    pub driver: &'a str,
    /// Extra arguments for the driver.
    pub driver_args: &'a [&'a str],
}

/// Runs `t`. In the outer run, returns the driver's JSON result (after the
/// inner run in the namespace finished); in the inner run, does the work,
/// prints the result line and returns `None`.
pub fn run(t: &BrowserTest) -> Option<Value> {
    if std::env::var_os(INNER_ENV).is_some() {
        inner(t);
        None
    } else {
        Some(outer(t, true))
    }
}

/// A server the test runs in its own process instead of the echo example, so
/// that it can check what the app receives. Started in the inner run (inside
/// the namespace).
pub struct App {
    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Called once the driver has ended: stops the app and returns what it
    /// saw, which becomes the result's `"app"` field.
    pub finish: Box<dyn FnOnce() -> Value>,
}

/// Like [`run`], with the app `start` returns serving the driver instead of
/// the echo example.
pub fn run_with_app(t: &BrowserTest, start: impl FnOnce() -> App) -> Option<Value> {
    if std::env::var_os(INNER_ENV).is_some() {
        assert_loopback_only();
        let app = start();
        eprintln!("browser test: app at {}", app.url);
        let mut v = run_driver(t, &app.url);
        v["app"] = (app.finish)();
        println!("\n{RESULT_PREFIX}{v}");
        None
    } else {
        Some(outer(t, false))
    }
}

// ------------------------------------------------------------------ outer

fn outer(t: &BrowserTest, echo: bool) -> Value {
    check_prerequisites();
    build_bundle();
    if echo && std::env::var_os("SWRTC_ECHO_CMD").is_none() {
        build_echo_example();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new("unshare");
    cmd.arg("-n")
        .arg("sh")
        .arg("-c")
        .arg(r#"ip link set lo up && exec "$0" "$@""#)
        .arg(&exe)
        .args([t.test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INNER_ENV, "1")
        .env("RUST_BACKTRACE", "1");
    // Same process group as this test, so that Ctrl-C reaches the inner run;
    // its children watch their stdin and go when it goes.
    let out = run_with_deadline(
        cmd,
        INNER_DEADLINE + Duration::from_secs(20),
        "the inner test run",
        false,
    )
    .unwrap_or_else(|e| {
        panic!("cannot run `unshare -n` (util-linux) for the browser test's network namespace: {e}")
    });
    // (libtest may have printed "test name ... " on the same line.)
    let result_line = out.stdout.lines().find_map(|l| {
        l.find(RESULT_PREFIX)
            .map(|i| l[i + RESULT_PREFIX.len()..].to_owned())
    });
    let verbose = std::env::var_os("SWRTC_BROWSER_LOG").is_some();
    let Some(line) = result_line else {
        let hint = if out.stderr.contains("unshare failed")
            || out.stderr.contains("Operation not permitted")
        {
            "\n\nthe browser tests need to create a network namespace (`unshare -n`): run them as root or \
             in a container/VM that allows it (CAP_SYS_ADMIN)"
        } else {
            ""
        };
        panic!(
            "the browser test run inside `unshare -n` produced no result (exit {:?}{}){hint}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            if out.timed_out { ", killed at its deadline" } else { "" },
            tail(&out.stdout, 80),
            tail(&out.stderr, 200)
        );
    };
    let v: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad result JSON ({e}): {line}"));
    let ok = v["ok"] == Value::Bool(true);
    if !ok || verbose {
        eprintln!("--- inner run stderr ---\n{}", tail(&out.stderr, 300));
    }
    eprintln!("{} result: {}", t.driver, summary(&v));
    v
}

pub fn check_prerequisites() {
    let missing = |what: &str| -> ! {
        panic!("browser test prerequisite missing: {what}\nrun `.ci/setup-browser.sh` (as root) from the repository root first")
    };
    if which("unshare").is_none() {
        missing("`unshare` (util-linux), needed to run the browser and server in a loopback-only network namespace");
    }
    if which("ip").is_none() {
        missing("`ip` (iproute2), needed to bring up lo in the network namespace");
    }
    if which("node").is_none() {
        missing("`node` (Node.js)");
    }
    let chromium = std::env::var_os("SWRTC_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    if !chromium.exists() {
        missing(&format!(
            "Chromium at {} (Debian package `chromium`)",
            chromium.display()
        ));
    }
    for m in [
        "playwright-core",
        "esbuild",
        "@pipecat-ai/client-js",
        "@pipecat-ai/small-webrtc-transport",
    ] {
        if !browser_dir()
            .join("node_modules")
            .join(m)
            .join("package.json")
            .exists()
        {
            missing(&format!(
                "the npm package {m} in tests/browser/node_modules (npm ci)"
            ));
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub fn build_bundle() {
    let out = Command::new("node")
        .arg("build.mjs")
        .current_dir(browser_dir())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "bundling the official client (node build.mjs in tests/browser) failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The build profile directory of this test binary: target/<profile>.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn build_echo_example() {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--example", "echo", "--quiet"])
        .current_dir(repo_root());
    if profile_dir().file_name().and_then(|n| n.to_str()) == Some("release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "cargo build --example echo failed");
}

fn echo_example_path() -> PathBuf {
    profile_dir().join("examples").join("echo")
}

// ------------------------------------------------------------------ inner

/// Only lo may exist here, else Chromium's checks could leave loopback.
/// (/proc/self/net follows the process's namespace; /sys/class/net does not.)
fn assert_loopback_only() {
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let ifaces: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_owned())
        .collect();
    assert!(
        ifaces == ["lo"],
        "the inner browser test run is not in a loopback-only network namespace (interfaces: {ifaces:?})"
    );
}

fn inner(t: &BrowserTest) {
    assert_loopback_only();
    let started = Instant::now();

    let mut server = EchoServer::start();
    let url = server.wait_url(SERVER_START_DEADLINE);
    eprintln!(
        "browser test: server at {url} ({} ms)",
        started.elapsed().as_millis()
    );

    let out = run_driver_raw(t, &url);
    server.stop();
    eprintln!("--- server output ---\n{}", tail(&server.output(), 200));
    println!("\n{RESULT_PREFIX}{}", parse_driver_result(t, &out));
}

/// Runs the driver of `t` against `url` and returns its JSON result.
fn run_driver(t: &BrowserTest, url: &str) -> Value {
    let out = run_driver_raw(t, url);
    parse_driver_result(t, &out)
}

fn run_driver_raw(t: &BrowserTest, url: &str) -> Output {
    let driver = browser_dir().join(t.driver);
    let mut cmd = Command::new("node");
    cmd.arg(&driver)
        .arg(url)
        .args(["--timeout", &DRIVER_TIMEOUT_S.to_string()])
        .args(t.driver_args)
        .current_dir(browser_dir());
    // The driver ends (and closes Chromium) when its stdin closes, i.e. if
    // this process dies without killing it.
    cmd.env("SWRTC_DRIVER_WATCH_STDIN", "1");
    let out = run_with_deadline(cmd, DRIVER_DEADLINE, t.driver, true).expect("node runs");
    eprintln!("--- {} stderr ---\n{}", t.driver, tail(&out.stderr, 200));
    out
}

fn parse_driver_result(t: &BrowserTest, out: &Output) -> Value {
    driver_result(t.driver, out)
}

/// The official client's driver (`official_client.mjs` against `url`) run inside network
/// namespace `ns`, giving up after `timeout_s`, with `extra` arguments; it ends when its
/// stdin closes. Run it with [`run_with_deadline`], read it with [`driver_result`].
pub fn official_client_in(ns: &str, url: &str, timeout_s: u64, extra: &[String]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "node"])
        .arg(browser_dir().join("official_client.mjs"))
        .arg(url)
        .args(["--timeout", &timeout_s.to_string()])
        .args(extra)
        .current_dir(browser_dir())
        // The driver ends (and closes Chromium) when its stdin closes.
        .env("SWRTC_DRIVER_WATCH_STDIN", "1");
    cmd
}

/// The JSON result a driver (`what`) printed last on stdout; panics with its output if
/// there is none.
pub fn driver_result(what: &str, out: &Output) -> Value {
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let Some(line) = line else {
        panic!(
            "{} printed no JSON result (exit {:?}{})\n--- stdout ---\n{}",
            what,
            out.status,
            if out.timed_out {
                ", killed at its deadline"
            } else {
                ""
            },
            tail(&out.stdout, 50)
        )
    };
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad result JSON ({e}): {line}"))
}

/// The echo example (or `SWRTC_ECHO_CMD`), its output collected by threads.
struct EchoServer {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl EchoServer {
    fn start() -> EchoServer {
        let cmd = match std::env::var("SWRTC_ECHO_CMD") {
            Ok(c) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(format!("exec {c}"));
                cmd
            }
            Err(_) => {
                let exe = echo_example_path();
                assert!(exe.exists(), "no echo example at {}", exe.display());
                let mut cmd = Command::new(exe);
                cmd.args(["--addr", "127.0.0.1:0"]);
                cmd
            }
        };
        // Under a shell that stops the server when its stdin (a pipe from this
        // process) closes, so that no server outlives a killed test.
        let mut watched = Command::new("sh");
        watched
            .arg("-c")
            .arg(r#""$@" </dev/null & pid=$!; read _ignored; kill -TERM "$pid" 2>/dev/null; wait "$pid""#)
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        let mut cmd = watched;
        cmd.current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        own_process_group(&mut cmd);
        let mut child = cmd.spawn().expect("the echo server starts");
        let output = Arc::new(Mutex::new(String::new()));
        for r in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    let mut o = output.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        EchoServer { child, output }
    }

    /// Waits for the first `http://127.0.0.1:PORT` the server prints.
    fn wait_url(&mut self, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        loop {
            if let Some(url) = find_url(&self.output.lock().unwrap()) {
                return url;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "the echo server exited ({status}) before printing its URL:\n{}",
                    self.output()
                );
            }
            if Instant::now() > end {
                let out = self.output();
                self.stop();
                panic!(
                    "the echo server printed no http://127.0.0.1:PORT within {deadline:?}:\n{out}"
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn stop(&mut self) {
        kill_group(&mut self.child);
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_url(text: &str) -> Option<String> {
    let start = text.find("http://127.0.0.1:")?;
    let rest = &text[start + "http://127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let port: u16 = digits.parse().ok().filter(|p| *p != 0)?;
    Some(format!("http://127.0.0.1:{port}"))
}

// ------------------------------------------------------------------ processes

pub struct Output {
    pub status: Option<std::process::ExitStatus>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

fn own_process_group(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
}

/// Kills a child started in its own process group, with the whole group
/// (Chromium under node, anything under a shell), then reaps it.
fn kill_group(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        // The leader is gone; members of its group may remain.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` in its own process group with piped output; kills the group at
/// the deadline.
pub fn run_with_deadline(
    mut cmd: Command,
    deadline: Duration,
    what: &str,
    own_group: bool,
) -> std::io::Result<Output> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if own_group {
        own_process_group(&mut cmd);
    }
    let mut child = cmd.spawn()?;
    // Held open until the child ends; closed if this process dies.
    let _stdin = child.stdin.take();
    let read = |r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(r).read_to_string(&mut s);
            s
        })
    };
    let out_t = read(Box::new(child.stdout.take().unwrap()));
    let err_t = read(Box::new(child.stderr.take().unwrap()));
    let end = Instant::now() + deadline;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait()? {
            Some(s) => break Some(s),
            None if Instant::now() > end => {
                eprintln!("{what}: deadline of {deadline:?} passed, killing it");
                timed_out = true;
                if own_group {
                    kill_group(&mut child);
                } else {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                break None;
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    // Children left in the group (a browser) would hold the pipes open.
    if own_group {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
    }
    Ok(Output {
        status,
        timed_out,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    let from = v.len().saturating_sub(lines);
    v[from..].join("\n")
}

// ------------------------------------------------------------------ results

/// One line with the numbers a report needs.
pub fn summary(v: &Value) -> String {
    let t = &v["timings"];
    let g = |k: &str| {
        t.get(k)
            .and_then(Value::as_f64)
            .map(|x| format!("{x:.1}"))
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "ok={} connect={} ms, POST→answer={} ms, POST→ICE={} ms, POST→dc open={} ms, POST→bot-ready={} ms, POST→first echoed audio={} ms, echo RTT={} ms, ICE RTT={} ms, video frames decoded={}, problems={}",
        v["ok"],
        if t.get("connectCallToResolveMs").is_some() { g("connectCallToResolveMs") } else { g("clickToConnectedMs") },
        g("postToAnswerMs"),
        g("postToIceConnectedMs"),
        g("postToDcOpenMs"),
        g("postToBotReadyMs"),
        g("postToFirstEchoedAudioMs"),
        g("echoRoundTripMs"),
        v["stats"]["rttMs"],
        v["video"]["framesDecoded"],
        v["problems"],
    ) + &v.get("error").and_then(Value::as_str).map(|e| format!(", error={e}")).unwrap_or_default()
}

/// Panics with the problems of a failed result.
pub fn assert_ok(v: &Value) {
    if v["ok"] != Value::Bool(true) {
        panic!(
            "browser test failed: {}\nproblems: {}\nerror: {}\nconsole: {}\nevents: {}\ndebug: {}",
            summary(v),
            serde_json::to_string_pretty(&v["problems"]).unwrap(),
            v["error"],
            v["consoleErrors"],
            v["events"],
            v["debug"]
        );
    }
}
