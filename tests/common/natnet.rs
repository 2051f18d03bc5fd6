//! Network namespaces with real masquerading NATs (nftables) and a real STUN server
//! (Debian's coturn), for the reachability tests.
//!
//! ```text
//!  server 10.0.2.2 ─ 10.0.2.1 [snat] 203.0.113.2 ─ 203.0.113.1 [public] 198.51.100.1 ─ 198.51.100.2 [cnat] 10.0.1.1 ─ 10.0.1.2 client
//!                                                   coturn :3478
//! ```
//!
//! `public` routes between the NATs' public addresses and runs coturn. Each NAT router
//! masquerades what leaves its public side (keeping the source port where it can: the
//! same public address and port toward every destination) and lets in only what answers
//! a flow its LAN opened, dropping the rest, as a home router does; nothing routes to the
//! private networks. Names start with `stn`, carry the process id and a counter,
//! and are deleted on drop (with coturn killed).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::impair::FaultNet;

pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));
/// The server NAT's public address: what the server's srflx candidate must carry.
pub const SERVER_NAT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));
/// The public namespace on the server NAT's link; coturn listens here.
pub const PUBLIC_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
/// The public namespace on the client NAT's link.
pub const PUBLIC_IP2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
pub const CLIENT_NAT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2));
/// coturn's port (inside our own namespace: no clash with anything on the machine).
pub const STUN_PORT: u16 = 3478;

pub const TURN_USER: &str = "swrtc";
pub const TURN_PASSWORD: &str = "swrtc-secret";

pub fn stun_url() -> String {
    format!("stun:{PUBLIC_IP}:{STUN_PORT}")
}

pub fn turn_url() -> String {
    format!("turn:{PUBLIC_IP}:{STUN_PORT}?transport=udp")
}

/// coturn as a TURN server reached over TCP (the allocation still relays UDP).
#[allow(dead_code)] // not every test binary uses every helper
pub fn turn_tcp_url() -> String {
    format!("turn:{PUBLIC_IP}:{STUN_PORT}?transport=tcp")
}

