//! `moq cert`: write a development certificate and key and print the SHA-256 browsers pin.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;
use moq_proto::quic::tls;
use moq_tokio::Certificate;

use crate::common::Error;

/// `moq cert` flags.
#[derive(Args, Debug)]
pub(crate) struct CertArgs {
    /// Comma-separated hostnames (subject alternative names).
    #[arg(long, value_delimiter = ',', default_value = "localhost")]
    pub(crate) hostnames: Vec<String>,

    /// Where to write the certificate.
    #[arg(long, default_value = "cert.pem")]
    pub(crate) cert: PathBuf,

    /// Where to write the private key.
    #[arg(long, default_value = "key.pem")]
    pub(crate) key: PathBuf,
}

pub(crate) fn run(args: CertArgs) -> Result<(), Error> {
    let certificate = Certificate::generate(&args.hostnames, SystemTime::now())?;
    let (chain, key) = certificate.to_pem();
    std::fs::write(&args.cert, chain).map_err(|e| format!("{}: {e}", args.cert.display()))?;
    write_private(&args.key, key.as_bytes()).map_err(|e| format!("{}: {e}", args.key.display()))?;
    println!("{}", tls::hex(&certificate.sha256()));
    Ok(())
}

/// Write a key readable by its owner only.
fn write_private(path: &PathBuf, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(data)
}
