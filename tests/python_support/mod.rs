//! Runs the Python package's programs (`python/examples/*.py`) for the tests: in
//! `<repo>/.venv-pyx` (made by `.ci/setup-pipecat.sh`: Pipecat and aiortc from PyPI), with
//! this working tree's package on `PYTHONPATH` and `SMALLWEBRTC_LIB` pointing at the shared
//! library `cargo test` built for this profile.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's interpreter; a clear failure when the venv is missing.
pub fn python() -> PathBuf {
    let py = repo_root().join(".venv-pyx/bin/python");
    assert!(
        py.exists(),
        "no {}: run `bash .ci/setup-pipecat.sh` (or `.ci/setup.sh --tests`) first",
        py.display()
    );
    py
}

/// The cdylib of this test's profile. `cargo test` builds the library with all its crate
/// types before it runs an integration test, so `target/<profile>/deps` holds a current
/// `libsmallwebrtc.so` (running `cargo build --lib` here would rebuild the crate with other
/// features and overwrite it).
pub fn shared_library() -> PathBuf {
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().join("libsmallwebrtc.so");
    assert!(lib.exists(), "no {} (built by cargo test)", lib.display());
    lib
}

/// The shell command that runs `script` (relative to the repository) with `args` as the
/// tests do, for harnesses that take a command line.
pub fn command_line(script: &str, args: &[&str]) -> String {
    let lib = shared_library();
    let mut s = format!(
        "env SMALLWEBRTC_LIB={} PYTHONPATH={} PYTHONUNBUFFERED=1 {} {}",
        lib.display(),
        repo_root().join("python").display(),
        python().display(),
        repo_root().join(script).display()
    );
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// A Python server program; it is stopped (stdin closed, then killed) on drop.
pub struct PyServer {
    child: Child,
    stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl PyServer {
    /// Starts `script` with `args` (it must print `open http://IP:PORT/` and take
    /// `--stdin`) and waits for its address.
    pub fn start(script: &str, args: &[&str]) -> PyServer {
        let lib = shared_library();
        let mut child = Command::new(python())
            .arg(repo_root().join(script))
            .args(args)
            .arg("--stdin")
            .env("SMALLWEBRTC_LIB", &lib)
            .env("PYTHONPATH", repo_root().join("python"))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python starts");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = crossbeam_channel::unbounded::<String>();
        for (r, tx) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                Some(tx),
            ),
            (Box::new(child.stderr.take().unwrap()), None),
        ] {
            let log = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    if let Some(tx) = &tx {
                        let _ = tx.send(line.clone());
                    }
                    let mut l = log.lock().unwrap();
                    if l.len() == 300 {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        let stdin = child.stdin.take();
        let end = Instant::now() + Duration::from_secs(60); // Pipecat imports slowly
        let mut server = PyServer {
            child,
            stdin,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
        };
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("open http://") {
                        server.addr = url.trim_end_matches('/').parse().expect("address");
                        return server;
                    }
                }
                Err(_) => panic!("{script} printed no address:\n{}", server.log()),
            }
        }
    }

    /// The program's last output lines (stdout and stderr).
    pub fn log(&self) -> String {
        let l = self.log.lock().unwrap();
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Closes its stdin and waits for it to exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        drop(self.stdin.take());
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
