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

/// Logging into the file at `path` (appended to), for `chat`: its
/// terminal is the conversation, so log lines must not land in it. Falls
/// back to standard error (errors only) when the file cannot be opened,
/// and says why.
pub fn init_to_file(format: LogFormat, default_filter: &str, path: &std::path::Path) -> bool {
    let file = match std::fs::OpenOptions::new().create(true).append(true).open(path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!(
                "cannot write the log to {}: {e}; errors only go here",
                path.display()
            );
            init(format, "error");
            return false;
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file));
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    true
}
