//! Sockets: choosing addresses, binding in a port range, and the host candidates that go
//! into answers. Owns no loop; the runtime's I/O thread polls what this binds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use str0m::Candidate;

use crate::config::PeerConfig;
use crate::error::{Error, ErrorKind, Result};

/// The addresses a peer binds on: the configured one, or every non-loopback IPv4 interface
/// (loopback when there is none).
pub fn bind_addresses(cfg: &PeerConfig) -> Vec<IpAddr> {
    if let Some(ip) = cfg.bind_ip {
        if !ip.is_unspecified() {
            return vec![ip];
        }
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|ifs| {
            ifs.into_iter()
                .map(|i| i.ip())
                .filter(|ip| ip.is_ipv4() && !ip.is_loopback() && !is_link_local(ip))
                .collect()
        })
        .unwrap_or_default();
    ips.dedup();
    if ips.is_empty() {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    ips
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => (v.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Binds a non-blocking UDP socket on `ip`, on a port in the configured range (any port
/// when the range is 0..=0), starting at a random offset so parallel peers spread out.
pub fn bind_in_range(ip: IpAddr, port_min: u16, port_max: u16) -> Result<UdpSocket> {
    let socket = if port_min == 0 && port_max == 0 {
        UdpSocket::bind(SocketAddr::new(ip, 0))
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot bind UDP on {ip}: {e}")))?
    } else {
        if port_min == 0 || port_min > port_max {
            return Err(Error::invalid(format!(
                "bad UDP port range {port_min}..={port_max}"
            )));
        }
        let span = u32::from(port_max - port_min) + 1;
        let start = random_u32() % span;
        (0..span)
            .find_map(|i| {
                let port = port_min as u32 + (start + i) % span;
                UdpSocket::bind(SocketAddr::new(ip, port as u16)).ok()
            })
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Io,
                    format!("no free UDP port on {ip} in {port_min}..={port_max}"),
                )
            })?
    };
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// The local candidates for a bound socket: a host candidate, plus a server-reflexive one
/// for the advertised public address (1:1 NAT, same port).
pub fn candidates_for(local: SocketAddr, public_ip: Option<IpAddr>) -> Result<Vec<Candidate>> {
    let mut out = vec![Candidate::host(local, "udp")
        .map_err(|e| Error::new(ErrorKind::Io, format!("bad local address {local}: {e}")))?];
    if let Some(ip) = public_ip {
        let public = SocketAddr::new(ip, local.port());
        out.push(
            Candidate::server_reflexive(public, local, "udp")
                .map_err(|e| Error::invalid(format!("bad public address {public}: {e}")))?,
        );
    }
    Ok(out)
}

/// A random u32 from the OS (for port choice and ids).
pub fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // Port choice does not need to be unpredictable; a failure falls back to a fixed start.
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
}
