//! Echo bot: starts the signalling server and echoes every caller: their audio comes back
//! on the same peer, each app message `m` is answered with `{"echo": m}`, and RTVI
//! `client-ready` with `bot-ready` (so Pipecat's JS client's `connect()` resolves).
//!
//!     cargo run --example echo                      # http://127.0.0.1:7860/
//!     cargo run --example echo -- --addr 0.0.0.0:7860 --esp32 --esp32-host 192.168.1.20
//!
//! Options: `--addr IP:PORT` (port 0: any), `--single` (one connection at a time),
//! `--esp32` (compact answers for pipecat-esp32), `--esp32-host IP` (only that address's
//! candidates in ESP32 answers), `--no-rtvi`, `--udp-port PORT` (the one UDP port every peer
//! uses, on the `--addr` IP when it is loopback, else on every interface; by default the
//! same number as the HTTP port, so one number opens both), `--per-peer-ports` (instead,
//! each peer binds a UDP port of its own), `--public-ip IP` (the address clients reach us
//! at, behind a 1:1 NAT such as a cloud VM's), `--tcp-port PORT` (ICE over TCP on that
//! port, same IP choice, for clients whose UDP is blocked), `--ice-server URL` (repeatable:
//! `stun:host:port` or `turn:…`, handed to clients by `/start`; from `stun:` ones the bot
//! learns its public address, so it works behind a NAT, and with `--per-peer-ports`
//! `turn:` ones give each peer a relay), `--ice-username NAME` and `--ice-credential
//! SECRET` (for the TURN URLs), `--max-peers N` and `--max-peers-per-source N` (live peers
//! overall and per client address; defaults 256 and 32; load tests from one address need
//! more). `RUST_LOG=info` shows each peer's states.
//!
//! On SIGINT (Ctrl-C) or SIGTERM it shuts down gracefully: every connected client gets
//! `peerLeft`, SCTP shutdown and DTLS close_notify (within 1 s), then the process exits.

use std::net::SocketAddr;
use std::time::Duration;

use smallwebrtc::signalling::{echo, ConnectionMode, Server, ServerConfig};
use smallwebrtc::{IceServer, Runtime, RuntimeConfig};

fn main() {
    // Before any thread starts, so every thread inherits the mask and the signals wait for
    // `wait_for_stop_signal` instead of killing the process mid-conversation.
    let stop_signals = block_stop_signals();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let mut cfg = ServerConfig {
        peer: echo::echo_peer_config(),
        ..ServerConfig::default()
    };
    let mut rtvi = true;
    let mut udp_port: Option<u16> = None;
    let mut tcp_port: Option<u16> = None;
    let mut per_peer_ports = false;
    let mut ice = IceServer::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--addr" => cfg.addr = parse(&value("--addr"), "--addr"),
            "--esp32" => cfg.esp32 = true,
            "--esp32-host" => cfg.esp32_host = Some(parse(&value("--esp32-host"), "--esp32-host")),
            "--single" => cfg.mode = ConnectionMode::Single,
            "--no-rtvi" => rtvi = false,
            "--udp-port" => udp_port = Some(parse(&value("--udp-port"), "--udp-port")),
            "--per-peer-ports" => per_peer_ports = true,
            "--public-ip" => cfg.peer.public_ip = Some(parse(&value("--public-ip"), "--public-ip")),
            "--tcp-port" => tcp_port = Some(parse(&value("--tcp-port"), "--tcp-port")),
            "--ice-server" => ice.urls.push(value("--ice-server")),
            "--ice-username" => ice.username = Some(value("--ice-username")),
            "--ice-credential" => ice.credential = Some(value("--ice-credential")),
            "--max-peers" => cfg.limits.max_peers = parse(&value("--max-peers"), "--max-peers"),
            "--max-peers-per-source" => {
                cfg.limits.max_peers_per_source =
                    parse(&value("--max-peers-per-source"), "--max-peers-per-source")
            }
            "-h" | "--help" => {
                eprintln!(
                    "usage: echo [--addr IP:PORT] [--single] [--esp32] [--esp32-host IP] [--no-rtvi] \
                     [--udp-port PORT | --per-peer-ports] [--public-ip IP] [--tcp-port PORT] \
                     [--ice-server URL]... [--ice-username NAME] [--ice-credential SECRET] \
                     [--max-peers N] [--max-peers-per-source N]"
                );
                return;
            }
            other => {
                eprintln!("unknown option {other} (try --help)");
                std::process::exit(2);
            }
        }
    }
    if !ice.urls.is_empty() {
        // Handed to clients by /start, and used by the bot's own runtime.
        cfg.ice_servers = vec![ice];
    }
    // One UDP port for every peer unless asked otherwise: by default the HTTP port's number.
    let udp_port = match per_peer_ports {
        true => None,
        false => Some(udp_port.unwrap_or(cfg.addr.port())),
    };
    if udp_port.is_some() || tcp_port.is_some() {
        let ip = match cfg.peer.bind_ip {
            Some(ip) => ip,
            None if cfg.addr.ip().is_loopback() => cfg.addr.ip(),
            None => std::net::Ipv4Addr::UNSPECIFIED.into(),
        };
        let rt = Runtime::new(RuntimeConfig {
            udp_addr: udp_port.map(|port| SocketAddr::new(ip, port)),
            tcp_addr: tcp_port.map(|port| SocketAddr::new(ip, port)),
            ice_servers: cfg.ice_servers.clone(),
            ..RuntimeConfig::default()
        });
        match rt {
            Ok(rt) => cfg.runtime = Some(rt),
            Err(e) => {
                eprintln!("cannot start the runtime (UDP/TCP ports, ICE servers): {e}");
                std::process::exit(1);
            }
        }
    }
    let udp_runtime = cfg.runtime.clone();
    let mut server = match Server::start(cfg, Some(echo::on_peer(rtvi))) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start the server: {e}");
            std::process::exit(1);
        }
    };
    let addr: SocketAddr = server.local_addr();
    println!("echo bot listening on {addr}");
    println!(
        "open {} (offers: POST {}api/offer)",
        server.url(),
        server.url()
    );
    if let Some(rt) = &udp_runtime {
        let addrs: Vec<String> = rt.udp_addrs().iter().map(|a| a.to_string()).collect();
        if !addrs.is_empty() {
            println!("every peer on UDP {}", addrs.join(" "));
        }
        if let Some(tcp) = rt.tcp_addr() {
            println!("ICE-TCP on {tcp}");
        }
    }
    let signal = wait_for_stop_signal(&stop_signals);
    let closed = server.shutdown(Duration::from_secs(1));
    println!("signal {signal}: said goodbye to {closed} peer(s), exiting");
    if let Some(rt) = udp_runtime.as_ref().filter(|rt| !rt.udp_addrs().is_empty()) {
        // One line for benches/udp_port.sh (syscalls per datagram on the shared port).
        let stats = serde_json::to_string(&rt.stats()).unwrap_or_default();
        println!("shared UDP stats: {stats}");
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread started after it).
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local, zero-initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits until SIGINT or SIGTERM arrives; returns its number.
fn wait_for_stop_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is a valid signal set, `sig` a valid out pointer.
    while unsafe { libc::sigwait(set, &mut sig) } != 0 {}
    sig
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> T {
    s.parse().unwrap_or_else(|_| {
        eprintln!("{what}: cannot parse {s:?}");
        std::process::exit(2)
    })
}
