//! ICE servers for our own sockets: their URLs checked and parsed, and the sans-IO STUN
//! client that learns a socket's server-reflexive (public) address. Pure code on a
//! caller's clock: no sockets, no threads, no name lookups (the runtime resolves host
//! names off its I/O thread and drives the client from it).

mod gather;
mod url;

pub(crate) use gather::{Gatherer, StunCounters};
pub use url::{IceScheme, IceTransport, IceUrl};

use std::net::SocketAddr;

use crate::config::IceServer;
use crate::error::Result;

/// A `turn:` server over UDP with its long-term credentials, its host name resolved.
#[derive(Debug, Clone)]
pub(crate) struct TurnServer {
    pub addr: SocketAddr,
    pub username: String,
    pub credential: String,
}

/// Every URL of `servers`, parsed: the first bad one is the error (naming it).
pub fn parse_servers(servers: &[IceServer]) -> Result<Vec<IceUrl>> {
    servers
        .iter()
        .flat_map(|s| s.urls.iter())
        .map(|u| IceUrl::parse(u))
        .collect()
}
