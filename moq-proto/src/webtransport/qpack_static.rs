//! The QPACK static table: RFC 9204 §3.1 and Appendix A.
//!
//! QPACK (RFC 9204) field line representations refer to the 99 entries of this table by a
//! zero-based index (unlike HPACK's one-based one, RFC 9204 §3.1). Every entry has a name
//! and a value, the value possibly empty. An index outside `0..=98` is a
//! `QPACK_DECOMPRESSION_FAILED` error for the decoder (RFC 9204 §3.1); [`get`] reports it as
//! `None`.

/// The static table of RFC 9204 Appendix A, as `(name, value)` pairs indexed from 0.
///
/// Generated from the RFC's table (rows that the RFC's text rendering wraps were checked
/// against the unwrapped source of the document).
pub const STATIC_TABLE: [(&str, &str); 99] = [
    (":authority", ""),                                    // 0
    (":path", "/"),                                        // 1
    ("age", "0"),                                          // 2
    ("content-disposition", ""),                           // 3
    ("content-length", "0"),                               // 4
    ("cookie", ""),                                        // 5
    ("date", ""),                                          // 6
    ("etag", ""),                                          // 7
    ("if-modified-since", ""),                             // 8
    ("if-none-match", ""),                                 // 9
    ("last-modified", ""),                                 // 10
    ("link", ""),                                          // 11
    ("location", ""),                                      // 12
    ("referer", ""),                                       // 13
    ("set-cookie", ""),                                    // 14
    (":method", "CONNECT"),                                // 15
    (":method", "DELETE"),                                 // 16
    (":method", "GET"),                                    // 17
    (":method", "HEAD"),                                   // 18
    (":method", "OPTIONS"),                                // 19
    (":method", "POST"),                                   // 20
    (":method", "PUT"),                                    // 21
    (":scheme", "http"),                                   // 22
    (":scheme", "https"),                                  // 23
    (":status", "103"),                                    // 24
    (":status", "200"),                                    // 25
    (":status", "304"),                                    // 26
    (":status", "404"),                                    // 27
    (":status", "503"),                                    // 28
    ("accept", "*/*"),                                     // 29
    ("accept", "application/dns-message"),                 // 30
    ("accept-encoding", "gzip, deflate, br"),              // 31
    ("accept-ranges", "bytes"),                            // 32
    ("access-control-allow-headers", "cache-control"),     // 33
    ("access-control-allow-headers", "content-type"),      // 34
    ("access-control-allow-origin", "*"),                  // 35
    ("cache-control", "max-age=0"),                        // 36
    ("cache-control", "max-age=2592000"),                  // 37
    ("cache-control", "max-age=604800"),                   // 38
    ("cache-control", "no-cache"),                         // 39
    ("cache-control", "no-store"),                         // 40
    ("cache-control", "public, max-age=31536000"),         // 41
    ("content-encoding", "br"),                            // 42
    ("content-encoding", "gzip"),                          // 43
    ("content-type", "application/dns-message"),           // 44
    ("content-type", "application/javascript"),            // 45
    ("content-type", "application/json"),                  // 46
    ("content-type", "application/x-www-form-urlencoded"), // 47
    ("content-type", "image/gif"),                         // 48
    ("content-type", "image/jpeg"),                        // 49
    ("content-type", "image/png"),                         // 50
    ("content-type", "text/css"),                          // 51
    ("content-type", "text/html; charset=utf-8"),          // 52
    ("content-type", "text/plain"),                        // 53
    ("content-type", "text/plain;charset=utf-8"),          // 54
    ("range", "bytes=0-"),                                 // 55
    ("strict-transport-security", "max-age=31536000"),     // 56
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains",
    ), // 57
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains; preload",
    ), // 58
    ("vary", "accept-encoding"),                           // 59
    ("vary", "origin"),                                    // 60
    ("x-content-type-options", "nosniff"),                 // 61
    ("x-xss-protection", "1; mode=block"),                 // 62
    (":status", "100"),                                    // 63
    (":status", "204"),                                    // 64
    (":status", "206"),                                    // 65
    (":status", "302"),                                    // 66
    (":status", "400"),                                    // 67
    (":status", "403"),                                    // 68
    (":status", "421"),                                    // 69
    (":status", "425"),                                    // 70
    (":status", "500"),                                    // 71
    ("accept-language", ""),                               // 72
    ("access-control-allow-credentials", "FALSE"),         // 73
    ("access-control-allow-credentials", "TRUE"),          // 74
    ("access-control-allow-headers", "*"),                 // 75
    ("access-control-allow-methods", "get"),               // 76
    ("access-control-allow-methods", "get, post, options"), // 77
    ("access-control-allow-methods", "options"),           // 78
    ("access-control-expose-headers", "content-length"),   // 79
    ("access-control-request-headers", "content-type"),    // 80
    ("access-control-request-method", "get"),              // 81
    ("access-control-request-method", "post"),             // 82
    ("alt-svc", "clear"),                                  // 83
    ("authorization", ""),                                 // 84
    (
        "content-security-policy",
        "script-src 'none'; object-src 'none'; base-uri 'none'",
    ), // 85
    ("early-data", "1"),                                   // 86
    ("expect-ct", ""),                                     // 87
    ("forwarded", ""),                                     // 88
    ("if-range", ""),                                      // 89
    ("origin", ""),                                        // 90
    ("purpose", "prefetch"),                               // 91
    ("server", ""),                                        // 92
    ("timing-allow-origin", "*"),                          // 93
    ("upgrade-insecure-requests", "1"),                    // 94
    ("user-agent", ""),                                    // 95
    ("x-forwarded-for", ""),                               // 96
    ("x-frame-options", "deny"),                           // 97
    ("x-frame-options", "sameorigin"),                     // 98
];

