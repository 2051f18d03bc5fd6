//! Helpers for the HTTP attack tests: TCP connections from a chosen loopback source address
//! (127.0.0.2 is "another client" than the attacker's 127.0.0.1), a normal client's timed
//! offer, and a process's fd, thread and RSS counts from /proc.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// The normal client's source address (the attackers use 127.0.0.1 and 127.0.1.x).
pub const NORMAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A blocking TCP connection from `src` to `dst`.
pub fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let SocketAddr::V4(dst) = dst else {
        panic!("IPv4 only")
    };
    let sin = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a fd we own; the sockaddr values live across the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let s = TcpStream::from_raw_fd(fd);
        let local = sin(SocketAddrV4::new(src, 0));
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sin(dst);
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(s)
    }
}

/// Status, headers and body of one response read to EOF (`Connection: close`).
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// One request from `src` on a fresh connection; `None` if the server closed it unanswered.
pub fn request_from(
    src: Ipv4Addr,
    dst: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<Reply> {
    let mut s = connect_from(src, dst).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut msg = format!(
        "{method} {path} HTTP/1.1\r\nHost: {dst}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    msg.extend_from_slice(body);
    s.write_all(&msg).ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Reply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    })
}

/// An offer body str0m accepts (no real client behind it).
pub fn offer_body() -> Vec<u8> {
    let sdp = crate::signalling_support::synthetic_offer();
    serde_json::json!({"sdp": sdp, "type": "offer"})
        .to_string()
        .into_bytes()
}

/// A normal client's offer from [`NORMAL`]: its status and how long the answer took.
pub fn normal_offer(dst: SocketAddr) -> (u16, Duration) {
    let t = Instant::now();
    let r = request_from(NORMAL, dst, "POST", "/api/offer", &offer_body());
    (r.map_or(0, |r| r.status), t.elapsed())
}

/// `n` normal offers in a row; asserts each got 200 within 1 s and returns the times.
pub fn normal_offers(dst: SocketAddr, n: usize, during: &str) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..n)
        .map(|i| {
            let (status, took) = normal_offer(dst);
            assert_eq!(status, 200, "offer {i} during {during}");
            assert!(
                took < Duration::from_secs(1),
                "offer {i} during {during} took {took:?}"
            );
            took
        })
        .collect();
    times.sort();
    eprintln!(
        "{during}: normal offers median {:?} max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    times
}

/// Open fds, threads and resident memory (kB) of process `pid` ("self" for this one).
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub fds: usize,
    pub threads: usize,
    pub rss_kb: u64,
}

pub fn usage(pid: &str) -> Usage {
    let count = |d: &str| std::fs::read_dir(format!("/proc/{pid}/{d}")).map_or(0, |r| r.count());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Usage {
        fds: count("fd"),
        threads: count("task"),
        rss_kb,
    }
}

/// Waits (up to `within`) until `pid` is back to `base`'s fd and thread counts, then asserts
/// that, and RSS within 10 %. Returns the usage it ended at.
pub fn assert_recovers(pid: &str, base: Usage, within: Duration, what: &str) -> Usage {
    let end = Instant::now() + within;
    let mut now = usage(pid);
    while (now.fds > base.fds || now.threads > base.threads) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        now = usage(pid);
    }
    eprintln!("{what}: before {base:?}, after {now:?}");
    assert!(
        now.fds <= base.fds,
        "{what}: fds {} -> {}",
        base.fds,
        now.fds
    );
    assert!(
        now.threads <= base.threads,
        "{what}: threads {} -> {}",
        base.threads,
        now.threads
    );
    assert!(
        now.rss_kb * 10 <= base.rss_kb * 11,
        "{what}: RSS {} kB -> {} kB",
        base.rss_kb,
        now.rss_kb
    );
    now
}

/// Reads from `s` until EOF or an error (the server closed it), up to `within`; true if it
/// was closed in time.
pub fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}
