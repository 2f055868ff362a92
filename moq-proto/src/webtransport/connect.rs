//! The extended CONNECT that opens a WebTransport session (RFC 9220; draft-ietf-webtrans-http3
//! §3) and its response, with MOQ version negotiation through `WT-Available-Protocols` /
//! `WT-Protocol`.
//!
//! The client lists the versions it speaks in `wt-available-protocols`, a structured-field
//! list (RFC 9651): strings in draft -13 and later (and in moq-dev's clients), tokens in
//! earlier drafts and older Chromium. The server picks one and answers it in `wt-protocol`, in
//! the form the client used. The CONNECT `:path` is the MOQ session's root path.

use crate::wire::Version;

/// The `:protocol` of a WebTransport CONNECT (drafts up to -14; -15 renamed it).
pub const PROTOCOL: &str = "webtransport";

/// How a structured-field list wrote its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListForm {
    /// `"moq-lite-05", "moq-lite-04"` (sf-string; draft -13+, moq-dev).
    #[default]
    Strings,
    /// `moq-lite-05, moq-lite-04` (sf-token; earlier drafts).
    Tokens,
}

/// A WebTransport CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// `:authority` (host and port).
    pub authority: String,
    /// `:path`, with its query: the MOQ session's root (and e.g. `?jwt=...`).
    pub path: String,
    /// `origin`, when the client sent one (browsers do).
    pub origin: Option<String>,
    /// The subprotocols offered, in the client's order of preference.
    pub protocols: Vec<String>,
    /// How `wt-available-protocols` was written (the answer uses the same form).
    pub form: ListForm,
}

/// A request that is not a WebTransport CONNECT we can serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not a CONNECT (a GET of a page, say): answered with this HTTP status.
    #[error("not a WebTransport CONNECT (method {0:?})")]
    Method(String),
    /// CONNECT for another protocol (or a plain CONNECT).
    #[error("CONNECT for protocol {0:?}, not webtransport")]
    Protocol(String),
    /// A required pseudo-header is missing or repeated: a malformed request.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

impl RequestError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Method(_) => 405,
            RequestError::Protocol(_) => 400,
            RequestError::Malformed(_) => 400,
        }
    }
}

impl ConnectRequest {
    /// A request for `authority` and `path` offering `versions` as strings.
    pub fn new(authority: &str, path: &str, versions: &[Version]) -> Self {
        Self {
            authority: authority.to_string(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
            origin: None,
            protocols: versions.iter().map(|v| v.alpn().to_string()).collect(),
            form: ListForm::Strings,
        }
    }

    /// Read a request from its decoded fields.
    pub fn from_fields(fields: &[(String, String)]) -> Result<Self, RequestError> {
        let mut method = None;
        let mut protocol = None;
        let mut scheme = None;
        let mut authority = None;
        let mut path = None;
        let mut origin = None;
        let mut offered: Option<(Vec<String>, ListForm)> = None;
        for (name, value) in fields {
            let slot = match name.as_str() {
                ":method" => &mut method,
                ":protocol" => &mut protocol,
                ":scheme" => &mut scheme,
                ":authority" => &mut authority,
                ":path" => &mut path,
                "origin" => {
                    origin = Some(value.clone());
                    continue;
                }
                "wt-available-protocols" => {
                    // An unparseable list offers nothing (answered like a missing header); a
                    // repeated header continues the list if it uses the same form.
                    if let Some((items, form)) = parse_list(value) {
                        let entry = offered.get_or_insert_with(|| (Vec::new(), form));
                        if entry.1 == form {
                            entry.0.extend(items);
                            entry.0.truncate(MAX_PROTOCOLS);
                        }
                    }
                    continue;
                }
                other if other.starts_with(':') => {
                    return Err(RequestError::Malformed("unknown pseudo-header"));
                }
                _ => continue,
            };
            if slot.is_some() {
                return Err(RequestError::Malformed("repeated pseudo-header"));
            }
            *slot = Some(value.clone());
        }
        let method = method.ok_or(RequestError::Malformed("no :method"))?;
        if method != "CONNECT" {
            return Err(RequestError::Method(method));
        }
        let protocol = protocol.unwrap_or_default();
        if protocol != PROTOCOL {
            return Err(RequestError::Protocol(protocol));
        }
        if scheme.is_none() {
            return Err(RequestError::Malformed("no :scheme"));
        }
        let authority = authority.ok_or(RequestError::Malformed("no :authority"))?;
        let path = path.ok_or(RequestError::Malformed("no :path"))?;
        let (protocols, form) = offered.unwrap_or_default();
        Ok(Self {
            authority,
            path,
            origin,
            protocols,
            form,
        })
    }

    /// The fields to send (`sec-webtransport-http3-draft02` and `origin` included: older
    /// webtransport-go servers require them).
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            (":method", "CONNECT".to_string()),
            (":scheme", "https".to_string()),
            (":authority", self.authority.clone()),
            (":path", self.path.clone()),
            (":protocol", PROTOCOL.to_string()),
            ("sec-webtransport-http3-draft02", "1".to_string()),
        ];
        let origin = self
            .origin
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.authority));
        fields.push(("origin", origin));
        if !self.protocols.is_empty() {
            fields.push((
                "wt-available-protocols",
                format_list(&self.protocols, self.form),
            ));
        }
        fields
    }

    /// The first offered version that is also in `supported` (the client's preference wins,
    /// as with the reference relay).
    pub fn choose(&self, supported: &[Version]) -> Option<Version> {
        self.protocols
            .iter()
            .filter_map(|p| Version::from_alpn(p.as_bytes()))
            .find(|v| supported.contains(v))
    }
}

