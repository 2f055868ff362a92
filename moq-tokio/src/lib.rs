//! MOQ Lite over QUIC on tokio.
//!
//! [`TokioRuntime`] implements `moq_proto::driver::Runtime` (UDP through `quinn-udp` for GSO,
//! GRO and ECN; `tokio::time` timers; `tokio::spawn`), and this crate re-exports the async
//! API so an application needs only this crate:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = moq_tokio::client(moq_tokio::EngineConfig::new(Default::default()))?;
//! let _session = endpoint.connect("moqt://localhost:4443/anon").await?;
//! let mut clock = endpoint.subscribe("clock", "seconds")?;
//! while let Some(mut group) = clock.next_group().await {
//!     while let Some(frame) = group.read_frame().await {
//!         println!("{}", String::from_utf8_lossy(&frame.payload));
//!     }
//! }
//! # Ok(()) }
//! ```

mod runtime;
mod threads;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

pub use moq_proto::codes::{SessionCode, StreamCode};
pub use moq_proto::driver::*;
pub use moq_proto::node::{NodeConfig, PublishError};
pub use moq_proto::origin::{GroupState, OriginConfig};
pub use moq_proto::quic::{
    Certificate, CertificateProblem, DEFAULT_KEEP_ALIVE, EngineConfig, MoqUrl, ThreadSlot,
    TransportKind, UntrustedCertificate, UrlError, Verification,
};
pub use moq_proto::session::SubscribeParams;
pub use moq_proto::wire::{Path, PathError, TrackInfo, Version};
pub use runtime::TokioRuntime;
pub use threads::bind_threads;

/// A client endpoint on an ephemeral port, driven by tokio. Must be called inside a runtime.
pub fn client(config: EngineConfig) -> io::Result<Endpoint> {
    Endpoint::client(Arc::new(TokioRuntime), config)
}

/// An endpoint bound to `addr` (accepting connections if `config` has a certificate).
pub fn bind(addr: SocketAddr, config: EngineConfig) -> io::Result<Endpoint> {
    Endpoint::bind(
        Arc::new(TokioRuntime),
        addr,
        config,
        DriverConfig::default(),
    )
}