/// The five namespaces and coturn (see the module docs).
pub struct NatNet {
    pub server: String,
    pub server_nat: String,
    pub public: String,
    pub client_nat: String,
    pub client: String,
    coturn: Option<Child>,
    dir: PathBuf,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

/// Runs `program args` inside namespace `ns`.
fn exec_in(ns: &str, program: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

impl NatNet {
    /// Builds the namespaces and starts coturn; panics with the reason when it cannot
    /// (root, iproute2, nftables and coturn are needed: `.ci/setup.sh --tests`).
    pub fn new() -> NatNet {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("stn{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("swrtc-{base}"));
        let mut net = NatNet {
            server: format!("{base}s"),
            server_nat: format!("{base}r1"),
            public: format!("{base}p"),
            client_nat: format!("{base}r2"),
            client: format!("{base}c"),
            coturn: None,
            dir,
        };
        if let Err(e) = net.build().and_then(|_| net.start_coturn()) {
            panic!("NAT tests: cannot build the network (root, iproute2, nftables, coturn): {e}");
        }
        net
    }

    fn build(&self) -> Result<(), String> {
        let (s, r1, p, r2, c) = (
            &self.server,
            &self.server_nat,
            &self.public,
            &self.client_nat,
            &self.client,
        );
        for ns in [s, r1, p, r2, c] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        for (a, a_dev, b, b_dev) in [
            (s, "eth0", r1, "lan0"),
            (r1, "pub0", p, "tos"),
            (p, "toc", r2, "pub0"),
            (r2, "lan0", c, "eth0"),
        ] {
            ip(&[
                "-n", a, "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b,
            ])?;
        }
        for (ns, dev, addr) in [
            (s, "eth0", "10.0.2.2/24"),
            (r1, "lan0", "10.0.2.1/24"),
            (r1, "pub0", "203.0.113.2/24"),
            (p, "tos", "203.0.113.1/24"),
            (p, "toc", "198.51.100.1/24"),
            (r2, "pub0", "198.51.100.2/24"),
            (r2, "lan0", "10.0.1.1/24"),
            (c, "eth0", "10.0.1.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        for (ns, via) in [
            (s, "10.0.2.1"),
            (r1, "203.0.113.1"),
            (r2, "198.51.100.1"),
            (c, "10.0.1.1"),
        ] {
            ip(&["-n", ns, "route", "add", "default", "via", via])?;
        }
        for ns in [r1, p, r2] {
            exec_in(ns, "sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"])?;
        }
        // Private addresses lead nowhere from the public network, silently (a send there
        // does not fail, as on the internet, where such datagrams are simply lost).
        ip(&["-n", p, "route", "add", "10.0.0.0/8", "dev", "toc"])?;
        for ns in [r1, r2] {
            let rules = [
                "table ip nat {",
                "  chain post {",
                "    type nat hook postrouting priority srcnat; policy accept;",
                "    oifname \"pub0\" masquerade",
                "  }",
                "}",
                "table ip filter {",
                "  chain guard {",
                "    type filter hook forward priority filter; policy drop;",
                "    iifname \"lan0\" accept",
                "    ct state established,related accept",
                "  }",
                // Unsolicited datagrams to the router's public address are dropped before
                // conntrack keeps an entry for them: such an entry would take the public
                // port a LAN host's later datagram to that sender must keep, and the NAT
                // would pick another (no hole punching through Linux NATs otherwise).
                "  chain wan {",
                "    type filter hook input priority filter; policy accept;",
                "    iifname \"pub0\" ct state new drop",
                "  }",
                "}",
            ]
            .join("\n");
            let path = self.dir_file(&format!("{ns}.nft"))?;
            std::fs::write(&path, rules).map_err(|e| e.to_string())?;
            exec_in(ns, "nft", &["-f", path.to_str().unwrap_or_default()])?;
        }
        Ok(())
    }

    fn dir_file(&self, name: &str) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        Ok(self.dir.join(name))
    }

    /// coturn as a STUN and TURN server (user `TURN_USER`) on `PUBLIC_IP:STUN_PORT`,
    /// relaying from `PUBLIC_IP`, from a generated config, in the foreground (killed on
    /// drop); returns once it answers a binding request.
    fn start_coturn(&mut self) -> Result<(), String> {
        let conf = self.dir_file("turnserver.conf")?;
        let conf_text = format!(
            "listening-ip={PUBLIC_IP}\nrelay-ip={PUBLIC_IP}\nlistening-port={STUN_PORT}\n\
             min-port=49152\nmax-port=65535\nlt-cred-mech\nuser={TURN_USER}:{TURN_PASSWORD}\n\
             realm=swrtc.test\nno-tls\nno-dtls\nno-cli\nno-software-attribute\nsimple-log\n\
             log-file=stdout\nverbose\npidfile={dir}/turnserver.pid\nuserdb={dir}/turndb\n",
            dir = self.dir.display()
        );
        std::fs::write(&conf, conf_text).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(self.dir.join("turnserver.log")).map_err(|e| e.to_string())?;
        let child = FaultNet::command_in(&self.public, std::path::Path::new("turnserver"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start turnserver (apt-get install coturn): {e}"))?;
        self.coturn = Some(child);
        let server = SocketAddr::new(PUBLIC_IP, STUN_PORT);
        let answered = FaultNet::run_in(&self.public, move || {
            stun_answers(server, Duration::from_secs(10))
        });
        if answered {
            Ok(())
        } else {
            Err(format!(
                "coturn did not answer within 10 s; its log: {}",
                std::fs::read_to_string(self.dir.join("turnserver.log")).unwrap_or_default()
            ))
        }
    }
}

impl NatNet {
    /// What coturn logged so far (verbose: sessions, allocations, deletions).
    pub fn coturn_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("turnserver.log")).unwrap_or_default()
    }

    /// A firewall in the public network that drops every datagram between the two NATs'
    /// public addresses: the client and the server then meet only through the TURN relay
    /// (coturn's own address stays reachable from both).
    pub fn block_direct(&self) {
        let rules = [
            "table ip filter {",
            "  chain guard {",
            "    type filter hook forward priority filter; policy accept;",
            "    ip saddr 203.0.113.2 ip daddr 198.51.100.2 drop",
            "    ip saddr 198.51.100.2 ip daddr 203.0.113.2 drop",
            "  }",
            "}",
        ]
        .join("\n");
        let path = self.dir_file("block.nft").expect("scratch dir");
        std::fs::write(&path, rules).expect("write the rules");
        exec_in(
            &self.public,
            "nft",
            &["-f", path.to_str().unwrap_or_default()],
        )
        .expect("the firewall rule loads");
    }
}

impl NatNet {
    /// For a bot in the public namespace (which listens on both its addresses): drops
    /// every UDP and TCP datagram between the client NAT's public address and the public
    /// namespace except those to and from coturn's port, so a client behind the NAT
    /// reaches the bot only through a relay on coturn.
    #[allow(dead_code)] // not every test binary uses every helper
    pub fn block_client_except_turn(&self) {
        let p = STUN_PORT;
        let rules = [
            "table ip bot_guard {".to_owned(),
            "  chain inp {".to_owned(),
            "    type filter hook input priority filter; policy accept;".to_owned(),
            format!("    ip saddr {CLIENT_NAT_IP} udp dport != {p} drop"),
            format!("    ip saddr {CLIENT_NAT_IP} tcp dport != {p} drop"),
            "  }".to_owned(),
            "  chain out {".to_owned(),
            "    type filter hook output priority filter; policy accept;".to_owned(),
            format!("    ip daddr {CLIENT_NAT_IP} udp sport != {p} drop"),
            format!("    ip daddr {CLIENT_NAT_IP} tcp sport != {p} drop"),
            "  }".to_owned(),
            "}".to_owned(),
        ]
        .join("\n");
        let path = self.dir_file("bot_guard.nft").expect("scratch dir");
        std::fs::write(&path, rules).expect("write the rules");
        exec_in(
            &self.public,
            "nft",
            &["-f", path.to_str().unwrap_or_default()],
        )
        .expect("the firewall rule loads");
    }
}

impl NatNet {
    /// After `block_client_except_turn`: lets the client NAT reach TCP `port` in the public
    /// namespace too (a browser's signalling POST), inserted ahead of the drops.
    #[allow(dead_code)] // not every test binary uses every helper
    pub fn allow_client_tcp_port(&self, port: u16) {
        let rules = format!(
            "insert rule ip bot_guard inp ip saddr {CLIENT_NAT_IP} tcp dport {port} accept\n\
             insert rule ip bot_guard out ip daddr {CLIENT_NAT_IP} tcp sport {port} accept\n"
        );
        let path = self.dir_file("allow_tcp.nft").expect("scratch dir");
        std::fs::write(&path, rules).expect("write the rules");
        exec_in(
            &self.public,
            "nft",
            &["-f", path.to_str().unwrap_or_default()],
        )
        .expect("the allow rule loads");
    }
}

/// Whether a STUN server at `server` answers a binding request within `within` (sent from
/// the calling thread's namespace, every 100 ms).
pub fn stun_answers(server: SocketAddr, within: Duration) -> bool {
    let Ok(sock) = UdpSocket::bind("0.0.0.0:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    // A binding request: type 0x0001, length 0, the magic cookie, a transaction id.
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    req.extend_from_slice(b"swrtc-probe!");
    let end = Instant::now() + within;
    let mut buf = [0u8; 512];
    while Instant::now() < end {
        let _ = sock.send_to(&req, server);
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n >= 20 && buf[0] == 0x01 && buf[1] == 0x01 && buf[8..20] == req[8..20] {
                return true;
            }
        }
    }
    false
}

impl Drop for NatNet {
    fn drop(&mut self) {
        if let Some(mut c) = self.coturn.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [
            &self.server,
            &self.server_nat,
            &self.public,
            &self.client_nat,
            &self.client,
        ] {
            let _ = ip(&["netns", "delete", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