/// The server's answer to a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    /// HTTP status; only 2xx opens the session (moq-dev's clients accept only 200).
    pub status: u16,
    /// The chosen subprotocol.
    pub protocol: Option<String>,
    /// How to write it.
    pub form: ListForm,
}

impl ConnectResponse {
    /// The fields to send: the status, `sec-webtransport-http3-draft: draft02` (older Chromium
    /// required it) and `wt-protocol`.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![(":status", self.status.to_string())];
        if (200..300).contains(&self.status) {
            fields.push(("sec-webtransport-http3-draft", "draft02".to_string()));
        }
        if let Some(protocol) = &self.protocol {
            let value = match self.form {
                ListForm::Strings => format!("\"{}\"", escape(protocol)),
                ListForm::Tokens => protocol.clone(),
            };
            fields.push(("wt-protocol", value));
        }
        fields
    }

    /// Read a response from its decoded fields.
    pub fn from_fields(fields: &[(String, String)]) -> Result<Self, RequestError> {
        let mut status = None;
        let mut protocol = None;
        for (name, value) in fields {
            match name.as_str() {
                ":status" => {
                    if status.is_some() {
                        return Err(RequestError::Malformed("repeated :status"));
                    }
                    status = Some(
                        value
                            .parse::<u16>()
                            .map_err(|_| RequestError::Malformed("bad :status"))?,
                    );
                }
                "wt-protocol" => protocol = parse_item(value),
                _ => {}
            }
        }
        Ok(Self {
            status: status.ok_or(RequestError::Malformed("no :status"))?,
            protocol: protocol.map(|(p, _)| p),
            form: ListForm::Strings,
        })
    }
}

/// Most items read from one `wt-available-protocols` value.
const MAX_PROTOCOLS: usize = 32;

/// Parse an sf-list of strings or tokens (parameters ignored); `None` when it is not one, or
/// mixes the two forms, or holds inner lists.
pub fn parse_list(value: &str) -> Option<(Vec<String>, ListForm)> {
    let mut items = Vec::new();
    let mut form = None;
    let mut rest = value.trim_matches([' ', '\t']);
    if rest.is_empty() {
        return Some((items, ListForm::Strings));
    }
    loop {
        let (item, item_form, tail) = bare_item(rest)?;
        if form.is_some_and(|f| f != item_form) || items.len() >= MAX_PROTOCOLS {
            return None;
        }
        form = Some(item_form);
        items.push(item);
        let tail = skip_parameters(tail)?.trim_start_matches([' ', '\t']);
        if tail.is_empty() {
            break;
        }
        rest = tail.strip_prefix(',')?.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return None;
        }
    }
    Some((items, form.unwrap_or_default()))
}

/// Parse an sf-item holding a string or a token (parameters ignored).
pub fn parse_item(value: &str) -> Option<(String, ListForm)> {
    let (item, form, tail) = bare_item(value.trim_matches([' ', '\t']))?;
    skip_parameters(tail)?.is_empty().then_some((item, form))
}

/// One sf-string or sf-token at the start of `input`, and what follows it.
fn bare_item(input: &str) -> Option<(String, ListForm, &str)> {
    if let Some(body) = input.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Some((out, ListForm::Strings, &body[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    _ => return None,
                },
                ' '..='~' => out.push(c),
                _ => return None,
            }
        }
        return None;
    }
    let first = input.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '*') {
        return None;
    }
    let end = input
        .find(|c: char| !(is_tchar(c) || c == ':' || c == '/'))
        .unwrap_or(input.len());
    Some((input[..end].to_string(), ListForm::Tokens, &input[end..]))
}

