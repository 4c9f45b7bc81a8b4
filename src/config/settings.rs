//! Process settings from the environment (and `.env`, loaded by the binary).
//!
//! Parsed once into types; a bad value stops start-up with the variable's
//! name. Secrets are `SecretString`, whose `Debug` prints `[REDACTED]`.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::domain::phone::E164;

pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-sonnet-4-6";

#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    /// The origin Twilio calls; signatures are computed over it.
    pub public_base_url: Url,
    pub database_url: String,
    /// Most connections one process opens to a Postgres server
    /// (`DATABASE_MAX_CONNECTIONS`, default 16): instances times this must
    /// stay under the server's `max_connections`.
    pub database_max_connections: u32,
    pub business_config: PathBuf,
    pub log_format: LogFormat,
    pub twilio: TwilioSettings,
    pub anthropic: Option<AnthropicSettings>,
    pub worker: WorkerSettings,
    pub jobs: RunnerSettings,
    pub google: GoogleSettings,
    pub email: EmailSettings,
    /// What the console's cost estimate charges per token.
    pub model_prices: ModelPrices,
    pub webchat: WebChatSettings,
}

/// US dollars per million tokens, for the console's cost estimate: the
/// published list prices of the configured model unless `MODEL_PRICE_*`
/// says otherwise. An estimate: a contract's own rates or a price change
/// are the operator's to set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrices {
    pub input: f64,
    pub output: f64,
    /// Writing a five-minute cache entry: 1.25 times input.
    pub cache_write: f64,
    /// Reading from the cache: a tenth of input.
    pub cache_read: f64,
}

impl ModelPrices {
    /// List prices by model family; an unknown model is priced as Sonnet.
    pub fn for_model(model: &str) -> Self {
        let m = model.to_ascii_lowercase();
        let (input, output) = if m.contains("opus-4-5") || m.contains("opus-4-6") || m.contains("opus-5") {
            (5.0, 25.0)
        } else if m.contains("opus") {
            (15.0, 75.0)
        } else if m.contains("haiku-4") {
            (1.0, 5.0)
        } else if m.contains("haiku") {
            (0.8, 4.0)
        } else {
            (3.0, 15.0)
        };
        Self {
            input,
            output,
            cache_write: input * 1.25,
            cache_read: input / 10.0,
        }
    }

    /// Dollars for `tokens`.
    pub fn cost(&self, tokens: &crate::store::TokenCounts) -> f64 {
        let per = |n: u64, price: f64| n as f64 * price / 1_000_000.0;
        per(tokens.input, self.input)
            + per(tokens.cache_read, self.cache_read)
            + per(tokens.cache_write, self.cache_write)
            + per(tokens.output, self.output)
    }
}

impl Default for ModelPrices {
    fn default() -> Self {
        Self::for_model(DEFAULT_ANTHROPIC_MODEL)
    }
}

/// The web chat's pace (`/api/chat/messages`).
#[derive(Debug, Clone)]
pub struct WebChatSettings {
    /// How long a visitor's POST waits for the turn's reply before it
    /// answers with none and the widget polls (`WEBCHAT_REPLY_WAIT_MS`).
    pub reply_wait: Duration,
    /// Requests a minute from one client address
    /// (`WEBCHAT_RATE_PER_ADDRESS`).
    pub per_address_per_minute: u32,
    /// Messages a minute in one session (`WEBCHAT_RATE_PER_SESSION`). A
    /// whole guided booking, answered as fast as a person can tap numbers
    /// (about 20 messages with a phone check on the longest flow), fits in
    /// one minute; a script sending more is refused.
    pub per_session_per_minute: u32,
}

