//! `moq`: a MOQ Lite relay, clock, publisher, subscriber, load generator and certificate tool.

mod bench;
mod cert;
mod clock;
mod common;
mod config;
mod media;
mod pubsub;
mod reconnect;
mod relay;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use common::Common;

/// Media over QUIC Lite (moq-lite-03, -04, -05) over raw QUIC.
#[derive(Parser, Debug)]
#[command(name = "moq", disable_version_flag = true, about, long_about = None)]
// A flag given again (the command line after a config file's) replaces the earlier value.
#[command(args_override_self = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    common: Common,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a relay: any number of publishers and subscribers, clustering with other relays.
    Relay(Box<relay::RelayArgs>),
    /// Publish or watch a clock compatible with moq-clock.
    Clock(clock::ClockArgs),
    /// Publish stdin: one frame per line, a new group every N lines.
    Pub(pubsub::PubArgs),
    /// Print a track's frames to stdout, one per line.
    Sub(pubsub::SubArgs),
    /// Print announcements under a prefix as they come and go.
    Announced(pubsub::AnnouncedArgs),
    /// Generate load against a relay and report throughput, latency and loss.
    Bench(bench::BenchArgs),
    /// Write a development certificate and key (PEM) and print its SHA-256.
    Cert(cert::CertArgs),
    /// Publish fragmented MP4 (ffmpeg's CMAF output) as a media broadcast `<moq-watch>` plays.
    PublishMedia(media::PublishMediaArgs),
    /// Write a media broadcast to stdout as fragmented MP4 (for ffplay or ffmpeg).
    WatchMedia(media::WatchMediaArgs),
}

fn main() -> ExitCode {
    let args = match config::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("moq: error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    common::init_logging(&cli.common.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("moq: error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        common::listen_for_signals();
        match cli.command {
            Command::Relay(args) => relay::run(&cli.common, *args).await,
            Command::Clock(args) => clock::run(&cli.common, args).await,
            Command::Pub(args) => pubsub::publish(&cli.common, args).await,
            Command::Sub(args) => pubsub::subscribe(&cli.common, args).await,
            Command::Announced(args) => pubsub::announced(&cli.common, args).await,
            Command::Bench(args) => bench::run(&cli.common, args).await,
            Command::Cert(args) => cert::run(args),
            Command::PublishMedia(args) => media::publish(&cli.common, args).await,
            Command::WatchMedia(args) => media::watch(&cli.common, args).await,
        }
    });
    // Background tasks (drivers, tickers) must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("moq: error: {}", common::redact_token(&err.to_string()));
            ExitCode::FAILURE
        }
    }
}
