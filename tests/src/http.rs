//! A relay's HTTP API seen from a test: one GET over a real TCP connection, and `/metrics`
//! parsed as Prometheus text (by a parser, not by matching strings).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `path` from 127.0.0.1:`port` (`Connection: close`, 20 s read timeout).
pub fn get(port: u16, path: &str) -> Reply {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// One sample of `/metrics`.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// `/metrics` of the relay on `port`, checked for the Prometheus text format (content type,
/// HELP lines, samples that parse).
pub fn metrics(port: u16) -> Vec<Sample> {
    let reply = get(port, "/metrics");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .headers
            .get("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        reply.headers
    );
    let text = String::from_utf8(reply.body).expect("UTF-8 metrics");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the metrics parse as Prometheus text");
    assert!(!scrape.docs.is_empty(), "HELP lines are there");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("unexpected sample kind {other:?}"),
            };
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Sample {
                name: s.metric,
                labels,
                value,
            }
        })
        .collect()
}

/// The sum of the samples named `name` carrying `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}
