//! The signalling routes as plain functions over a [`Request`] and the [`Registry`]:
//! Pipecat's SmallWebRTC endpoints, the `/start` session endpoint, the built-in page and
//! CORS preflight, the access hook; WHIP and WHEP are dispatched to [`super::whip`].
//! Parses and validates bodies; the registry does the rest. No sockets.

use serde_json::{json, Map, Value};

use super::http::{Request, Response};
use super::registry::{OfferRequest, Registry, RouteError};
use super::{whip, Access, AccessRequest, Protocol};

/// The built-in test page (plain HTML and JS, no build step).
pub const PAGE_HTML: &str = include_str!("page.html");

const OFFER_METHODS: &str = "POST, PATCH, OPTIONS";

/// Answers one request. Every response carries CORS headers, so pages from other origins
/// can signal; bodies over the configured limit get 413.
pub fn handle(req: &Request, reg: &Registry) -> Response {
    with_cors(route(req, reg))
}

/// Adds the CORS headers every response carries.
pub(crate) fn with_cors(r: Response) -> Response {
    r.with_header("Access-Control-Allow-Origin", "*")
        .with_header(
            "Access-Control-Allow-Methods",
            "GET, POST, PATCH, DELETE, OPTIONS",
        )
        .with_header(
            "Access-Control-Allow-Headers",
            "Content-Type, Authorization, X-Requested-With, If-Match",
        )
        // WHIP/WHEP clients in browsers read these from the 201 and its errors.
        .with_header(
            "Access-Control-Expose-Headers",
            "Location, ETag, Link, Accept-Patch, Accept-Post, WWW-Authenticate",
        )
        .with_header("Access-Control-Max-Age", "86400")
}

/// Asks the server's access hook, if any, whether `req` may go on; refusals are 401 (with
/// `WWW-Authenticate: Bearer`, see [`error_response`]) or 403.
pub(crate) fn check_access(
    req: &Request,
    reg: &Registry,
    protocol: Protocol,
    request_data: &Value,
) -> Result<(), RouteError> {
    let Some(hook) = &reg.config().access else {
        return Ok(());
    };
    let verdict = hook(&AccessRequest {
        method: &req.method,
        path: &req.path,
        headers: &req.headers,
        peer_addr: req.peer_addr,
        protocol,
        request_data,
    });
    match verdict {
        Access::Allow => Ok(()),
        Access::Unauthorized(m) => Err(RouteError::new(401, non_empty(m, "unauthorized"))),
        Access::Forbidden(m) => Err(RouteError::new(403, non_empty(m, "forbidden"))),
    }
}

fn non_empty(m: String, default: &str) -> String {
    if m.is_empty() {
        default.into()
    } else {
        m
    }
}

/// The `{"error": …}` response of a failed request; a 401 says how to authenticate.
pub(crate) fn error_response(e: RouteError) -> Response {
    if e.status == 503 {
        // A cap or a full queue: the client may try again soon (`Retry-After`).
        return super::server::busy(&e.message);
    }
    let r = Response::error(e.status, e.message);
    if r.status == 401 {
        r.with_header("WWW-Authenticate", "Bearer")
    } else {
        r
    }
}

fn route(req: &Request, reg: &Registry) -> Response {
    let max = reg.config().max_body;
    if req.body.len() > max {
        return Response::error(413, format!("the request body is over {max} bytes"));
    }
    let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(r) = whip::route(req, reg, &segments) {
        return r;
    }
    match segments.as_slice() {
        ["api", "offer"] => offer_endpoint(req, reg, None),
        ["sessions", id, "api", "offer"] => match reg.session_data(id) {
            Some(data) => offer_endpoint(req, reg, Some(data)),
            None if req.method == "OPTIONS" => preflight(OFFER_METHODS),
            None => Response::error(404, format!("unknown or expired session {id}")),
        },
        ["start"] => match req.method.as_str() {
            "POST" => result(start(req, reg)),
            "OPTIONS" => preflight("POST, OPTIONS"),
            _ => not_allowed("POST, OPTIONS"),
        },
        [] | ["index.html"] if reg.config().serve_page => match req.method.as_str() {
            "GET" | "HEAD" => Response::bytes(200, "text/html; charset=utf-8", PAGE_HTML)
                .with_header("Cache-Control", "no-store"),
            "OPTIONS" => preflight("GET, HEAD, OPTIONS"),
            _ => not_allowed("GET, HEAD, OPTIONS"),
        },
        ["api", "stats"] if reg.config().serve_page => super::stats_route::handle(req, reg),
        _ => Response::error(404, format!("no route for {}", req.path)),
    }
}

