//! SDP text helpers around str0m's parser: normalising offers str0m would reject and reading
//! the m-line layout (kind and mid by position) that Pipecat's track map is keyed on.

use str0m::change::SdpOffer;

use crate::error::{Error, ErrorKind, Result};

/// Kind of an m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// `m=audio`
    Audio,
    /// `m=video`
    Video,
    /// `m=application` (the data channel)
    Application,
    /// Anything else.
    Other,
}

/// One m-line of an offer: its kind and mid, by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    /// What the line carries.
    pub kind: LineKind,
    /// Its `a=mid` value (empty when absent).
    pub mid: String,
}

/// Largest SDP accepted. Real offers are a few kB; this bounds parser work on garbage.
pub const MAX_SDP_LEN: usize = 64 * 1024;

/// Parses an offer after normalising what str0m would reject: the `UDP/TLS/RTP/SAVP` profile
/// that ESP32 clients send (rewritten to `SAVPF`) and bare `\n` line ends.
pub fn parse_offer(sdp: &str) -> Result<(SdpOffer, Vec<MediaLine>)> {
    if sdp.trim().is_empty() {
        return Err(Error::new(ErrorKind::InvalidSdp, "the SDP offer is empty"));
    }
    if sdp.len() > MAX_SDP_LEN {
        return Err(Error::new(
            ErrorKind::InvalidSdp,
            format!(
                "the SDP offer is {} bytes, over the {MAX_SDP_LEN}-byte limit",
                sdp.len()
            ),
        ));
    }
    let mut text = String::with_capacity(sdp.len() + 64);
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") && line.contains(" UDP/TLS/RTP/SAVP ") {
            text.push_str(&line.replacen(" UDP/TLS/RTP/SAVP ", " UDP/TLS/RTP/SAVPF ", 1));
        } else {
            text.push_str(line);
        }
        text.push_str("\r\n");
    }
    let lines = media_lines(&text);
    if lines.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidSdp,
            "the SDP offer has no m-lines",
        ));
    }
    let offer = SdpOffer::from_sdp_string(&text)
        .map_err(|e| Error::new(ErrorKind::InvalidSdp, format!("unparsable SDP offer: {e}")))?;
    Ok((offer, lines))
}

/// The m-lines of an SDP text in order, with their mids.
pub fn media_lines(sdp: &str) -> Vec<MediaLine> {
    let mut out: Vec<MediaLine> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("m=") {
            let kind = match rest.split(' ').next() {
                Some("audio") => LineKind::Audio,
                Some("video") => LineKind::Video,
                Some("application") => LineKind::Application,
                _ => LineKind::Other,
            };
            out.push(MediaLine {
                kind,
                mid: String::new(),
            });
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            if let Some(last) = out.last_mut() {
                last.mid = mid.trim().to_string();
            }
        }
    }
    out
}

/// The ICE user fragment of an SDP text or fragment: the first `a=ice-ufrag:` line,
/// session- or media-level (bundled offers carry one).
pub fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .map(|l| l.trim_end_matches('\r'))
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .map(str::trim)
        .filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESP32_LIKE: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE audio datachannel\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\n\
a=setup:passive\r\n\
m=audio 9 UDP/TLS/RTP/SAVP 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=mid:audio\r\na=sendrecv\r\na=rtcp-mux\r\n\
m=application 50712 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:datachannel\r\na=sctp-port:5000\r\n";

    #[test]
    fn savp_offer_is_normalised_and_parsed() {
        let (_offer, lines) = parse_offer(ESP32_LIKE).expect("ESP32-style offer parses");
        assert_eq!(lines[0].kind, LineKind::Audio);
        assert_eq!(lines[0].mid, "audio");
        assert_eq!(lines[1].kind, LineKind::Application);
    }

    #[test]
    fn lf_only_offer_parses() {
        let lf = ESP32_LIKE.replace("\r\n", "\n");
        assert!(parse_offer(&lf).is_ok());
    }

    #[test]
    fn garbage_is_invalid_sdp() {
        for bad in ["", "   ", "hello", "v=0\r\nm=audio banana\r\n", "m=\r\n"] {
            let e = parse_offer(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidSdp, "{bad:?}: {e}");
        }
        let huge = "a".repeat(MAX_SDP_LEN + 1);
        assert_eq!(
            parse_offer(&huge).unwrap_err().kind(),
            ErrorKind::InvalidSdp
        );
    }
}
