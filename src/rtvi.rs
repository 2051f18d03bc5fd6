//! Opt-in helper for RTVI, the message protocol Pipecat clients speak over the data
//! channel: recognises the client's `client-ready` and builds the `bot-ready` reply that
//! makes the official JS client's `connect()` resolve. Pure functions over message bytes;
//! it never sends anything itself and knows nothing of peers.
//!
//! ```
//! use smallwebrtc::rtvi;
//! let msg = br#"{"label":"rtvi-ai","type":"client-ready","id":"ab12cd34","data":{"version":"1.0.0"}}"#;
//! let reply = rtvi::reply_to(msg).expect("client-ready gets a bot-ready");
//! assert!(reply.contains(r#""type":"bot-ready""#) && reply.contains(r#""id":"ab12cd34""#));
//! ```

use serde_json::{json, Value};

/// The `label` every RTVI message carries.
pub const RTVI_LABEL: &str = "rtvi-ai";

/// The RTVI protocol version announced in `bot-ready`. Pipecat's JS client warns only when
/// the major version is below 1; Pipecat's own servers announce 1.x.
pub const RTVI_PROTOCOL_VERSION: &str = "1.0.0";

/// A parsed RTVI `client-ready` message.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientReady {
    /// The message id; `bot-ready` echoes it.
    pub id: Option<String>,
    /// The protocol version the client speaks (`data.version`).
    pub version: Option<String>,
    /// What the client says about itself (`data.about`), if anything.
    pub about: Value,
}

/// Recognises a `{"label":"rtvi-ai","type":"client-ready",...}` message. Anything else
/// (other types, other labels, non-JSON, binary garbage) gives `None`.
pub fn parse_client_ready(message: &[u8]) -> Option<ClientReady> {
    let v: Value = serde_json::from_slice(message).ok()?;
    if v.get("label")?.as_str()? != RTVI_LABEL || v.get("type")?.as_str()? != "client-ready" {
        return None;
    }
    let data = v.get("data");
    Some(ClientReady {
        id: v.get("id").and_then(id_string),
        version: data
            .and_then(|d| d.get("version"))
            .and_then(|s| s.as_str())
            .map(str::to_owned),
        about: data
            .and_then(|d| d.get("about"))
            .cloned()
            .unwrap_or(Value::Null),
    })
}

fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `bot-ready` message answering a `client-ready` with id `id`, with `about` (any
/// JSON; `Value::Null` leaves it out) describing the bot. Shaped like Pipecat's:
/// `{"label":"rtvi-ai","type":"bot-ready","id":…,"data":{"version":"1.0.0","about":…}}`.
pub fn bot_ready(id: Option<&str>, about: &Value) -> String {
    let mut data = json!({ "version": RTVI_PROTOCOL_VERSION });
    if !about.is_null() {
        data["about"] = about.clone();
    }
    let mut msg = json!({ "label": RTVI_LABEL, "type": "bot-ready", "data": data });
    // Pipecat answers with the client-ready's id; a fresh one when the client sent none.
    msg["id"] = json!(id.map(str::to_owned).unwrap_or_else(random_id));
    msg.to_string()
}

/// The reply an app owes an RTVI message, if any: `bot-ready` for `client-ready` (with
/// `about` naming this library). `None` for every other message.
pub fn reply_to(message: &[u8]) -> Option<String> {
    let ready = parse_client_ready(message)?;
    let about = json!({
        "library": env!("CARGO_PKG_NAME"),
        "library_version": env!("CARGO_PKG_VERSION"),
    });
    Some(bot_ready(ready.id.as_deref(), &about))
}

fn random_id() -> String {
    format!("{:08x}", crate::io::random_u32())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ready_from_the_js_client_gets_bot_ready_with_its_id() {
        let m = br#"{"id":"1f2e3d4c","label":"rtvi-ai","type":"client-ready","data":{"version":"2.2.0","about":{"library":"@pipecat-ai/client-js"}}}"#;
        let r = parse_client_ready(m).unwrap();
        assert_eq!(r.id.as_deref(), Some("1f2e3d4c"));
        assert_eq!(r.version.as_deref(), Some("2.2.0"));
        let reply: Value = serde_json::from_str(&reply_to(m).unwrap()).unwrap();
        assert_eq!(reply["label"], "rtvi-ai");
        assert_eq!(reply["type"], "bot-ready");
        assert_eq!(reply["id"], "1f2e3d4c");
        assert_eq!(reply["data"]["version"], RTVI_PROTOCOL_VERSION);
        assert_eq!(reply["data"]["about"]["library"], "smallwebrtc");
    }

    #[test]
    fn other_messages_get_nothing() {
        for m in [
            &br#"{"label":"rtvi-ai","type":"send-text","data":{}}"#[..],
            br#"{"label":"other","type":"client-ready"}"#,
            br#"{"type":"client-ready"}"#,
            br#"ping: 12"#,
            b"\xff\xfe",
            br#"[1,2]"#,
        ] {
            assert!(reply_to(m).is_none(), "{:?}", String::from_utf8_lossy(m));
        }
    }

    #[test]
    fn missing_id_gets_a_fresh_one() {
        let reply: Value = serde_json::from_str(
            &reply_to(br#"{"label":"rtvi-ai","type":"client-ready"}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(reply["id"].as_str().unwrap().len(), 8);
        let no_about: Value = serde_json::from_str(&bot_ready(Some("x"), &Value::Null)).unwrap();
        assert!(no_about["data"].get("about").is_none());
    }
}