/// Skip `;key[=value]` parameters.
fn skip_parameters(mut input: &str) -> Option<&str> {
    while let Some(rest) = input.strip_prefix(';') {
        let rest = rest.trim_start_matches(' ');
        let key_end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.*".contains(c)))
            .unwrap_or(rest.len());
        if key_end == 0 {
            return None;
        }
        let rest = &rest[key_end..];
        input = match rest.strip_prefix('=') {
            Some(value) => bare_item(value).map(|(_, _, tail)| tail).or_else(|| {
                // Numbers and booleans: skip their characters.
                let end = value
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "?.-".contains(c)))
                    .unwrap_or(value.len());
                (end > 0).then(|| &value[end..])
            })?,
            None => rest,
        };
    }
    Some(input)
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Write an sf-list in `form`.
pub fn format_list(items: &[String], form: ListForm) -> String {
    items
        .iter()
        .map(|item| match form {
            ListForm::Strings => format!("\"{}\"", escape(item)),
            ListForm::Tokens => item.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lists_of_strings_and_of_tokens() {
        assert_eq!(
            parse_list("\"moq-lite-05\", \"moq-lite-04\""),
            Some((
                vec!["moq-lite-05".into(), "moq-lite-04".into()],
                ListForm::Strings
            ))
        );
        assert_eq!(
            parse_list("moq-lite-03,moq-lite-04;q=1"),
            Some((
                vec!["moq-lite-03".into(), "moq-lite-04".into()],
                ListForm::Tokens
            ))
        );
        assert_eq!(
            parse_list("\"a\\\"b\""),
            Some((vec!["a\"b".into()], ListForm::Strings))
        );
        for bad in ["\"open", "a,", ",a", "(a b)", "\"a\", b", "1abc", "\"\\x\""] {
            assert_eq!(parse_list(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_item("\"moq-lite-05\""),
            Some(("moq-lite-05".into(), ListForm::Strings))
        );
        assert_eq!(
            parse_item("moq-lite-05"),
            Some(("moq-lite-05".into(), ListForm::Tokens))
        );
    }

    #[test]
    fn a_chromium_connect_is_read_and_the_clients_first_supported_version_wins() {
        let request = ConnectRequest::from_fields(&fields(&[
            (":method", "CONNECT"),
            (":scheme", "https"),
            (":authority", "localhost:4443"),
            (":path", "/anon"),
            (":protocol", "webtransport"),
            ("sec-webtransport-http3-draft02", "1"),
            ("origin", "http://127.0.0.1:8080"),
            (
                "wt-available-protocols",
                "\"moq-lite-06\", \"moq-lite-04\", \"moq-lite-05\"",
            ),
        ]))
        .expect("valid");
        assert_eq!(request.path, "/anon");
        assert_eq!(request.origin.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(request.choose(&Version::ALL), Some(Version::Lite04));
        assert_eq!(request.choose(&[Version::Lite03]), None);
        // The answer uses the client's form.
        let response = ConnectResponse {
            status: 200,
            protocol: Some("moq-lite-04".into()),
            form: request.form,
        };
        assert_eq!(
            response.to_fields(),
            vec![
                (":status", "200".to_string()),
                ("sec-webtransport-http3-draft", "draft02".to_string()),
                ("wt-protocol", "\"moq-lite-04\"".to_string()),
            ]
        );
        let tokens = ConnectResponse {
            form: ListForm::Tokens,
            ..response
        };
        assert_eq!(tokens.to_fields()[2].1, "moq-lite-04");
    }

    #[test]
    fn requests_that_are_not_webtransport_connects() {
        let base = [(":scheme", "https"), (":authority", "h"), (":path", "/")];
        let with = |extra: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            ConnectRequest::from_fields(&fields(&all))
        };
        assert_eq!(
            with(&[(":method", "GET")]).map_err(|e| e.status()),
            Err(405)
        );
        assert_eq!(
            with(&[(":method", "CONNECT")]),
            Err(RequestError::Protocol(String::new()))
        );
        assert_eq!(
            with(&[(":method", "CONNECT"), (":protocol", "websocket")]).map_err(|e| e.status()),
            Err(400)
        );
        assert!(matches!(
            with(&[(":method", "CONNECT"), (":method", "CONNECT")]),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            ConnectRequest::from_fields(&fields(&[
                (":method", "CONNECT"),
                (":protocol", "webtransport")
            ])),
            Err(RequestError::Malformed(_))
        ));
        // No wt-available-protocols: nothing offered.
        let plain = with(&[(":method", "CONNECT"), (":protocol", "webtransport")]).expect("ok");
        assert!(plain.protocols.is_empty() && plain.choose(&Version::ALL).is_none());
    }

    #[test]
    fn our_request_round_trips() {
        let request = ConnectRequest::new("relay.example:443", "/room?jwt=x", &Version::ALL);
        let sent: Vec<(String, String)> = request
            .to_fields()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        let back = ConnectRequest::from_fields(&sent).expect("valid");
        assert_eq!(back.protocols, request.protocols);
        assert_eq!(back.path, "/room?jwt=x");
        assert_eq!(back.origin.as_deref(), Some("https://relay.example:443"));
        let response = ConnectResponse::from_fields(&fields(&[
            (":status", "200"),
            ("wt-protocol", "\"moq-lite-05\""),
        ]))
        .expect("valid");
        assert_eq!(response.protocol.as_deref(), Some("moq-lite-05"));
    }
}
