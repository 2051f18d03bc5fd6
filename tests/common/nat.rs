//! A client-side NAT on loopback that can move its client to a new port mid-call (the
//! shared-UDP-port tests' NAT rebinding).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A client-side NAT on loopback: the client talks to `inner`; the NAT sends on to the
/// server from an outer socket, and [`Nat::rebind`] swaps that socket for a new one (a new
/// source port, the old mapping gone), as a NAT does when its mapping times out.
pub struct Nat {
    pub inner_addr: SocketAddr,
    outer: Arc<Mutex<Arc<UdpSocket>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Nat {
    pub fn start(server: SocketAddr) -> Nat {
        let inner = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let outer = Arc::new(Mutex::new(Arc::new(Self::outer_socket())));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let up = {
            let (inner, outer, client, stop) =
                (inner.clone(), outer.clone(), client.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = inner.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        let out = outer.lock().unwrap().clone();
                        let _ = out.send_to(&buf[..n], server);
                    }
                }
            })
        };
        let down = {
            let (inner, outer, stop) = (inner.clone(), outer.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let out = outer.lock().unwrap().clone();
                    if let Ok((n, _)) = out.recv_from(&mut buf) {
                        if let Some(c) = *client.lock().unwrap() {
                            let _ = inner.send_to(&buf[..n], c);
                        }
                    }
                }
            })
        };
        Nat {
            inner_addr: inner.local_addr().unwrap(),
            outer,
            stop,
            threads: vec![up, down],
        }
    }

    fn outer_socket() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        s
    }

    pub fn outer_addr(&self) -> SocketAddr {
        self.outer.lock().unwrap().local_addr().unwrap()
    }

    /// A new outer port from now on; the old socket closes once the threads let go of it.
    pub fn rebind(&self) {
        *self.outer.lock().unwrap() = Arc::new(Self::outer_socket());
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock the up thread's read.
        let _ = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"x", self.inner_addr));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
