//! MOQ Lite over QUIC on smol.
//!
//! [`SmolRuntime`] implements `moq_proto::driver::Runtime` with `async_io::Async<UdpSocket>`
//! (through `quinn-udp` for GSO, GRO and ECN), `async_io::Timer` and `smol::spawn`. tokio is
//! not in this crate's dependency tree. The async API is re-exported:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let endpoint = moq_smol::client(moq_smol::EngineConfig::new(Default::default()))?;
//!     let _session = endpoint.connect("moqt://localhost:4443/anon").await?;
//!     let mut clock = endpoint.subscribe("clock", "seconds")?;
//!     while let Some(mut group) = clock.next_group().await {
//!         while let Some(frame) = group.read_frame().await {
//!             println!("{}", String::from_utf8_lossy(&frame.payload));
//!         }
//!     }
//!     Ok(())
//! })
//! # }
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
pub use runtime::SmolRuntime;
pub use threads::bind_threads;

/// A client endpoint on an ephemeral port, driven on smol's global executor.
pub fn client(config: EngineConfig) -> io::Result<Endpoint> {
    Endpoint::client(Arc::new(SmolRuntime), config)
}

/// An endpoint bound to `addr` (accepting connections if `config` has a certificate).
pub fn bind(addr: SocketAddr, config: EngineConfig) -> io::Result<Endpoint> {
    Endpoint::bind(Arc::new(SmolRuntime), addr, config, DriverConfig::default())
}
