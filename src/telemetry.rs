//! Logging setup. What is logged is decided at each call site; the rules
//! are that phone numbers go through `E164::masked` and secrets never appear
//! (they are `SecretString`, which prints `[REDACTED]`).

use tracing_subscriber::EnvFilter;

use crate::config::settings::LogFormat;

/// `default_filter` applies when RUST_LOG is unset.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
