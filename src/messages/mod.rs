//! The data-channel protocol Pipecat's clients speak: keepalive pings, internal `signalling`
//! messages and opaque app messages. Pure parsing and formatting; owns no state and no I/O.

use serde_json::Value;

/// What an inbound data-channel message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A keepalive (`ping: <ms>`, any text starting with `ping`). Never an app message.
    Ping,
    /// A `{"type":"signalling"}` message the library handles itself.
    Signalling(Signal),
    /// Anything else: handed to the app untouched.
    App,
}

/// The internal signalling messages understood on the way in.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// The client enabled or disabled one of its tracks (0 mic, 1 camera, 2 screen).
    TrackStatus {
        /// Which receiver the status is for.
        receiver_index: u32,
        /// Whether the client's track sends media.
        enabled: bool,
    },
    /// The client asks us to renegotiate (Pipecat clients may echo this).
    Renegotiate,
    /// The client is leaving.
    PeerLeft,
    /// A signalling message of a type we do not know, or malformed: ignored, logged.
    Unknown(String),
}

/// Classifies one inbound message. `binary` messages are always app messages.
pub fn classify(data: &[u8], binary: bool) -> Inbound {
    if binary {
        return Inbound::App;
    }
    if data.starts_with(b"ping") {
        return Inbound::Ping;
    }
    // Cheap pre-check before parsing JSON: only objects mentioning "signalling" qualify.
    if !data.windows(10).any(|w| w == b"signalling") {
        return Inbound::App;
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(data) else {
        return Inbound::App;
    };
    if obj.get("type").and_then(Value::as_str) != Some("signalling") {
        return Inbound::App;
    }
    Inbound::Signalling(parse_signal(obj.get("message")))
}

fn parse_signal(message: Option<&Value>) -> Signal {
    let Some(msg) = message else {
        return Signal::Unknown("signalling without message".into());
    };
    match msg.get("type").and_then(Value::as_str) {
        Some("trackStatus") => {
            let index = msg.get("receiver_index").and_then(Value::as_u64);
            let enabled = msg.get("enabled").and_then(Value::as_bool);
            match (index, enabled) {
                (Some(i), Some(enabled)) if i <= u32::MAX as u64 => Signal::TrackStatus {
                    receiver_index: i as u32,
                    enabled,
                },
                _ => Signal::Unknown(format!("malformed trackStatus: {msg}")),
            }
        }
        Some("renegotiate") => Signal::Renegotiate,
        Some("peerLeft") => Signal::PeerLeft,
        _ => Signal::Unknown(msg.to_string()),
    }
}

/// `{"type":"signalling","message":{"type":"renegotiate"}}`: asks the client for a new offer.
pub const RENEGOTIATE: &str = r#"{"type":"signalling","message":{"type":"renegotiate"}}"#;

/// `{"type":"signalling","message":{"type":"peerLeft"}}`: sent before we close.
pub const PEER_LEFT: &str = r#"{"type":"signalling","message":{"type":"peerLeft"}}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_are_not_app_messages() {
        assert_eq!(classify(b"ping: 1732400000000", false), Inbound::Ping);
        assert_eq!(classify(b"ping", false), Inbound::Ping);
        assert_eq!(classify(b"ping: 1", true), Inbound::App);
    }

    #[test]
    fn track_status_is_parsed() {
        let m = br#"{"type":"signalling","message":{"type":"trackStatus","receiver_index":1,"enabled":false}}"#;
        assert_eq!(
            classify(m, false),
            Inbound::Signalling(Signal::TrackStatus {
                receiver_index: 1,
                enabled: false
            })
        );
    }

    #[test]
    fn malformed_signalling_is_unknown_not_app() {
        let m = br#"{"type":"signalling","message":{"type":"trackStatus","receiver_index":"x"}}"#;
        assert!(matches!(
            classify(m, false),
            Inbound::Signalling(Signal::Unknown(_))
        ));
        let m = br#"{"type":"signalling"}"#;
        assert!(matches!(
            classify(m, false),
            Inbound::Signalling(Signal::Unknown(_))
        ));
    }

    #[test]
    fn other_json_and_garbage_are_app_messages() {
        assert_eq!(
            classify(br#"{"label":"rtvi-ai","type":"client-ready"}"#, false),
            Inbound::App
        );
        assert_eq!(
            classify(b"\xff\xfe not json signalling", false),
            Inbound::App
        );
        assert_eq!(
            classify(br#"{"type":"other","note":"signalling"}"#, false),
            Inbound::App
        );
        assert_eq!(classify(b"", false), Inbound::App);
    }

    #[test]
    fn outbound_constants_round_trip() {
        assert_eq!(
            classify(RENEGOTIATE.as_bytes(), false),
            Inbound::Signalling(Signal::Renegotiate)
        );
        assert_eq!(
            classify(PEER_LEFT.as_bytes(), false),
            Inbound::Signalling(Signal::PeerLeft)
        );
    }
}
