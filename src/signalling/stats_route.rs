//! `GET /api/stats?pc_id=...`: one peer's report as JSON, for the built-in page's stats
//! panel and for operators. Served with the page (`serve_page`); pc_ids carry 128 random
//! bits, so only whoever made the peer can read its stats.

use super::http::{Request, Response};
use super::registry::Registry;

/// Answers `GET`/`HEAD /api/stats?pc_id=...` (other methods: 405).
pub fn handle(req: &Request, reg: &Registry) -> Response {
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return Response::error(405, "method not allowed; use GET").with_header("Allow", "GET");
    }
    let pc_id = req
        .query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "pc_id")
        .map(|(_, v)| v);
    let Some(pc_id) = pc_id.filter(|v| !v.is_empty()) else {
        return Response::error(400, "missing query parameter pc_id");
    };
    let Some(peer) = reg.peer(pc_id) else {
        return Response::error(404, format!("no peer {pc_id}"));
    };
    match peer.stats_json() {
        Ok(json) => {
            Response::bytes(200, "application/json", json).with_header("Cache-Control", "no-store")
        }
        Err(e) => Response::error(410, format!("peer {pc_id}: {e}")),
    }
}
