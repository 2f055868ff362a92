//! The relay's HTTP API, served on its HTTP(S) listeners beside `/certificate.sha256` and the
//! WebSocket upgrade:
//!
//! - `GET /health`: `ok`.
//! - `GET /announced/{prefix}` (or `/announced`): the active broadcasts under `prefix`, one per
//!   line, relative to it, no trailing newline (as the reference relay answers).
//! - `GET /fetch/{broadcast}/{track}`: the payloads of the track's latest group (or
//!   `?group=N`), concatenated. An open group is answered once it ends or after
//!   [`HttpApi::fetch_wait`] with what arrived by then (header `x-moq-group-complete: false`);
//!   the group's sequence is in `x-moq-group`.
//! - `GET /metrics`: Prometheus text format.
//!
//! `/announced` and `/fetch` take the same `?jwt=` token as sessions and need subscribe rights
//! on the path when the node has an [authorizer](crate::node::NodeConfig::authorizer);
//! `/health` and `/metrics` are open (put the listener where only operators reach it, or use
//! a separate listener).

use std::fmt::Write as _;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::api::Endpoint;
use crate::auth::{AuthRequest, Grant};
use crate::http1::{Request, Response};
use crate::session::SubscribeParams;
use crate::wire::Path;

/// Largest `/fetch` body served (a bigger group is cut off with a 413).
pub const MAX_FETCH_BYTES: usize = 16 * 1024 * 1024;

/// Options of the HTTP API.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpApi {
    /// Per-broadcast metrics for at most this many broadcasts (the most watched).
    pub metrics_broadcasts: usize,
    /// How long `/fetch` waits for a broadcast's group to arrive or end.
    pub fetch_wait: Duration,
    /// More Prometheus text appended to `/metrics` (e.g. the process's memory and
    /// descriptors, which only the binary can read portably).
    pub extra_metrics: Option<fn() -> String>,
    /// The other endpoints of this process joined with the one serving the API
    /// ([`super::join_threads`]): `/metrics` adds their figures in, so that it describes the
    /// whole relay. (`/announced` and `/fetch` need nothing more: every thread sees every
    /// broadcast through its links.)
    pub threads: Vec<Endpoint>,
}

impl Default for HttpApi {
    fn default() -> Self {
        Self {
            metrics_broadcasts: 50,
            fetch_wait: Duration::from_secs(5),
            extra_metrics: None,
            threads: Vec::new(),
        }
    }
}

/// Whether `path` is one of the API's routes.
pub(super) fn is_api_route(path: &str) -> bool {
    path == "/health"
        || path == "/metrics"
        || path == "/announced"
        || path.starts_with("/announced/")
        || path.starts_with("/fetch/")
}

/// Answer an API request.
pub(super) async fn answer(endpoint: &Endpoint, api: &HttpApi, request: &Request) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        return Response::text(405, "method not allowed\n");
    }
    let path = request.path();
    let query = request.target.split_once('?').map(|(_, q)| q);
    if path == "/health" {
        return Response::text(200, "ok\n");
    }
    if path == "/metrics" {
        let mut response = Response::text(200, metrics_text(endpoint, api));
        response.headers = vec![(
            "content-type".into(),
            "text/plain; version=0.0.4; charset=utf-8".into(),
        )];
        return response;
    }
    if let Some(rest) = path.strip_prefix("/announced") {
        return announced(endpoint, rest, query);
    }
    if let Some(rest) = path.strip_prefix("/fetch/") {
        return fetch(endpoint, api, rest, query).await;
    }
    Response::text(404, "not found\n")
}

/// The grant for an HTTP request at `path` (`Ok(None)`: no authorizer, everything allowed).
fn authorize(
    endpoint: &Endpoint,
    path: &Path,
    query: Option<&str>,
) -> Result<Option<Grant>, Response> {
    endpoint.with_node(|node, now| {
        let Some(authorizer) = node.authorizer() else {
            return Ok(None);
        };
        authorizer
            .authorize(&AuthRequest {
                path,
                query,
                now_unix: node.unix_time(now),
            })
            .map(Some)
            .map_err(|err| Response::text(401, format!("unauthorized: {err}\n")))
    })
}

fn decode_path(raw: &str) -> Result<Path, Response> {
    let decoded = percent_decode(raw).ok_or_else(|| Response::text(400, "bad path encoding\n"))?;
    Path::new(&decoded).map_err(|e| Response::text(400, format!("bad path: {e}\n")))
}