fn offer_endpoint(req: &Request, reg: &Registry, session: Option<Value>) -> Response {
    match req.method.as_str() {
        "POST" => result(post_offer(req, reg, session)),
        "PATCH" => result(
            check_access(req, reg, Protocol::Pipecat, &Value::Null)
                .and_then(|()| patch_candidates(req, reg)),
        ),
        "OPTIONS" => preflight(OFFER_METHODS),
        _ => not_allowed(OFFER_METHODS),
    }
}

fn result(r: Result<Value, RouteError>) -> Response {
    match r {
        Ok(v) => Response::json(200, &v),
        Err(e) => error_response(e),
    }
}

/// A CORS preflight's answer.
pub(crate) fn preflight(methods: &str) -> Response {
    Response {
        status: 204,
        headers: vec![("Allow".into(), methods.into())],
        body: Vec::new(),
    }
}

/// 405 with the methods a route takes.
pub(crate) fn not_allowed(methods: &str) -> Response {
    Response::error(405, format!("method not allowed; use {methods}")).with_header("Allow", methods)
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, RouteError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(RouteError::new(400, "the body must be a JSON object")),
        Err(e) => Err(RouteError::new(400, format!("invalid JSON: {e}"))),
    }
}

/// `POST /api/offer`: `{sdp, type:"offer", pc_id, restart_pc, request_data|requestData}`.
fn post_offer(req: &Request, reg: &Registry, session: Option<Value>) -> Result<Value, RouteError> {
    let mut body = json_object(&req.body)?;
    let sdp = match body.get("sdp") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(RouteError::new(400, "field 'sdp' is empty")),
        Some(_) => return Err(RouteError::new(400, "field 'sdp' must be a string")),
        None => return Err(RouteError::new(400, "missing field 'sdp'")),
    };
    match body.get("type") {
        // ESP32 firmware may leave it out; anything but "offer" is a mistake.
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "offer" => {}
        Some(other) => {
            return Err(RouteError::new(
                400,
                format!("field 'type' must be \"offer\", got {other}"),
            ))
        }
    }
    let pc_id = match body.get("pc_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(RouteError::new(
                400,
                "field 'pc_id' must be a string or null",
            ))
        }
    };
    let restart_pc = match body.get("restart_pc") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(RouteError::new(400, "field 'restart_pc' must be a boolean")),
    };
    let request_data = session.unwrap_or_else(|| {
        body.remove("request_data")
            .filter(|v| !v.is_null())
            .or_else(|| body.remove("requestData"))
            .unwrap_or(Value::Null)
    });
    check_access(req, reg, Protocol::Pipecat, &request_data)?;
    let offer = OfferRequest {
        sdp,
        pc_id,
        restart_pc,
        request_data,
    };
    let answer = reg.offer_from(offer, req.peer_addr.map(|a| a.ip()))?;
    Ok(json!({ "sdp": answer.sdp, "type": "answer", "pc_id": answer.pc_id }))
}

/// `PATCH /api/offer`: `{pc_id, candidates:[{candidate, sdp_mid, sdp_mline_index}]}`.
fn patch_candidates(req: &Request, reg: &Registry) -> Result<Value, RouteError> {
    let body = json_object(&req.body)?;
    let pc_id = match body.get("pc_id") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        _ => return Err(RouteError::new(400, "missing field 'pc_id' (a string)")),
    };
    let list = match body.get("candidates") {
        Some(Value::Array(a)) => a,
        _ => {
            return Err(RouteError::new(
                400,
                "missing field 'candidates' (an array)",
            ))
        }
    };
    let mut candidates = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        match c.get("candidate") {
            Some(Value::String(s)) => candidates.push(s.clone()),
            // A null candidate is how some clients spell end-of-candidates.
            Some(Value::Null) => candidates.push(String::new()),
            _ => {
                return Err(RouteError::new(
                    400,
                    format!("candidates[{i}] has no 'candidate' string"),
                ))
            }
        }
    }
    reg.add_candidates(pc_id, &candidates)?;
    Ok(json!({ "status": "success" }))
}

/// `POST /start`: `{body, ...}` → `{sessionId, iceConfig:{iceServers:[…]}}`; later offers
/// on `/sessions/{sessionId}/api/offer` get `body` as their request_data.
fn start(req: &Request, reg: &Registry) -> Result<Value, RouteError> {
    let mut body = if req.body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        json_object(&req.body)?
    };
    let data = body.remove("body").unwrap_or_else(|| json!({}));
    check_access(req, reg, Protocol::Pipecat, &data)?;
    let id = reg.start_session(data)?;
    let servers: Vec<Value> = reg
        .config()
        .ice_servers
        .iter()
        .map(|s| {
            let mut v = json!({ "urls": s.urls });
            if let Some(u) = &s.username {
                v["username"] = json!(u);
            }
            if let Some(c) = &s.credential {
                v["credential"] = json!(c);
            }
            v
        })
        .collect();
    Ok(json!({ "sessionId": id, "iceConfig": { "iceServers": servers } }))
}
