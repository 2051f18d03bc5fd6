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
    check_payload_types(&text)?;
    let offer = SdpOffer::from_sdp_string(&text)
        .map_err(|e| Error::new(ErrorKind::InvalidSdp, format!("unparsable SDP offer: {e}")))?;
    // The m-lines as str0m read them: on garbage (a second session mixed in, say) its
    // parser may keep other lines than a line scan does, and the receivers must follow
    // the lines str0m answers.
    let lines = media_lines(&offer.to_sdp_string());
    if lines.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidSdp,
            "the SDP offer has no m-lines",
        ));
    }
    // str0m leaves an m-line of a kind it does not know out of its answer, which a client
    // would refuse (an answer has every m-line of its offer): refuse the offer instead.
    if let Some(i) = lines.iter().position(|l| l.kind == LineKind::Other) {
        return Err(Error::new(
            ErrorKind::InvalidSdp,
            format!("m-line {} is neither audio, video nor application", i + 1),
        ));
    }
    Ok((offer, lines))
}

/// Refuses a payload type mapped (`a=rtpmap`) in m-lines of different kinds, or to two
/// codecs: bundled m-lines share one payload type space (RFC 8843 §7.5), and str0m asserts
/// instead of returning an error on such offers.
fn check_payload_types(text: &str) -> Result<()> {
    let mut seen: std::collections::HashMap<&str, (&str, &str)> = Default::default();
    let mut kind = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("m=") {
            kind = rest.split(' ').next().unwrap_or("");
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let mut it = rest.splitn(2, ' ');
            let (pt, codec) = (it.next().unwrap_or(""), it.next().unwrap_or("").trim());
            match seen.get(pt) {
                Some(&(k, c)) if k != kind || !c.eq_ignore_ascii_case(codec) => {
                    return Err(Error::new(
                        ErrorKind::InvalidSdp,
                        format!(
                            "payload type {pt} is {c} in an {k} m-line and {codec} in an \
                             {kind} m-line (bundled m-lines share payload types)"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert(pt, (kind, codec));
                }
            }
        }
    }
    Ok(())
}

/// Takes the `a=candidate` lines out of an offer: the offer without them, and the
/// candidates (without `a=`, each once, in order; they are repeated per bundled section).
pub fn split_candidates(sdp: &str) -> (String, Vec<String>) {
    let mut text = String::with_capacity(sdp.len());
    let mut candidates: Vec<String> = Vec::new();
    for line in sdp.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        match bare.strip_prefix("a=") {
            Some(c) if c.starts_with("candidate:") => {
                if !candidates.iter().any(|k| k == c) {
                    candidates.push(c.to_owned());
                }
            }
            _ => text.push_str(line),
        }
    }
    (text, candidates)
}

/// Repeats the ICE candidates of the first m-section that has any in every later m-section
/// that has none. str0m writes them once, in the first section, which browsers read (all
/// sections are bundled on one transport); aiortc reads those of the last section, so
/// without the copies an aiortc client behind a NAT, which needs our candidates to send
/// its checks, never connects. Pipecat's server repeats them the same way.
pub fn repeat_candidates(sdp: &str) -> String {
    let lines: Vec<&str> = sdp
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect();
    // Sections: [start, end) ranges of m-sections.
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("m="))
        .map(|(i, _)| i)
        .collect();
    let section = |k: usize| starts[k]..starts.get(k + 1).copied().unwrap_or(lines.len());
    let is_cand = |l: &&str| l.starts_with("a=candidate:") || *l == "a=end-of-candidates";
    let source: Vec<&str> = (0..starts.len())
        .map(|k| {
            lines[section(k)]
                .iter()
                .copied()
                .filter(is_cand)
                .collect::<Vec<_>>()
        })
        .find(|c| !c.is_empty())
        .unwrap_or_default();
    let mut out = String::with_capacity(sdp.len() + source.len() * 80 * starts.len());
    let mut push = |l: &str| {
        out.push_str(l);
        out.push_str("\r\n");
    };
    lines[..starts.first().copied().unwrap_or(lines.len())]
        .iter()
        .for_each(|l| push(l));
    for k in 0..starts.len() {
        let body = &lines[section(k)];
        body.iter().for_each(|l| push(l));
        if !body.iter().any(is_cand) {
            source.iter().for_each(|l| push(l));
        }
    }
    out
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

/// Moves RED to the front of each audio m-line's payload types in an answer. libwebrtc
/// (Chromium) sends RED only when it comes before Opus in the negotiated list, and str0m
/// lists it after its primary; the order changes nothing for str0m, which already applied
/// the answer.
pub fn prefer_red(answer: &str) -> String {
    let eol = if answer.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut sections: Vec<Vec<String>> = vec![vec![]];
    for line in answer.lines() {
        if line.starts_with("m=") {
            sections.push(vec![]);
        }
        if let Some(last) = sections.last_mut() {
            last.push(line.to_string());
        }
    }
    for section in sections.iter_mut().skip(1) {
        if !section[0].starts_with("m=audio ") {
            continue;
        }
        let red: Vec<String> = section
            .iter()
            .filter_map(|l| l.strip_prefix("a=rtpmap:"))
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, codec)| codec.to_ascii_lowercase().starts_with("red/"))
            .map(|(pt, _)| pt.to_string())
            .collect();
        if red.is_empty() {
            continue;
        }
        // m=audio <port> <proto> <pt>...
        let fields: Vec<&str> = section[0].split(' ').collect();
        if fields.len() < 4 {
            continue;
        }
        let (head, pts) = fields.split_at(3);
        let mut ordered: Vec<&str> = pts
            .iter()
            .copied()
            .filter(|p| red.iter().any(|r| r == p))
            .collect();
        ordered.extend(pts.iter().copied().filter(|p| !red.iter().any(|r| r == p)));
        section[0] = head
            .iter()
            .chain(ordered.iter())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
    }
    let mut out = String::with_capacity(answer.len());
    for line in sections.into_iter().flatten() {
        out.push_str(&line);
        out.push_str(eol);
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
    fn candidates_are_split_off_once_each() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=candidate:1 1 udp 2130706431 10.0.0.2 6000 typ host\r\na=mid:0\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
a=candidate:1 1 udp 2130706431 10.0.0.2 6000 typ host\r\n\
a=candidate:2 1 udp 1694498815 203.0.113.7 6000 typ srflx raddr 10.0.0.2 rport 6000\r\n\
a=end-of-candidates\r\na=mid:1\r\n";
        let (rest, candidates) = split_candidates(offer);
        assert_eq!(
            candidates,
            [
                "candidate:1 1 udp 2130706431 10.0.0.2 6000 typ host",
                "candidate:2 1 udp 1694498815 203.0.113.7 6000 typ srflx raddr 10.0.0.2 rport 6000"
            ]
        );
        assert!(!rest.contains("candidate:"), "{rest}");
        assert!(rest.contains("a=mid:0\r\nm=application") && rest.ends_with("a=mid:1\r\n"));
    }

    #[test]
    fn savp_offer_is_normalised_and_parsed() {
        let (_offer, lines) = parse_offer(ESP32_LIKE).expect("ESP32-style offer parses");
        assert_eq!(lines[0].kind, LineKind::Audio);
        assert_eq!(lines[0].mid, "audio");
        assert_eq!(lines[1].kind, LineKind::Application);
    }

    #[test]
    fn candidates_are_repeated_in_every_section() {
        let answer = "v=0\r\ns=-\r\na=group:BUNDLE 0 1 2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
a=candidate:1 1 udp 2130706175 10.0.0.2 5000 typ host\r\n\
a=candidate:2 1 udp 1694498815 203.0.113.9 40000 typ srflx raddr 10.0.0.2 rport 5000\r\n\
a=end-of-candidates\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
        let out = repeat_candidates(answer);
        let sections: Vec<&str> = out.split("m=").skip(1).collect();
        assert_eq!(sections.len(), 3);
        for s in &sections {
            assert_eq!(s.matches("a=candidate:").count(), 2, "{s}");
            assert_eq!(s.matches("a=end-of-candidates").count(), 1, "{s}");
        }
        assert!(out.starts_with("v=0\r\ns=-\r\na=group:BUNDLE 0 1 2\r\nm=audio"));
        // Idempotent, and an answer without candidates is left as it was.
        assert_eq!(repeat_candidates(&out), out);
        let bare = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 96\r\n";
        assert_eq!(repeat_candidates(bare), bare);
        assert_eq!(repeat_candidates(""), "");
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

    #[test]
    fn red_moves_to_the_front_of_audio_only() {
        let answer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=rtpmap:111 opus/48000/2\r\n\
            a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 63\r\na=rtpmap:96 VP8/90000\r\n";
        let out = prefer_red(answer);
        assert!(
            out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 63 111\r\n"),
            "{out}"
        );
        assert!(
            out.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 63\r\n"),
            "{out}"
        );
        assert_eq!(out.len(), answer.len());
        let plain = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(prefer_red(plain), plain);
    }
}