fn announced(endpoint: &Endpoint, rest: &str, query: Option<&str>) -> Response {
    let prefix = match decode_path(rest) {
        Ok(p) => p,
        Err(response) => return response,
    };
    let grant = match authorize(endpoint, &prefix, query) {
        Ok(grant) => grant,
        Err(response) => return response,
    };
    if grant.as_ref().is_some_and(|g| !g.subscribes_under(&prefix)) {
        return Response::text(401, "unauthorized: no subscribe rights here\n");
    }
    let mut paths: Vec<String> = endpoint.with_node(|node, _| {
        node.origin()
            .active_under(&prefix)
            .filter(|b| grant.as_ref().is_none_or(|g| g.may_subscribe(b.path())))
            .filter_map(|b| b.path().strip_prefix(&prefix))
            .map(|p| p.as_str().to_string())
            .collect()
    });
    paths.sort();
    Response::text(200, paths.join("\n"))
}

async fn fetch(endpoint: &Endpoint, api: &HttpApi, rest: &str, query: Option<&str>) -> Response {
    let Some((broadcast, track)) = rest.rsplit_once('/') else {
        return Response::text(400, "use /fetch/{broadcast}/{track}\n");
    };
    let broadcast = match decode_path(broadcast) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => return Response::text(400, "use /fetch/{broadcast}/{track}\n"),
        Err(response) => return response,
    };
    let Some(track) = percent_decode(track).filter(|t| !t.is_empty()) else {
        return Response::text(400, "bad track name\n");
    };
    match authorize(endpoint, &broadcast, query) {
        Ok(Some(grant)) if !grant.may_subscribe(&broadcast) => {
            return Response::text(
                401,
                "unauthorized: no subscribe rights for this broadcast\n",
            );
        }
        Ok(_) => {}
        Err(response) => return response,
    }
    let group = match query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("group="))
    {
        None | Some("latest") => None,
        Some(n) => match n.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return Response::text(400, "group must be a number or `latest`\n"),
        },
    };
    let known = endpoint.with_node(|node, _| {
        node.origin()
            .find(&broadcast)
            .and_then(|b| node.origin().broadcast(b))
            .is_some_and(|b| b.is_active())
    });
    if !known {
        return Response::text(404, "no such broadcast\n");
    }
    let params = SubscribeParams {
        start: group,
        end: group,
        ..SubscribeParams::default()
    };
    let Ok(mut subscription) = endpoint.subscribe_with(broadcast.as_str(), &track, params) else {
        return Response::text(400, "bad broadcast path\n");
    };
    let deadline = endpoint.runtime_now() + api.fetch_wait;
    let Some(Some(mut reader)) = endpoint
        .until(deadline, Box::pin(subscription.next_group()))
        .await
    else {
        return match subscription.end() {
            Some(end) => Response::text(404, format!("no group: {end}\n")),
            None => Response::text(504, "no group arrived in time\n"),
        };
    };
    let mut body = BytesMut::new();
    let mut complete = false;
    loop {
        match endpoint
            .until(deadline, Box::pin(reader.read_frame()))
            .await
        {
            Some(Some(frame)) => {
                if body.len() + frame.payload.len() > MAX_FETCH_BYTES {
                    return Response::text(413, "group too large to fetch\n");
                }
                body.extend_from_slice(&frame.payload);
            }
            Some(None) => {
                complete = true;
                break;
            }
            None => break,
        }
    }
    let mut response = Response::text(200, Bytes::from(body));
    response.headers = vec![
        ("content-type".into(), "application/octet-stream".into()),
        ("x-moq-group".into(), reader.seq().to_string()),
        ("x-moq-group-complete".into(), complete.to_string()),
    ];
    response
}

/// `%XX` escapes decoded; `None` for a bad escape or non-UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What one endpoint's node and connections hold, for `/metrics`.
struct Snapshot {
    /// Sessions by (version, transport), in-process links left out.
    sessions: std::collections::BTreeMap<(String, String), u64>,
    stats: crate::node::NodeStats,
    gauges: crate::node::NodeGauges,
    broadcasts: Vec<crate::node::BroadcastMetrics>,
    buffered: u64,
}

