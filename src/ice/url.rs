//! `stun:`, `stuns:`, `turn:` and `turns:` URLs (RFC 7064, RFC 7065), as browsers take them
//! in `RTCIceServer.urls`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::error::{Error, Result};

/// What kind of server a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceScheme {
    /// `stun:`: binding requests over UDP.
    Stun,
    /// `stuns:`: STUN over TLS.
    Stuns,
    /// `turn:`: TURN over UDP (or TCP with `?transport=tcp`).
    Turn,
    /// `turns:`: TURN over TLS.
    Turns,
}

/// The transport a URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceTransport {
    /// UDP (`stun:` and `turn:` without `?transport`).
    Udp,
    /// TCP (`?transport=tcp`; `stuns:` and `turns:` are TLS over TCP).
    Tcp,
}

/// One parsed ICE server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceUrl {
    /// `stun`, `stuns`, `turn` or `turns`.
    pub scheme: IceScheme,
    /// Host name or IP literal (without the brackets of an IPv6 literal).
    pub host: String,
    /// Port: as given, else 3478 (`stun`, `turn`) or 5349 (`stuns`, `turns`).
    pub port: u16,
    /// UDP or TCP.
    pub transport: IceTransport,
}

impl IceUrl {
    /// Parses `scheme:host[:port][?transport=udp|tcp]`. The query is only allowed on
    /// `turn:` and `turns:` URLs (RFC 7065); `turns:` takes only TCP. IPv6 literals go in
    /// brackets (`stun:[2001:db8::1]:3478`). Errors: `InvalidArgument` saying what is wrong
    /// with which URL.
    pub fn parse(url: &str) -> Result<IceUrl> {
        let bad = |why: &str| Error::invalid(format!("bad ICE server URL {url:?}: {why}"));
        let (scheme, rest) = url
            .split_once(':')
            .ok_or_else(|| bad("no scheme: expected stun:, stuns:, turn: or turns:"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "stun" => IceScheme::Stun,
            "stuns" => IceScheme::Stuns,
            "turn" => IceScheme::Turn,
            "turns" => IceScheme::Turns,
            _ => return Err(bad("the scheme must be stun, stuns, turn or turns")),
        };
        if rest.starts_with("//") {
            return Err(bad("no \"//\" after the scheme (stun:host:port)"));
        }
        let (hostport, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let tls = matches!(scheme, IceScheme::Stuns | IceScheme::Turns);
        let transport = match query {
            None if tls => IceTransport::Tcp,
            None => IceTransport::Udp,
            Some(_) if matches!(scheme, IceScheme::Stun | IceScheme::Stuns) => {
                return Err(bad("stun: URLs take no query"));
            }
            Some(q) => match q.to_ascii_lowercase().as_str() {
                "transport=udp" if !tls => IceTransport::Udp,
                "transport=tcp" => IceTransport::Tcp,
                "transport=udp" => return Err(bad("turns: runs over TCP only")),
                _ => return Err(bad("the query must be ?transport=udp or ?transport=tcp")),
            },
        };
        let default_port = if tls { 5349 } else { 3478 };
        let (host, port) = split_host_port(hostport).map_err(bad)?;
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(bad("the port must be 1..=65535")),
            },
        };
        Ok(IceUrl {
            scheme,
            host: host.to_owned(),
            port,
            transport,
        })
    }

    /// The server's address when its host is an IP literal (no lookup needed).
    pub fn literal_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }

    /// The server's addresses: the literal, or a name lookup, which blocks (never call it
    /// on an I/O thread). Errors: `Io` when the name does not resolve.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>> {
        if let Some(a) = self.literal_addr() {
            return Ok(vec![a]);
        }
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map(|a| a.collect())
            .map_err(|e| {
                Error::new(
                    crate::error::ErrorKind::Io,
                    format!("cannot resolve ICE server {}: {e}", self.host),
                )
            })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the host checked for characters a DNS name
/// or an IP literal can have.
fn split_host_port(s: &str) -> std::result::Result<(&str, Option<&str>), &'static str> {
    if let Some(inner) = s.strip_prefix('[') {
        let (v6, after) = inner.split_once(']').ok_or("unclosed '[' in the host")?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the bracketed host is not an IPv6 address");
        }
        return match after {
            "" => Ok((v6, None)),
            p => Ok((v6, Some(p.strip_prefix(':').ok_or("junk after ']'")?))),
        };
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if host.is_empty() {
        return Err("no host");
    }
    let name_ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if !name_ok || host.len() > 253 {
        return Err("the host is not a DNS name or an IP address");
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_browsers_take() {
        let u = IceUrl::parse("stun:stun.example.org").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.transport),
            (IceScheme::Stun, "stun.example.org", 3478, IceTransport::Udp)
        );
        let u = IceUrl::parse("stun:10.0.0.1:19302").unwrap();
        assert_eq!(u.literal_addr(), Some("10.0.0.1:19302".parse().unwrap()));
        let u = IceUrl::parse("turn:turn.example.org:3479?transport=tcp").unwrap();
        assert_eq!((u.scheme, u.port), (IceScheme::Turn, 3479));
        assert_eq!(u.transport, IceTransport::Tcp);
        let u = IceUrl::parse("turns:turn.example.org").unwrap();
        assert_eq!((u.port, u.transport), (5349, IceTransport::Tcp));
        let u = IceUrl::parse("STUN:[2001:db8::1]:3478").unwrap();
        assert_eq!(
            u.literal_addr(),
            Some("[2001:db8::1]:3478".parse().unwrap())
        );
        let u = IceUrl::parse("turn:[::1]?transport=udp").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 3478));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, why) in [
            ("stun.example.org", "scheme"),
            ("http://x", "scheme"),
            ("stun://host", "//"),
            ("stun:", "no host"),
            ("stun:host:0", "port"),
            ("stun:host:99999", "port"),
            ("stun:host:x", "port"),
            ("stun:host?transport=udp", "query"),
            ("turn:host?transport=sctp", "query"),
            ("turns:host?transport=udp", "TCP only"),
            ("turn:[::1", "unclosed"),
            ("turn:[nothost]:3478", "IPv6"),
            ("stun:ho st", "DNS name"),
        ] {
            let e = IceUrl::parse(url).expect_err(url).to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(e.contains(url), "{url}: {e}");
        }
    }
}