impl Default for WebChatSettings {
    fn default() -> Self {
        Self {
            reply_wait: Duration::from_secs(20),
            per_address_per_minute: 60,
            per_session_per_minute: 30,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// The verified SES sender. With it and AWS_REGION set, email goes
    /// through SES (credentials from the standard AWS chain); otherwise each
    /// email is written to `outbox_dir` as a .eml file.
    pub from: Option<String>,
    pub ses: bool,
    pub outbox_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct GoogleSettings {
    /// A service account key file. Without it, textdesk's own bookings
    /// table is the calendar.
    pub credentials: Option<PathBuf>,
    /// Replaces `https://www.googleapis.com`, for tests and local fakes.
    pub base_url: Option<Url>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct TwilioSettings {
    pub account_sid: Option<String>,
    pub auth_token: Option<SecretString>,
    /// The number of a single-file business that states no `[business]
    /// phone`; every other text goes out from the number the customer wrote to.
    pub from_number: Option<E164>,
    pub api_base_url: Url,
    pub skip_signature_validation: bool,
    pub timeout: Duration,
}

/// What outbound sending needs: both or none. (Which number a text goes
/// out from is the conversation's, not the account's.)
#[derive(Debug, Clone)]
pub struct TwilioCredentials {
    pub account_sid: String,
    pub auth_token: SecretString,
}

impl TwilioSettings {
    pub fn credentials(&self) -> Option<TwilioCredentials> {
        Some(TwilioCredentials {
            account_sid: self.account_sid.clone()?,
            auth_token: self.auth_token.clone()?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct AnthropicSettings {
    pub api_key: SecretString,
    pub model: String,
    pub base_url: Url,
    /// Retries after the first attempt, for 429, 5xx and 529.
    pub max_retries: u32,
    /// First backoff when the server gives no retry-after; doubles each time.
    pub retry_base: Duration,
    /// Longest we honour a retry-after for before giving up on the turn.
    pub max_retry_after: Duration,
    pub timeout: Duration,
    pub max_tokens: u32,
    /// Bound on tool_use → tool_result rounds in one turn.
    pub max_tool_rounds: usize,
}

/// A claim's lease when `LEASE_SECS` is not set: an instance that dies
/// has its conversations and jobs taken over within this (plus a poll).
pub const DEFAULT_LEASE_SECS: u64 = 15;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Conversations processed at once (each one strictly serially).
    pub concurrency: usize,
    /// Safety-net poll; new texts wake the worker immediately.
    pub poll_interval: Duration,
    /// How long a claim (a conversation's, a job's) stays ours without a
    /// renewal (`LEASE_SECS`, 15 s by default). A heartbeat renews it every
    /// third of this while the work runs, so it bounds how long the work of
    /// an instance that died waits to be taken over, not how long a turn
    /// may take.
    pub lease: Duration,
    /// How long a turn may take at most (the model's deadline is a third
    /// of it, the engine's backstop half), whatever the lease.
    pub turn_budget: Duration,
    /// On SIGTERM, how long turns and jobs in flight may take to finish
    /// (`SHUTDOWN_GRACE_SECS`, 20 s by default) before they are stopped
    /// and their leases released.
    pub shutdown_grace: Duration,
}

/// The job runner's pace. Here, beside `WorkerSettings`, so configuration
/// never depends on the runner it configures.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub poll_interval: Duration,
    pub batch: usize,
    /// Jobs of a batch run at once, at most (jobs whose order matters run
    /// one after another whatever this is).
    pub concurrency: usize,
    pub lease: Duration,
    /// First retry delay; doubles each attempt, up to an hour.
    pub retry_base: Duration,
    /// `PUBLIC_BASE_URL` without its trailing slash: the owner's alert texts
    /// link to the conversation in the console under it.
    pub console_base_url: Option<String>,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            batch: 100,
            concurrency: 8,
            lease: Duration::from_secs(DEFAULT_LEASE_SECS),
            retry_base: Duration::from_secs(30),
            console_base_url: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("environment variable {var}: {message}")]
pub struct SettingsError {
    pub var: &'static str,
    pub message: String,
}

fn err(var: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        var,
        message: message.into(),
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process
    /// environment. Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |k: &str| lookup(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let parse_num = |var: &'static str, default: u64| -> Result<u64, SettingsError> {
            match get(var) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| err(var, format!("`{v}` is not a whole number"))),
            }
        };
        // Bounded, so a typo cannot become a zero timeout (every call
        // fails) or a retry count truncated to something else.
        let parse_in = |var: &'static str, default: u64, min: u64, max: u64| -> Result<u64, SettingsError> {
            let n = parse_num(var, default)?;
            if !(min..=max).contains(&n) {
                return Err(err(
                    var,
                    format!("expected a whole number from {min} to {max}, got {n}"),
                ));
            }
            Ok(n)
        };
        let parse_url = |var: &'static str, default: &str| -> Result<Url, SettingsError> {
            let raw = get(var).unwrap_or_else(|| default.to_string());
            Url::parse(&raw).map_err(|e| err(var, format!("`{raw}` is not a URL: {e}")))
        };
        let parse_bool = |var: &'static str| -> Result<bool, SettingsError> {
            match get(var).as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("false") | Some("0") | Some("no") => Ok(false),
                Some("true") | Some("1") | Some("yes") => Ok(true),
                Some(other) => Err(err(var, format!("`{other}` is not true or false"))),
            }
        };

        let host = get("HOST").unwrap_or_else(|| "127.0.0.1".into());
        let port = parse_num("PORT", 8080)?;
        let port = u16::try_from(port).map_err(|_| err("PORT", "must be at most 65535"))?;
        let public_base_url = parse_url("PUBLIC_BASE_URL", &format!("http://localhost:{port}"))?;

        let skip_signature_validation = parse_bool("TWILIO_SKIP_SIGNATURE_VALIDATION")?;
        if skip_signature_validation && !is_localhost(&public_base_url) {
            return Err(err(
                "TWILIO_SKIP_SIGNATURE_VALIDATION",
                format!(
                    "refused: signatures may only be skipped when PUBLIC_BASE_URL is a localhost \
                     origin, and it is {public_base_url}"
                ),
            ));
        }
        // An unsigned webhook on an exposed port lets anyone make us text
        // anyone, so the listening address must be loopback too.
        let loopback_host = matches!(host.as_str(), "localhost" | "::1" | "[::1]")
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        if skip_signature_validation && !loopback_host {
            return Err(err(
                "TWILIO_SKIP_SIGNATURE_VALIDATION",
                format!(
                    "refused: signatures may only be skipped when HOST is a loopback address, and it is {host}"
                ),
            ));
        }
        let from_number = match get("TWILIO_FROM_NUMBER") {
            None => None,
            Some(v) => Some(E164::parse(&v).map_err(|e| err("TWILIO_FROM_NUMBER", e.to_string()))?),
        };
        let twilio = TwilioSettings {
            account_sid: get("TWILIO_ACCOUNT_SID"),
            auth_token: get("TWILIO_AUTH_TOKEN").map(SecretString::from),
            from_number,
            api_base_url: parse_url("TWILIO_API_BASE_URL", "https://api.twilio.com")?,
            skip_signature_validation,
            timeout: Duration::from_secs(parse_in("TWILIO_TIMEOUT_SECS", 10, 1, 300)?),
        };
        // A token alone is fine (it verifies webhooks); an account SID
        // without its token cannot send.
        if twilio.account_sid.is_some() && twilio.auth_token.is_none() {
            return Err(err(
                "TWILIO_AUTH_TOKEN",
                "must be set: sending texts through Twilio needs TWILIO_ACCOUNT_SID and \
                 TWILIO_AUTH_TOKEN together",
            ));
        }

        let anthropic = match get("ANTHROPIC_API_KEY") {
            None => None,
            Some(key) => Some(AnthropicSettings {
                api_key: SecretString::from(key),
                model: get("ANTHROPIC_MODEL").unwrap_or_else(|| DEFAULT_ANTHROPIC_MODEL.into()),
                base_url: parse_url("ANTHROPIC_BASE_URL", "https://api.anthropic.com")?,
                max_retries: parse_in("ANTHROPIC_MAX_RETRIES", 3, 0, 10)? as u32,
                retry_base: Duration::from_millis(parse_in("ANTHROPIC_RETRY_BASE_MS", 500, 1, 60_000)?),
                max_retry_after: Duration::from_secs(20),
                timeout: Duration::from_secs(parse_in("ANTHROPIC_TIMEOUT_SECS", 60, 1, 600)?),
                max_tokens: parse_in("ANTHROPIC_MAX_TOKENS", 1024, 1, 64_000)? as u32,
                max_tool_rounds: 8,
            }),
        };

        let list =
            ModelPrices::for_model(&get("ANTHROPIC_MODEL").unwrap_or_else(|| DEFAULT_ANTHROPIC_MODEL.into()));
        let parse_price = |var: &'static str, default: f64| -> Result<f64, SettingsError> {
            match get(var) {
                None => Ok(default),
                Some(v) => match v.parse::<f64>() {
                    Ok(p) if p.is_finite() && (0.0..=1000.0).contains(&p) => Ok(p),
                    _ => Err(err(
                        var,
                        format!("expected dollars per million tokens from 0 to 1000, got `{v}`"),
                    )),
                },
            }
        };
        let input_price = parse_price("MODEL_PRICE_INPUT_PER_MTOK", list.input)?;
        let model_prices = ModelPrices {
            input: input_price,
            output: parse_price("MODEL_PRICE_OUTPUT_PER_MTOK", list.output)?,
            cache_write: parse_price("MODEL_PRICE_CACHE_WRITE_PER_MTOK", input_price * 1.25)?,
            cache_read: parse_price("MODEL_PRICE_CACHE_READ_PER_MTOK", input_price / 10.0)?,
        };

        let log_format = match get("LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(err("LOG_FORMAT", format!("`{other}` is not pretty or json"))),
        };
        let concurrency = parse_in("WORKER_CONCURRENCY", 8, 1, 256)? as usize;
        // At least 3 s, so a renewal every third of it is not a busy loop;
        // at most 5 minutes, the lease of the single-process design.
        let lease = Duration::from_secs(parse_in("LEASE_SECS", DEFAULT_LEASE_SECS, 3, 300)?);
        let shutdown_grace = Duration::from_secs(parse_in("SHUTDOWN_GRACE_SECS", 20, 0, 600)?);

        let database_max_connections = parse_in("DATABASE_MAX_CONNECTIONS", 16, 1, 1000)? as u32;
        Ok(Settings {
            host,
            port,
            public_base_url,
            database_url: get("DATABASE_URL").unwrap_or_else(|| "sqlite://textdesk.db".into()),
            database_max_connections,
            business_config: PathBuf::from(get("BUSINESS_CONFIG").unwrap_or_else(|| "business.toml".into())),
            log_format,
            twilio,
            anthropic,
            jobs: RunnerSettings {
                lease,
                // Each job in flight holds a connection for a statement at
                // a time: half the pool leaves the rest to turns and
                // webhooks.
                concurrency: (database_max_connections / 2).clamp(1, 8) as usize,
                ..RunnerSettings::default()
            },
            email: EmailSettings {
                ses: get("EMAIL_FROM").is_some() && get("AWS_REGION").is_some(),
                from: get("EMAIL_FROM"),
                outbox_dir: PathBuf::from(get("OUTBOX_DIR").unwrap_or_else(|| "outbox".into())),
            },
            google: GoogleSettings {
                credentials: get("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
                base_url: match get("GOOGLE_CALENDAR_BASE_URL") {
                    None => None,
                    Some(_) => Some(parse_url("GOOGLE_CALENDAR_BASE_URL", "")?),
                },
                timeout: Duration::from_secs(parse_in("GOOGLE_TIMEOUT_SECS", 10, 1, 300)?),
            },
            webchat: WebChatSettings {
                reply_wait: Duration::from_millis(parse_in("WEBCHAT_REPLY_WAIT_MS", 20_000, 0, 25_000)?),
                per_address_per_minute: parse_in("WEBCHAT_RATE_PER_ADDRESS", 60, 1, 10_000)? as u32,
                per_session_per_minute: parse_in("WEBCHAT_RATE_PER_SESSION", 30, 1, 1_000)? as u32,
            },
            worker: WorkerSettings {
                concurrency,
                poll_interval: Duration::from_secs(2),
                lease,
                turn_budget: Duration::from_secs(300),
                shutdown_grace,
            },
            model_prices,
        })
    }
}