/// Returns the `(name, value)` entry at a static table `index`, or `None` past the end.
pub fn get(index: u64) -> Option<(&'static str, &'static str)> {
    let index = usize::try_from(index).ok()?;
    STATIC_TABLE.get(index).copied()
}

/// Looks up a field line in the static table.
///
/// Returns the index of an entry with this exact name and value and `true`, or, if no entry
/// has both, the index of the first entry with this name and `false`, or `None` if no entry
/// has this name. Names are compared exactly: HTTP/3 field names are lowercase (RFC 9114
/// §4.2), as are the table's.
pub fn find(name: &str, value: &str) -> Option<(u64, bool)> {
    find_bytes(name.as_bytes(), value.as_bytes())
}

/// [`find`] for a name and value as bytes (field values need not be UTF-8).
pub fn find_bytes(name: &[u8], value: &[u8]) -> Option<(u64, bool)> {
    let mut name_match = None;
    for (index, &(entry_name, entry_value)) in (0u64..).zip(STATIC_TABLE.iter()) {
        if entry_name.as_bytes() != name {
            continue;
        }
        if entry_value.as_bytes() == value {
            return Some((index, true));
        }
        if name_match.is_none() {
            name_match = Some((index, false));
        }
    }
    name_match
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length() {
        assert_eq!(STATIC_TABLE.len(), 99);
        assert!(get(98).is_some());
        assert_eq!(get(99), None);
        assert_eq!(get(u64::MAX), None);
    }

    #[test]
    fn rfc9204_spot_checks() {
        let expected: &[(u64, &str, &str)] = &[
            (0, ":authority", ""),
            (1, ":path", "/"),
            (2, "age", "0"),
            (15, ":method", "CONNECT"),
            (17, ":method", "GET"),
            (21, ":method", "PUT"),
            (23, ":scheme", "https"),
            (25, ":status", "200"),
            (29, "accept", "*/*"),
            (30, "accept", "application/dns-message"),
            (31, "accept-encoding", "gzip, deflate, br"),
            (41, "cache-control", "public, max-age=31536000"),
            (47, "content-type", "application/x-www-form-urlencoded"),
            (52, "content-type", "text/html; charset=utf-8"),
            (54, "content-type", "text/plain;charset=utf-8"),
            (
                58,
                "strict-transport-security",
                "max-age=31536000; includesubdomains; preload",
            ),
            (62, "x-xss-protection", "1; mode=block"),
            (63, ":status", "100"),
            (71, ":status", "500"),
            (73, "access-control-allow-credentials", "FALSE"),
            (
                85,
                "content-security-policy",
                "script-src 'none'; object-src 'none'; base-uri 'none'",
            ),
            (90, "origin", ""),
            (95, "user-agent", ""),
            (98, "x-frame-options", "sameorigin"),
        ];
        for &(index, name, value) in expected {
            assert_eq!(get(index), Some((name, value)), "index {index}");
        }
    }

    #[test]
    fn names_are_lowercase_tokens() {
        for (index, &(name, value)) in STATIC_TABLE.iter().enumerate() {
            assert!(!name.is_empty(), "index {index}");
            let body = name.strip_prefix(':').unwrap_or(name);
            assert!(
                body.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "index {index}: {name:?}"
            );
            assert!(value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
            assert_eq!(value.trim(), value, "index {index}");
        }
    }

    #[test]
    fn entries_are_distinct() {
        for (i, a) in STATIC_TABLE.iter().enumerate() {
            for b in &STATIC_TABLE[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn find_every_entry() {
        for (index, &(name, value)) in (0u64..).zip(STATIC_TABLE.iter()) {
            assert_eq!(find(name, value), Some((index, true)), "{name}: {value}");
            assert_eq!(
                find_bytes(name.as_bytes(), value.as_bytes()),
                Some((index, true))
            );
        }
    }

    #[test]
    fn find_prefers_exact_match() {
        assert_eq!(find(":method", "GET"), Some((17, true)));
        assert_eq!(find(":method", "PATCH"), Some((15, false)));
        assert_eq!(find(":status", "200"), Some((25, true)));
        assert_eq!(find(":status", "500"), Some((71, true)));
        assert_eq!(find(":status", "418"), Some((24, false)));
        assert_eq!(find("content-type", "text/plain"), Some((53, true)));
        assert_eq!(find("content-type", "video/mp4"), Some((44, false)));
        assert_eq!(find(":authority", "example.com"), Some((0, false)));
        assert_eq!(find(":authority", ""), Some((0, true)));
        assert_eq!(find(":path", "/index.html"), Some((1, false)));
        assert_eq!(find("origin", ""), Some((90, true)));
        assert_eq!(find("origin", "https://example.com"), Some((90, false)));
        assert_eq!(find("vary", "origin"), Some((60, true)));
        assert_eq!(find("x-frame-options", "sameorigin"), Some((98, true)));
    }

    #[test]
    fn find_misses() {
        assert_eq!(find("x-unknown", ""), None);
        assert_eq!(find("", ""), None);
        // Names are case-sensitive: HTTP/3 requires lowercase.
        assert_eq!(find(":METHOD", "GET"), None);
        assert_eq!(find("Content-Type", "text/plain"), None);
        assert_eq!(find_bytes(b"content-type", b"\xff"), Some((44, false)));
        // Values are compared exactly.
        assert_eq!(find(":method", "get"), Some((15, false)));
    }
}