fn snapshot(endpoint: &Endpoint, broadcasts: usize) -> Snapshot {
    endpoint.with_engine(|engine, _| {
        let mut sessions: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for conn in engine.connections() {
            let (Some(version), Some(transport)) =
                (engine.version_of(conn), engine.transport_of(conn))
            else {
                continue;
            };
            if transport == crate::quic::TransportKind::InProcess {
                continue;
            }
            *sessions
                .entry((version.to_string(), transport.to_string()))
                .or_default() += 1;
        }
        let buffered = engine.buffered_bytes() as u64;
        let node = engine.node();
        Snapshot {
            sessions,
            stats: node.stats(),
            gauges: node.gauges(),
            broadcasts: node.broadcast_metrics(broadcasts),
            buffered,
        }
    })
}

impl Snapshot {
    /// Add another thread's figures. Every thread holds every broadcast (its links announce
    /// them) and caches share their payloads, so the origin's figures are the largest
    /// thread's, not a sum; what each thread serves adds up (links are left out).
    fn merge(&mut self, other: Snapshot) {
        for (key, n) in other.sessions {
            *self.sessions.entry(key).or_default() += n;
        }
        let (s, o) = (&mut self.stats, other.stats);
        s.auth_refused_sessions += o.auth_refused_sessions;
        s.auth_refused_requests += o.auth_refused_requests;
        s.auth_expired_sessions += o.auth_expired_sessions;
        s.frames_in += o.frames_in;
        s.bytes_in += o.bytes_in;
        s.frames_out += o.frames_out;
        s.bytes_out += o.bytes_out;
        crate::node::add_delivery(&mut s.delivery, o.delivery);
        let (g, o) = (&mut self.gauges, other.gauges);
        g.sessions += o.sessions;
        g.subscriptions += o.subscriptions;
        g.local_subscriptions += o.local_subscriptions;
        g.announce_requests += o.announce_requests;
        g.upstream_subscriptions += o.upstream_subscriptions;
        g.broadcasts = g.broadcasts.max(o.broadcasts);
        g.tracks = g.tracks.max(o.tracks);
        g.groups = g.groups.max(o.groups);
        g.cache_bytes = g.cache_bytes.max(o.cache_bytes);
        self.buffered += other.buffered;
        for b in other.broadcasts {
            match self.broadcasts.iter_mut().find(|m| m.path == b.path) {
                Some(m) => {
                    m.viewers += b.viewers;
                    m.frames_out += b.frames_out;
                    m.bytes_out += b.bytes_out;
                    m.send_backlog += b.send_backlog;
                    m.groups_skipped += b.groups_skipped;
                }
                None => self.broadcasts.push(b),
            }
        }
    }
}

