//! The WebSocket subprotocol that names both the QMux draft and the MOQ version:
//! `qmux-0N.<alpn>` (for example `qmux-01.moq-lite-05`), as `@moq/net` and moq-dev's relay and
//! tools negotiate it. The server's preference decides, as the reference relay's does:
//! for each of its versions, newest first, `qmux-01`, then `qmux-02`, then `qmux-00`.
//! The bare ALPN (`moq-lite-05`, the form draft-lcurley-qmux-websocket describes) is accepted
//! as draft-01. The bare `qmux-0N` and `webtransport` forms carry no MOQ version (their peers
//! negotiate moq-lite-02 in a SETUP, which this crate does not speak) and are refused.

use super::conn::Draft;
use crate::wire::Version;

/// Drafts in the order a server prefers them and a client offers them.
const PREFERENCE: [Draft; 3] = [Draft::Qmux01, Draft::Qmux02, Draft::Qmux00];

/// The subprotocol for `draft` and `version`.
pub fn name(draft: Draft, version: Version) -> String {
    format!("{}.{}", draft.prefix(), version.alpn())
}

/// What a subprotocol names, if it names a MOQ version we speak.
pub fn parse(protocol: &str) -> Option<(Draft, Version)> {
    match protocol.split_once('.') {
        Some((prefix, alpn)) => Some((
            Draft::from_prefix(prefix)?,
            Version::from_alpn(alpn.as_bytes())?,
        )),
        None => Some((Draft::Qmux01, Version::from_alpn(protocol.as_bytes())?)),
    }
}

/// The client's offer for `versions` (newest first): every draft of each version.
pub fn offer(versions: &[Version]) -> Vec<String> {
    versions
        .iter()
        .flat_map(|v| PREFERENCE.iter().map(move |d| name(*d, *v)))
        .collect()
}

/// The server's choice among `offered` for `versions` (its preference, newest first): the
/// subprotocol to answer with, its draft and version.
pub fn choose(offered: &[&str], versions: &[Version]) -> Option<(String, Draft, Version)> {
    for version in versions {
        for draft in PREFERENCE {
            let candidate = name(draft, *version);
            if offered.contains(&candidate.as_str()) {
                return Some((candidate, draft, *version));
            }
        }
        if offered.contains(&version.alpn()) {
            return Some((version.alpn().to_string(), Draft::Qmux01, *version));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `@moq/net` 0.3.4 offers by default (captured).
    const MOQ_NET: &str = "qmux-02.moq-lite-05, qmux-01.moq-lite-05, qmux-00.moq-lite-05, \
        qmux-02.moq-lite-04, qmux-01.moq-lite-04, qmux-00.moq-lite-04, qmux-02.moq-lite-03, \
        qmux-01.moq-lite-03, qmux-00.moq-lite-03, qmux-02.moql, qmux-01.moql, qmux-00.moql, \
        qmux-01.moqt-20, qmux-01.moqt-18, qmux-02.moqt-17, qmux-01.moqt-17, qmux-00.moqt-17, \
        qmux-02.moqt-16, qmux-01.moqt-16, qmux-00.moqt-16, qmux-02.moqt-15, qmux-01.moqt-15, \
        qmux-00.moqt-15, qmux-02, qmux-01, qmux-00, webtransport";

    /// What moq-clock 0.10 (qmux 0.0.7) offers (captured).
    const MOQ_CLOCK: &str = "qmux-00, qmux-00.moq-lite-04, qmux-00.moq-lite-03, qmux-00.moql, \
        qmux-00.moqt-19, webtransport, webtransport.moq-lite-04, webtransport.moq-lite-03";

    fn split(s: &str) -> Vec<&str> {
        s.split(',').map(str::trim).collect()
    }

    #[test]
    fn server_choices_match_the_reference_relay() {
        let all = Version::ALL;
        assert_eq!(
            choose(&split(MOQ_NET), &all).unwrap(),
            ("qmux-01.moq-lite-05".into(), Draft::Qmux01, Version::Lite05)
        );
        assert_eq!(
            choose(&split(MOQ_CLOCK), &all).unwrap(),
            ("qmux-00.moq-lite-04".into(), Draft::Qmux00, Version::Lite04)
        );
        // A browser forced to lite-03 offers its three drafts.
        let forced = split("qmux-02.moq-lite-03, qmux-01.moq-lite-03, qmux-00.moq-lite-03");
        assert_eq!(choose(&forced, &all).unwrap().0, "qmux-01.moq-lite-03");
        // Unlike the reference we also take draft-02 alone, and the bare ALPN.
        assert_eq!(
            choose(&["qmux-02.moq-lite-05"], &all).unwrap().1,
            Draft::Qmux02
        );
        assert_eq!(
            choose(&["moq-lite-04"], &all).unwrap(),
            ("moq-lite-04".into(), Draft::Qmux01, Version::Lite04)
        );
        // A server restricted to lite-04 picks it from the full offer.
        assert_eq!(
            choose(&split(MOQ_NET), &[Version::Lite04]).unwrap().0,
            "qmux-01.moq-lite-04"
        );
        // No version in common, or only the versionless forms.
        assert_eq!(choose(&split("qmux-01, qmux-00, webtransport"), &all), None);
        assert_eq!(choose(&["qmux-01.moq-lite-06"], &all), None);
        assert_eq!(choose(&[], &all), None);
    }

    #[test]
    fn offers_and_parses() {
        assert_eq!(
            offer(&[Version::Lite05, Version::Lite03]),
            [
                "qmux-01.moq-lite-05",
                "qmux-02.moq-lite-05",
                "qmux-00.moq-lite-05",
                "qmux-01.moq-lite-03",
                "qmux-02.moq-lite-03",
                "qmux-00.moq-lite-03"
            ]
        );
        assert_eq!(
            parse("qmux-00.moq-lite-04"),
            Some((Draft::Qmux00, Version::Lite04))
        );
        assert_eq!(parse("moq-lite-05"), Some((Draft::Qmux01, Version::Lite05)));
        assert_eq!(parse("qmux-01"), None);
        assert_eq!(parse("qmux-03.moq-lite-05"), None);
        assert_eq!(parse("webtransport"), None);
    }
}