pub fn is_localhost(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_accounts() {
        let s = settings(&[]).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 8080));
        assert_eq!(s.database_url, "sqlite://textdesk.db");
        assert_eq!(s.public_base_url.as_str(), "http://localhost:8080/");
        assert!(s.anthropic.is_none());
        assert!(s.twilio.credentials().is_none());
    }

    #[test]
    fn model_prices_default_to_the_models_list_prices_and_are_bounded() {
        let sonnet = settings(&[]).unwrap().model_prices;
        assert_eq!(
            (sonnet.input, sonnet.output, sonnet.cache_write, sonnet.cache_read),
            (3.0, 15.0, 3.75, 0.3)
        );
        let haiku = settings(&[("ANTHROPIC_MODEL", "claude-haiku-4-5")])
            .unwrap()
            .model_prices;
        assert_eq!((haiku.input, haiku.output), (1.0, 5.0));
        let set = settings(&[
            ("MODEL_PRICE_INPUT_PER_MTOK", "2"),
            ("MODEL_PRICE_CACHE_READ_PER_MTOK", "0.1"),
        ])
        .unwrap()
        .model_prices;
        assert_eq!(
            (set.input, set.output, set.cache_write, set.cache_read),
            (2.0, 15.0, 2.5, 0.1)
        );
        let tokens = crate::store::TokenCounts {
            input: 1_000_000,
            cache_read: 1_000_000,
            cache_write: 0,
            output: 0,
        };
        assert!((set.cost(&tokens) - 2.1).abs() < 1e-9);
        for bad in ["-1", "abc", "1001", "NaN"] {
            let e = settings(&[("MODEL_PRICE_OUTPUT_PER_MTOK", bad)]).unwrap_err();
            assert_eq!(e.var, "MODEL_PRICE_OUTPUT_PER_MTOK", "{bad}");
        }
    }

    #[test]
    fn leases_are_short_and_bounded_and_the_grace_is_configurable() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.worker.lease, Duration::from_secs(15));
        assert_eq!(s.jobs.lease, Duration::from_secs(15));
        assert_eq!(s.worker.shutdown_grace, Duration::from_secs(20));
        assert_eq!(s.worker.turn_budget, Duration::from_secs(300));
        let s = settings(&[("LEASE_SECS", "6"), ("SHUTDOWN_GRACE_SECS", "0")]).unwrap();
        assert_eq!(
            (s.worker.lease, s.jobs.lease),
            (Duration::from_secs(6), Duration::from_secs(6))
        );
        assert_eq!(s.worker.shutdown_grace, Duration::ZERO);
        assert_eq!(settings(&[("LEASE_SECS", "2")]).unwrap_err().var, "LEASE_SECS");
        assert_eq!(
            settings(&[("SHUTDOWN_GRACE_SECS", "x")]).unwrap_err().var,
            "SHUTDOWN_GRACE_SECS"
        );
    }

    #[test]
    fn anthropic_defaults() {
        let s = settings(&[("ANTHROPIC_API_KEY", "sk-test")]).unwrap();
        let a = s.anthropic.unwrap();
        assert_eq!(a.model, "claude-sonnet-4-6");
        assert_eq!(a.base_url.as_str(), "https://api.anthropic.com/");
        assert_eq!(a.api_key.expose_secret(), "sk-test");
    }

    #[test]
    fn skipping_signatures_is_refused_off_localhost() {
        let e = settings(&[
            ("TWILIO_SKIP_SIGNATURE_VALIDATION", "true"),
            ("PUBLIC_BASE_URL", "https://desk.example.com"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "TWILIO_SKIP_SIGNATURE_VALIDATION");
        for local in [
            "http://localhost:8080",
            "http://127.0.0.1:3000",
            "http://[::1]:8080",
        ] {
            let s = settings(&[
                ("TWILIO_SKIP_SIGNATURE_VALIDATION", "true"),
                ("PUBLIC_BASE_URL", local),
            ])
            .unwrap();
            assert!(s.twilio.skip_signature_validation, "{local}");
        }
    }

    #[test]
    fn partial_twilio_credentials_name_the_missing_one() {
        let e = settings(&[("TWILIO_ACCOUNT_SID", "AC1")]).unwrap_err();
        assert_eq!(e.var, "TWILIO_AUTH_TOKEN");
        // The numbers a business claims are where texts go out from: no
        // account-wide number is needed.
        let s = settings(&[("TWILIO_ACCOUNT_SID", "AC1"), ("TWILIO_AUTH_TOKEN", "t")]).unwrap();
        assert!(s.twilio.credentials().is_some());
        assert!(s.twilio.from_number.is_none());
        let e = settings(&[("TWILIO_FROM_NUMBER", "not a number")]).unwrap_err();
        assert_eq!(e.var, "TWILIO_FROM_NUMBER");
        // A token alone is fine: it validates inbound webhooks.
        assert!(settings(&[("TWILIO_AUTH_TOKEN", "t")]).is_ok());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = settings(&[
            ("ANTHROPIC_API_KEY", "sk-very-secret"),
            ("TWILIO_AUTH_TOKEN", "tok-secret"),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("sk-very-secret") && !debug.contains("tok-secret"),
            "{debug}"
        );
    }

    #[test]
    fn numbers_are_bounded_not_truncated() {
        for (var, value, range) in [
            ("ANTHROPIC_MAX_RETRIES", "4294967296", "from 0 to 10"),
            ("ANTHROPIC_TIMEOUT_SECS", "0", "from 1 to 600"),
            ("ANTHROPIC_MAX_TOKENS", "0", "from 1 to 64000"),
            ("WORKER_CONCURRENCY", "0", "from 1 to 256"),
            ("TWILIO_TIMEOUT_SECS", "0", "from 1 to 300"),
            ("GOOGLE_TIMEOUT_SECS", "100000", "from 1 to 300"),
        ] {
            let e = settings(&[("ANTHROPIC_API_KEY", "sk"), (var, value)]).unwrap_err();
            assert_eq!(e.var, var);
            assert!(
                e.to_string()
                    .contains(&format!("expected a whole number {range}, got {value}")),
                "{e}"
            );
        }
        let e = settings(&[("WORKER_CONCURRENCY", "-1")]).unwrap_err();
        assert!(e.to_string().contains("is not a whole number"), "{e}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(settings(&[("PORT", "http")]).unwrap_err().var, "PORT");
        assert_eq!(
            settings(&[("PUBLIC_BASE_URL", "not a url")]).unwrap_err().var,
            "PUBLIC_BASE_URL"
        );
        assert_eq!(
            settings(&[("TWILIO_FROM_NUMBER", "x")]).unwrap_err().var,
            "TWILIO_FROM_NUMBER"
        );
    }
}
