//! WHIP (RFC 9725, publish) and WHEP (view) on the signalling server, as plain route
//! functions: `POST /whip` or `/whep` with an `application/sdp` offer creates a session
//! resource (`201`, answer, `Location`, `ETag`, ICE servers in `Link` headers); `PATCH`
//! on the resource trickles candidates (`application/trickle-ice-sdpfrag`); `DELETE` ends
//! it. Peers are made by the registry exactly like `/api/offer`'s, so the same limits
//! hold; the app learns the protocol from [`NewPeer::protocol`](super::NewPeer).
//!
//! ICE restart (a fragment with a new ufrag) is refused with 422, as RFC 9725 §4.3.2 asks
//! of a server that trickles but does not restart: the client POSTs a new offer instead.

use serde_json::{Map, Value};

use super::http::{Request, Response};
use super::registry::{OfferRequest, Registry, RouteError};
use super::routes::{check_access, error_response, not_allowed, preflight};
use super::Protocol;

/// The media type of WHIP/WHEP offers and answers.
pub const SDP_TYPE: &str = "application/sdp";
/// The media type of trickle and ICE-restart fragments (RFC 8840).
pub const SDPFRAG_TYPE: &str = "application/trickle-ice-sdpfrag";

const ENDPOINT_METHODS: &str = "POST, OPTIONS";
const RESOURCE_METHODS: &str = "PATCH, DELETE, OPTIONS";

/// Routes `/whip`, `/whep` and their resources `/whip/{id}`, `/whep/{id}`; `None` for
/// other paths.
pub(crate) fn route(req: &Request, reg: &Registry, segments: &[&str]) -> Option<Response> {
    let (protocol, id) = match segments {
        ["whip"] => (Protocol::Whip, None),
        ["whep"] => (Protocol::Whep, None),
        ["whip", id] => (Protocol::Whip, Some(*id)),
        ["whep", id] => (Protocol::Whep, Some(*id)),
        _ => return None,
    };
    Some(match (id, req.method.as_str()) {
        (None, "POST") => post(req, reg, protocol).unwrap_or_else(error_response),
        (None, "OPTIONS") => preflight(ENDPOINT_METHODS).with_header("Accept-Post", SDP_TYPE),
        (None, _) => not_allowed(ENDPOINT_METHODS),
        (Some(id), "PATCH") => patch(req, reg, protocol, id).unwrap_or_else(error_response),
        (Some(id), "DELETE") => delete(req, reg, protocol, id).unwrap_or_else(error_response),
        (Some(_), "OPTIONS") => {
            preflight(RESOURCE_METHODS).with_header("Accept-Patch", SDPFRAG_TYPE)
        }
        (Some(_), _) => not_allowed(RESOURCE_METHODS),
    })
}

/// `POST /whip` or `/whep`: a new session from an SDP offer.
fn post(req: &Request, reg: &Registry, protocol: Protocol) -> Result<Response, RouteError> {
    require_type(req, SDP_TYPE)?;
    let request_data = query_object(&req.query);
    check_access(req, reg, protocol, &request_data)?;
    let sdp = std::str::from_utf8(&req.body)
        .map_err(|_| RouteError::new(400, "the SDP offer is not UTF-8 text"))?;
    if sdp.trim().is_empty() {
        return Err(RouteError::new(400, "the body has no SDP offer"));
    }
    let answer = reg.offer_as(
        OfferRequest {
            sdp: sdp.to_owned(),
            pc_id: None,
            restart_pc: false,
            request_data,
        },
        protocol,
        req.peer_addr.map(|a| a.ip()),
    )?;
    let etag = reg
        .resource(&answer.pc_id)
        .map(|r| r.etag)
        .unwrap_or_default();
    let base = req.path.trim_end_matches('/');
    let mut resp = Response::bytes(201, SDP_TYPE, answer.sdp)
        .with_header("Location", &format!("{base}/{}", answer.pc_id))
        .with_header("ETag", &etag)
        .with_header("Accept-Patch", SDPFRAG_TYPE);
    for link in ice_server_links(reg) {
        resp = resp.with_header("Link", &link);
    }
    Ok(resp)
}

