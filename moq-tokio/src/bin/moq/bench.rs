//! `moq bench`: load generator (placeholder filled in below).
use clap::Args;

use crate::common::{Common, Error};

/// `moq bench` flags.
#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// The relay URL.
    #[arg(long)]
    pub(crate) url: String,
}

pub(crate) async fn run(_common: &Common, _args: BenchArgs) -> Result<(), Error> {
    Err("bench is not built yet".into())
}
