//! HTTP/3 and WebTransport as a sans-IO adapter under the MOQ session.

pub mod error_codes;