/// `PATCH /whip/{id}`: trickled candidates in an SDP fragment; 204 when applied.
fn patch(
    req: &Request,
    reg: &Registry,
    protocol: Protocol,
    id: &str,
) -> Result<Response, RouteError> {
    check_access(req, reg, protocol, &Value::Null)?;
    let res = reg
        .resource(id)
        .filter(|r| r.protocol == protocol)
        .ok_or_else(|| unknown(protocol, id))?;
    require_type(req, SDPFRAG_TYPE)?;
    // RFC 9725 §4.3.1: a stale entity tag means the client missed a change; "*" is an
    // ICE restart's wildcard.
    if let Some(tag) = req.header("If-Match") {
        let tag = tag.trim();
        if tag != "*" && tag != res.etag {
            return Err(RouteError::new(
                412,
                format!("If-Match {tag} does not match the session's entity tag"),
            ));
        }
    }
    let frag = std::str::from_utf8(&req.body)
        .map_err(|_| RouteError::new(400, "the SDP fragment is not UTF-8 text"))?;
    let parsed = parse_sdpfrag(frag)?;
    if let (Some(new), Some(old)) = (parsed.ufrag.as_deref(), res.remote_ufrag.as_deref()) {
        if new != old {
            return Err(RouteError::new(
                422,
                "ICE restart is not supported: DELETE this session and POST a new offer",
            ));
        }
    }
    reg.add_candidates(id, &parsed.candidates)?;
    Ok(Response {
        status: 204,
        headers: Vec::new(),
        body: Vec::new(),
    })
}

/// `DELETE /whip/{id}`: ends the session; its peer closes and the app sees it.
fn delete(
    req: &Request,
    reg: &Registry,
    protocol: Protocol,
    id: &str,
) -> Result<Response, RouteError> {
    check_access(req, reg, protocol, &Value::Null)?;
    if reg
        .resource(id)
        .filter(|r| r.protocol == protocol)
        .is_none()
    {
        return Err(unknown(protocol, id));
    }
    reg.end(id)?;
    Ok(Response {
        status: 200,
        headers: Vec::new(),
        body: Vec::new(),
    })
}

fn unknown(protocol: Protocol, id: &str) -> RouteError {
    RouteError::new(
        404,
        format!(
            "no {} session {id} (ended, or never made)",
            protocol.as_str()
        ),
    )
}

/// 415 unless the request's `Content-Type` is `want` (parameters and case ignored).
fn require_type(req: &Request, want: &str) -> Result<(), RouteError> {
    let got = req.header("Content-Type").unwrap_or("");
    let base = got.split(';').next().unwrap_or("").trim();
    if base.eq_ignore_ascii_case(want) {
        Ok(())
    } else if got.is_empty() {
        Err(RouteError::new(415, format!("Content-Type must be {want}")))
    } else {
        Err(RouteError::new(
            415,
            format!("Content-Type must be {want}, not {got}"),
        ))
    }
}

/// The parts of a trickle fragment we use.
#[derive(Debug, Default, PartialEq, Eq)]
#[doc(hidden)]
pub struct SdpFrag {
    /// `a=ice-ufrag`, if present.
    pub ufrag: Option<String>,
    /// `candidate:…` values in order; `""` for `a=end-of-candidates`.
    pub candidates: Vec<String>,
}

/// Largest number of candidates one fragment may carry (a client gathers a handful per
/// interface; this bounds the work a PATCH can ask for).
pub(crate) const MAX_FRAG_CANDIDATES: usize = 64;

/// Reads an `application/trickle-ice-sdpfrag` body (RFC 8840): candidates of every media
/// section (we bundle), the ufrag, end-of-candidates. Other lines are ignored; a fragment
/// with lines that are not SDP is a 400.
#[doc(hidden)]
pub fn parse_sdpfrag(text: &str) -> Result<SdpFrag, RouteError> {
    let mut frag = SdpFrag::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() {
            continue;
        }
        let bytes = line.as_bytes();
        if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
            return Err(RouteError::new(
                400,
                format!("line {} of the SDP fragment is not an SDP line", n + 1),
            ));
        }
        if let Some(u) = line.strip_prefix("a=ice-ufrag:") {
            frag.ufrag = Some(u.trim().to_owned());
        } else if let Some(c) = line.strip_prefix("a=") {
            if c.starts_with("candidate:") {
                frag.candidates.push(c.to_owned());
            } else if c == "end-of-candidates" {
                frag.candidates.push(String::new());
            }
        }
        if frag.candidates.len() > MAX_FRAG_CANDIDATES {
            return Err(RouteError::new(
                400,
                format!("the SDP fragment has over {MAX_FRAG_CANDIDATES} candidates"),
            ));
        }
    }
    Ok(frag)
}

/// The server's ICE servers as RFC 9725 §4.6 `Link` header values, one per URL.
pub(crate) fn ice_server_links(reg: &Registry) -> Vec<String> {
    let mut out = Vec::new();
    for s in &reg.config().ice_servers {
        for url in &s.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(u), Some(c)) = (&s.username, &s.credential) {
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quote_escape(u),
                    quote_escape(c)
                ));
            }
            out.push(link);
        }
    }
    out
}

fn quote_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The query string as a JSON object of strings (`?room=a&x` → `{"room":"a","x":""}`);
/// `Null` when there is none. Percent-escapes and `+` are decoded; later keys win.
#[doc(hidden)]
pub fn query_object(query: &str) -> Value {
    let mut map = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(percent_decode(k), Value::String(percent_decode(v)));
    }
    if map.is_empty() {
        Value::Null
    } else {
        Value::Object(map)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