/// The Prometheus text exposition of the endpoint's node and connections, with those of
/// the other threads of the process ([`HttpApi::threads`]) added in.
fn metrics_text(endpoint: &Endpoint, api: &HttpApi) -> String {
    let joined = !api.threads.is_empty();
    // With several threads the busiest broadcasts are known only once all are added up.
    let limit = if joined {
        usize::MAX
    } else {
        api.metrics_broadcasts
    };
    let mut total = snapshot(endpoint, limit);
    let mut handed_over = endpoint.handed_over();
    for other in &api.threads {
        total.merge(snapshot(other, limit));
        handed_over += other.handed_over();
    }
    if joined {
        total.broadcasts.sort_by(|a, b| {
            b.viewers
                .cmp(&a.viewers)
                .then(b.bytes_out.cmp(&a.bytes_out))
                .then(a.path.as_str().cmp(b.path.as_str()))
        });
        total.broadcasts.truncate(api.metrics_broadcasts);
    }
    let Snapshot {
        sessions,
        stats,
        gauges,
        broadcasts,
        buffered,
    } = total;
    {
        let mut m = Metrics::default();
        m.family(
            "moq_sessions",
            "gauge",
            "Sessions by version and transport.",
        );
        for ((version, transport), n) in &sessions {
            m.sample(
                "moq_sessions",
                &[("version", version), ("transport", transport)],
                *n,
            );
        }
        let gauge = |m: &mut Metrics, name: &str, help: &str, value: u64| {
            m.family(name, "gauge", help);
            m.sample(name, &[], value);
        };
        let counter = |m: &mut Metrics, name: &str, help: &str, value: u64| {
            m.family(name, "counter", help);
            m.sample(name, &[], value);
        };
        gauge(
            &mut m,
            "moq_subscriptions",
            "Subscriptions served to peers.",
            gauges.subscriptions as u64,
        );
        gauge(
            &mut m,
            "moq_upstream_subscriptions",
            "Subscriptions toward publishers or other relays.",
            gauges.upstream_subscriptions as u64,
        );
        gauge(
            &mut m,
            "moq_announce_requests",
            "Announce requests (prefix watches) from peers.",
            gauges.announce_requests as u64,
        );
        gauge(
            &mut m,
            "moq_broadcasts",
            "Active broadcasts.",
            gauges.broadcasts as u64,
        );
        gauge(&mut m, "moq_tracks", "Tracks held.", gauges.tracks as u64);
        gauge(&mut m, "moq_groups", "Groups cached.", gauges.groups as u64);
        gauge(
            &mut m,
            "moq_cache_bytes",
            "Payload bytes cached.",
            gauges.cache_bytes,
        );
        counter(
            &mut m,
            "moq_frames_in_total",
            "Frames received from publishers.",
            stats.frames_in,
        );
        counter(
            &mut m,
            "moq_bytes_in_total",
            "Payload bytes received from publishers.",
            stats.bytes_in,
        );
        counter(
            &mut m,
            "moq_frames_out_total",
            "Frames delivered to subscribers.",
            stats.frames_out,
        );
        counter(
            &mut m,
            "moq_bytes_out_total",
            "Payload bytes delivered to subscribers.",
            stats.bytes_out,
        );
        m.family(
            "moq_groups_dropped_total",
            "counter",
            "Groups given up toward subscribers, by reason.",
        );
        for (reason, n) in [
            ("expired", stats.delivery.groups_expired),
            ("backlog", stats.delivery.groups_shed),
            ("reset", stats.delivery.groups_stopped),
        ] {
            m.sample("moq_groups_dropped_total", &[("reason", reason)], n);
        }
        m.family(
            "moq_auth_refused_total",
            "counter",
            "Refusals by the authorizer.",
        );
        m.sample(
            "moq_auth_refused_total",
            &[("what", "session")],
            stats.auth_refused_sessions,
        );
        m.sample(
            "moq_auth_refused_total",
            &[("what", "request")],
            stats.auth_refused_requests,
        );
        counter(
            &mut m,
            "moq_auth_expired_total",
            "Sessions closed when their token expired.",
            stats.auth_expired_sessions,
        );
        gauge(
            &mut m,
            "moq_buffered_bytes",
            "Bytes waiting for the transport.",
            buffered,
        );
        gauge(
            &mut m,
            "moq_threads",
            "Endpoints (threads) serving the relay's port.",
            1 + api.threads.len() as u64,
        );
        counter(
            &mut m,
            "moq_handed_over_datagrams_total",
            "Datagrams received on one thread's socket for another thread's connection.",
            handed_over,
        );
        for (name, kind, help) in [
            (
                "moq_broadcast_viewers",
                "gauge",
                "Subscriptions to the broadcast's tracks.",
            ),
            (
                "moq_broadcast_bytes_out_total",
                "counter",
                "Payload bytes delivered from the broadcast.",
            ),
            (
                "moq_broadcast_send_backlog_bytes",
                "gauge",
                "Transport backlog of the sessions watching the broadcast.",
            ),
            (
                "moq_broadcast_groups_skipped_total",
                "counter",
                "Groups expired or shed by the sessions watching the broadcast.",
            ),
        ] {
            m.family(name, kind, help);
            for b in &broadcasts {
                let value = match name {
                    "moq_broadcast_viewers" => b.viewers as u64,
                    "moq_broadcast_bytes_out_total" => b.bytes_out,
                    "moq_broadcast_send_backlog_bytes" => b.send_backlog,
                    _ => b.groups_skipped,
                };
                m.sample(name, &[("broadcast", b.path.as_str())], value);
            }
        }
        if let Some(extra) = api.extra_metrics {
            m.out.push_str(&extra());
        }
        m.out
    }
}

#[derive(Default)]
struct Metrics {
    out: String,
}

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_escapes() {
        assert!(is_api_route("/health"));
        assert!(is_api_route("/announced"));
        assert!(is_api_route("/announced/a/b"));
        assert!(is_api_route("/fetch/a/b"));
        assert!(!is_api_route("/certificate.sha256"));
        assert!(!is_api_route("/announcedx"));
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%ff"), None);
        let mut m = Metrics::default();
        m.sample("x", &[("l", "a\"b\\c\nd")], 3);
        assert_eq!(m.out, "x{l=\"a\\\"b\\\\c\\nd\"} 3\n");
    }
}
