//! Answers for ESP32 clients (pipecat-esp32 on libpeer): the firmware copies the HTTP
//! answer into a 4096-byte buffer and wants CRLF lines under 256 bytes. Pure text
//! transformations of an SDP answer; no peers, no HTTP.

use std::net::IpAddr;

use tracing::warn;

use crate::error::{Error, Result};

/// Largest answer SDP the firmware can hold (its buffer is 4096 bytes, the JSON envelope
/// around the SDP is accounted for by the caller's margin below).
pub const MAX_ANSWER: usize = 4096;

/// Lines at least this long are cut by the firmware's line buffer.
pub const MAX_LINE: usize = 256;

/// Room left for the JSON envelope (`{"sdp":…,"type":"answer","pc_id":…}` plus escaped
/// CRLFs: two extra bytes per line) inside the firmware's 4096-byte buffer.
const ENVELOPE_MARGIN: usize = 3 * 64 + 2 * 60;

/// Whether an offer looks like an ESP32's: an m-line with the plain `UDP/TLS/RTP/SAVP`
/// profile (browsers and aiortc send `SAVPF`).
pub fn is_esp32_offer(offer: &str) -> bool {
    offer
        .lines()
        .any(|l| l.starts_with("m=") && l.split_whitespace().nth(2) == Some("UDP/TLS/RTP/SAVP"))
}

/// Shrinks an answer for ESP32 firmware: only the sha-256 fingerprint; only candidates on
/// `host` (when set, and when that leaves any); no msid/ssrc labels; CRLF line ends; the
/// offer's `SAVP` profile mirrored back. Drops header extensions and feedback lines too
/// if still over budget. Errors if the result still does not fit.
pub fn compact_answer(answer: &str, offer: &str, host: Option<IpAddr>) -> Result<String> {
    let savp = is_esp32_offer(offer);
    let lines: Vec<&str> = answer
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect();
    let host_has_candidates = host.is_some_and(|h| {
        lines
            .iter()
            .any(|l| candidate_ip(l).is_some_and(|ip| ip == h))
    });
    if host.is_some() && !host_has_candidates {
        warn!("ESP32 answer: no candidate on {host:?}; keeping them all");
    }
    let essential = |l: &str| -> bool {
        if let Some(fp) = l.strip_prefix("a=fingerprint:") {
            return fp.starts_with("sha-256 ");
        }
        if let (Some(ip), Some(h)) = (candidate_ip(l), host) {
            return !host_has_candidates || ip == h;
        }
        if l.starts_with("a=msid") || l.starts_with("a=ssrc:") && !l.contains(" cname:") {
            return false;
        }
        true
    };
    let mut kept: Vec<String> = lines
        .iter()
        .filter(|l| essential(l))
        .map(|l| {
            if savp && l.starts_with("m=audio ") {
                l.replacen(" UDP/TLS/RTP/SAVPF ", " UDP/TLS/RTP/SAVP ", 1)
            } else {
                (*l).to_owned()
            }
        })
        .collect();
    hoist_fingerprint(&mut kept);
    let budget = MAX_ANSWER - ENVELOPE_MARGIN;
    if joined_len(&kept) > budget {
        kept.retain(|l| !l.starts_with("a=extmap:") && !l.starts_with("a=rtcp-fb:"));
    }
    if joined_len(&kept) > budget {
        // The copies of the candidates in later m-sections are for clients that read
        // another section than the first; libpeer reads them wherever they are.
        let mut section = 0;
        kept.retain(|l| {
            section += usize::from(l.starts_with("m="));
            section <= 1 || !(l.starts_with("a=candidate:") || l == "a=end-of-candidates")
        });
    }
    let len = joined_len(&kept);
    if len > budget {
        return Err(Error::internal(format!(
            "the ESP32 answer is {len} bytes even compacted (budget {budget})"
        )));
    }
    if let Some(long) = kept.iter().find(|l| l.len() + 2 >= MAX_LINE) {
        return Err(Error::internal(format!(
            "an answer line is {} bytes, too long for ESP32: {long:.40}…",
            long.len()
        )));
    }
    let mut out = String::with_capacity(len);
    for l in &kept {
        out.push_str(l);
        out.push_str("\r\n");
    }
    Ok(out)
}

/// One fingerprint at session level instead of a copy per m-line, when they are all the
/// same (they are: one certificate per peer). A session-level fingerprint applies to every
/// m-line (RFC 8122), and libpeer reads the first one it finds.
fn hoist_fingerprint(lines: &mut Vec<String>) {
    let mut fps = lines.iter().filter(|l| l.starts_with("a=fingerprint:"));
    let Some(first) = fps.next().cloned() else {
        return;
    };
    if fps.any(|l| *l != first) {
        return;
    }
    lines.retain(|l| !l.starts_with("a=fingerprint:"));
    let at = lines
        .iter()
        .position(|l| l.starts_with("m="))
        .unwrap_or(lines.len());
    lines.insert(at, first);
}

fn joined_len(lines: &[String]) -> usize {
    lines.iter().map(|l| l.len() + 2).sum()
}

/// The connection address of an `a=candidate:` line.
fn candidate_ip(line: &str) -> Option<IpAddr> {
    let rest = line.strip_prefix("a=candidate:")?;
    rest.split_whitespace().nth(4)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=fingerprint:sha-256 AA:BB\r\na=fingerprint:sha-512 CC:DD\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio\r\na=msid:x y\r\na=ssrc:1 cname:z\r\n\
a=ssrc:1 msid:x y\r\na=extmap:1 urn:x\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
a=candidate:2 1 udp 2130706431 192.168.1.5 5000 typ host\r\n";

    #[test]
    fn keeps_what_the_firmware_needs() {
        let offer = "m=audio 9 UDP/TLS/RTP/SAVP 111\r\n";
        let out = compact_answer(ANSWER, offer, Some("192.168.1.5".parse().unwrap())).unwrap();
        assert!(out.contains("sha-256") && !out.contains("sha-512"));
        assert!(out.contains("192.168.1.5") && !out.contains("127.0.0.1"));
        assert!(out.contains("m=audio 9 UDP/TLS/RTP/SAVP 111\r\n"));
        assert!(out.contains("cname") && !out.contains("msid"));
        assert!(out.contains("a=extmap"), "small answers keep their extmaps");
        assert!(out.split("\r\n").all(|l| !l.contains('\n')));
        assert!(out.ends_with("\r\n"));
    }

    #[test]
    fn a_host_without_candidates_keeps_them_all() {
        let out = compact_answer(ANSWER, "", Some("10.0.0.1".parse().unwrap())).unwrap();
        assert!(out.contains("127.0.0.1") && out.contains("192.168.1.5"));
        assert!(out.contains("SAVPF"), "a SAVPF offer keeps SAVPF");
    }

    #[test]
    fn detects_esp32_offers() {
        assert!(is_esp32_offer("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVP 111\r\n"));
        assert!(!is_esp32_offer(
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        ));
    }

    #[test]
    fn too_big_is_an_error() {
        let big = format!("{ANSWER}{}", "a=x-filler:0123456789\r\n".repeat(400));
        assert!(compact_answer(&big, "", None).is_err());
    }
}
