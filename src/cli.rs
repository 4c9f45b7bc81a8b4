//! The binary's commands. This is the edge where errors become `anyhow`
//! and messages for a person.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::{Application, Services};
use crate::assistant::prompt;
use crate::channel::Channels;
use crate::channel::console::ConsoleChannel;
use crate::config::business::{ApprovalPolicy, BusinessConfig, BusinessKind, describe_toml_error};
use crate::config::directory::{BusinessDirectory, load_businesses};
use crate::config::fragments::{self, Fragment};
use crate::config::settings::Settings;
use crate::domain::phone::E164;
use crate::domain::quote::{JobSpec, JunkJob, Labour, MaidJob, Selected, price};
use crate::store::backend::BackendKind;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{AssistantFragments, Recorded, StoreError};
use crate::telemetry;

#[derive(Parser)]
#[command(
    name = "textdesk",
    version,
    about = "The text-message front desk of a small service business"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Twilio's webhook and answer texts (HOST:PORT, default 127.0.0.1:8080).
    Serve,
    /// Text with the bot in this terminal, as a customer would.
    Chat {
        /// The customer's phone number for this session.
        #[arg(long, default_value = "+15555550100")]
        from: String,
        /// With a directory of businesses, the id of the one to text.
        #[arg(long)]
        business: Option<String>,
    },
    /// Validate business.toml and show the prompt it assembles.
    CheckConfig {
        /// Defaults to BUSINESS_CONFIG, then business.toml.
        path: Option<PathBuf>,
    },
    /// Price a job against business.toml and print the breakdown.
    Quote(Box<QuoteArgs>),
    /// List pending and dead jobs, and those whose text did not reach the
    /// customer: what will be sent, when, and what became of it.
    Jobs {
        /// One JSON object per line, for scripts.
        #[arg(long)]
        json: bool,
        /// Also list done and cancelled jobs.
        #[arg(long)]
        all: bool,
    },
    /// The owner's console login.
    Owner {
        #[command(subcommand)]
        action: OwnerCommand,
    },
    /// Open alerts: what needs a person, with the customer's full number.
    Alerts {
        /// One JSON object per line, for scripts.
        #[arg(long)]
        json: bool,
        /// Mark this alert resolved (as the console's Resolve button does).
        #[arg(long, value_name = "ID")]
        resolve: Option<i64>,
    },
    /// Every conversation, as the console's inbox lists them: those that
    /// need you first, then the newest.
    Conversations {
        /// One JSON object per line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// The configuration as textdesk runs it.
    Config {
        #[command(subcommand)]
        action: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a business's configuration as TOML: its file with the owner
    /// console's assistant settings merged in.
    Export {
        /// With a directory of businesses, the id of the one to export.
        #[arg(long)]
        business: Option<String>,
    },
}

#[derive(Subcommand)]
enum OwnerCommand {
    /// Set the console's password: one line from standard input (without
    /// its newline), or asked for on a terminal. Creates and migrates the
    /// database if `serve` has never run, and logs out every session.
    SetPassword,
}

#[derive(clap::Args, Default)]
struct QuoteArgs {
    /// business.toml to price against (default: BUSINESS_CONFIG, then business.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// With a directory of businesses, the id of the one to price for.
    #[arg(long)]
    business: Option<String>,
    /// A TOML job file with the same fields as these flags; flags win.
    #[arg(long)]
    job: Option<PathBuf>,
    /// Junk removal: a size tier id, e.g. half_truck.
    #[arg(long)]
    size: Option<String>,
    /// Junk removal: an item with its own labour, as id or id=count.
    #[arg(long = "item")]
    items: Vec<String>,
    /// State the labour directly (hours on site); needs --crew.
    #[arg(long)]
    hours: Option<rust_decimal::Decimal>,
    /// State the crew directly; needs --hours.
    #[arg(long, allow_hyphen_values = true)]
    crew: Option<i64>,
    /// Maid: bedrooms.
    #[arg(long)]
    bedrooms: Option<u32>,
    /// Maid: bathrooms (1.5 allowed).
    #[arg(long)]
    bathrooms: Option<rust_decimal::Decimal>,
    /// Maid: square feet.
    #[arg(long)]
    sqft: Option<u32>,
    /// Maid: clean type id, e.g. deep.
    #[arg(long)]
    clean: Option<String>,
    /// A modifier, as id or id=count (repeatable).
    #[arg(long = "modifier")]
    modifiers: Vec<String>,
    /// A discount id (repeatable).
    #[arg(long = "discount")]
    discounts: Vec<String>,
}

/// A job file for `textdesk quote --job`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct JobFile {
    size: Option<String>,
    items: std::collections::BTreeMap<String, u32>,
    hours: Option<rust_decimal::Decimal>,
    crew: Option<i64>,
    bedrooms: Option<u32>,
    bathrooms: Option<rust_decimal::Decimal>,
    square_feet: Option<u32>,
    clean_type: Option<String>,
    modifiers: std::collections::BTreeMap<String, u32>,
    discounts: Vec<String>,
}

pub fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth saying.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("warning: .env could not be read: {e}");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { path } => check_config(path),
        Command::Quote(args) => quote(*args),
        command => tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")
            .and_then(|rt| rt.block_on(run(command))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: an error that
/// already quotes its cause (thiserror's `{0}` with `#[from]`, say) would
/// otherwise print it twice, as `{e:#}` does.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn run(command: Command) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    match command {
        Command::Serve => {
            telemetry::init(settings.log_format, "info,sqlx=warn");
            let directory = Arc::new(BusinessDirectory::load_with_default_phone(
                &settings.business_config,
                settings.twilio.from_number.clone(),
            )?);
            for (file, business) in &directory.current().list {
                for warning in business.warnings() {
                    tracing::warn!(config = %file.display(), "{warning}");
                }
                tracing::info!(
                    business = %business.business.name,
                    id = %business.business.id,
                    config = %file.display(),
                    "answering for"
                );
            }
            tracing::info!(database = %redact_url(&settings.database_url), "starting");
            let app = Application::build_for(settings, directory).await?;
            app.run_until_stopped().await;
            Ok(())
        }
        Command::Chat { from, business } => {
            // The terminal is the conversation: the log goes to a file.
            let log = std::env::temp_dir().join("textdesk-chat.log");
            if telemetry::init_to_file(settings.log_format, "info,sqlx=warn", &log) {
                println!("(The log goes to {}.)", log.display());
            }
            chat(settings, &from, business.as_deref()).await
        }
        Command::Jobs { json, all } => {
            telemetry::init(settings.log_format, "warn");
            list_jobs(settings, json, all).await
        }
        Command::Owner {
            action: OwnerCommand::SetPassword,
        } => {
            telemetry::init(settings.log_format, "warn");
            set_owner_password(settings).await
        }
        Command::Alerts { json, resolve } => {
            telemetry::init(settings.log_format, "warn");
            alerts(settings, json, resolve).await
        }
        Command::Conversations { json } => {
            telemetry::init(settings.log_format, "warn");
            conversations(settings, json).await
        }
        Command::Config {
            action: ConfigCommand::Export { business },
        } => {
            telemetry::init(settings.log_format, "warn");
            export_config(settings, business.as_deref()).await
        }
        Command::CheckConfig { .. } | Command::Quote(_) => unreachable!("handled without a runtime"),
    }
}

/// Database URLs may carry a password (Postgres, later).
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

async fn chat(settings: Settings, from: &str, business_id: Option<&str>) -> anyhow::Result<()> {
    let businesses = load_businesses(&settings.business_config, 1)?;
    let business = match business_id {
        Some(id) => businesses
            .get(id)
            .cloned()
            .with_context(|| format!("no business `{id}`"))?,
        None => businesses
            .single()
            .cloned()
            .context("several businesses are configured: say which with --business ID")?,
    };
    let customer = E164::parse(from).context("--from")?;
    let business_number = business
        .business
        .phone
        .clone()
        .unwrap_or_else(|| E164::parse("+15555550199").expect("valid"));
    // The terminal is the channel: every text, SMS or WhatsApp, is printed.
    let console = Channels::only(Arc::new(ConsoleChannel {
        label: Some(business.business.name.clone()),
    }));
    let services = Services::build(&settings, business.clone(), Some(console)).await?;
    // No job runner here: chat prints its texts to this terminal, so it
    // must never send a real customer's reminder. `serve` runs the jobs.
    if settings.anthropic.is_none() {
        println!(
            "(No ANTHROPIC_API_KEY: the guided flow answers, with numbered questions and the same prices.)"
        );
    }
    println!(
        "Texting {} as {}. Same engine and database as `serve`. Ctrl-D or /quit to leave.\n",
        business.business.name,
        customer.masked()
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("you: ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next() else { break };
        let line = line?;
        if line.trim() == "/quit" {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let sms = ConsoleChannel::inbound(&business.business.id, &customer, &business_number, line);
        let (Recorded::New(conversation, _) | Recorded::Duplicate(conversation, _)) =
            services.store.record_inbound(&sms).await?;
        let worker = "chat";
        while !services
            .store
            .claim(conversation, worker, Duration::from_secs(300))
            .await?
        {
            // A running `serve` holds this conversation; it will answer.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let result = services.engine.run_turn(conversation).await;
        services.store.release(conversation, worker).await?;
        result?;
    }
    println!();
    Ok(())
}

/// `+1503***1234`, or `o***@example.com`.
fn mask_recipient(recipient: &str) -> String {
    if let Ok(phone) = E164::parse_address(recipient) {
        return phone.masked().to_string();
    }
    match recipient.split_once('@') {
        Some((user, domain)) => format!("{}***@{domain}", user.chars().next().unwrap_or('*')),
        None => "***".into(),
    }
}

async fn list_jobs(settings: Settings, json: bool, all: bool) -> anyhow::Result<()> {
    use crate::store::JobStatus;
    let businesses = load_businesses(&settings.business_config, 1)?;
    let business = businesses.iter().next().context("no business is configured")?;
    let store = crate::store::backend::connect(&settings.database_url, crate::clock::system())
        .await?
        .store;
    let mut statuses = vec![
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Suspended,
        JobStatus::Dead,
        // Listed when their text did not arrive, or with --all.
        JobStatus::Done,
    ];
    if all {
        statuses.push(JobStatus::Cancelled);
    }
    let mut jobs = crate::store::JobQueue::jobs(&*store, &statuses, 10_000).await?;
    // What became of each job's text: Twilio's latest delivery receipt.
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let deliveries = crate::store::Outbox::job_text_deliveries(&*store, &ids).await?;
    let undelivered: std::collections::HashSet<i64> = deliveries
        .iter()
        .filter(|t| t.receipt.is_some_and(|r| r.is_failure()))
        .map(|t| t.job_id)
        .collect();
    if !all {
        // A job done whose text never reached the customer still needs the owner.
        jobs.retain(|j| j.status != JobStatus::Done || undelivered.contains(&j.id));
    }
    let texts: std::collections::HashMap<i64, String> =
        deliveries.into_iter().map(|t| (t.job_id, t.summary())).collect();
    let text_of = |id: i64| texts.get(&id).map_or("", String::as_str);
    // Each job's time in its own business's zone: a maid service in Chicago
    // and a junk crew in Portland share one queue.
    let several = businesses.single().is_none();
    let tz_of = |j: &crate::store::Job| {
        businesses
            .get(&j.business_id)
            .unwrap_or(business)
            .business
            .timezone
    };
    let mut out = String::new();
    if json {
        for j in &jobs {
            let line = serde_json::json!({
                "id": j.id,
                "kind": j.kind,
                "status": j.status.as_str(),
                "recipient": mask_recipient(&j.recipient),
                "business": j.business_id,
                "due": j.run_at.with_timezone(&tz_of(j)).to_rfc3339(),
                "attempts": j.attempts,
                "max_attempts": j.max_attempts,
                "last_error": j.last_error,
                "text": texts.get(&j.id),
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    } else if jobs.is_empty() {
        out.push_str("No pending or dead jobs.\n");
    } else {
        out.push_str(&format!(
            "{:<6} {:<16} {:<10} {:<30} {:<30} {:>8}  {:<12}  {}\n",
            "ID",
            "KIND",
            "STATUS",
            "RECIPIENT",
            if several {
                "DUE (each business's time)".to_string()
            } else {
                format!("DUE ({})", business.business.timezone.name())
            },
            "ATTEMPTS",
            "TEXT",
            "LAST ERROR"
        ));
        for j in &jobs {
            out.push_str(&format!(
                "{:<6} {:<16} {:<10} {:<30} {:<30} {:>8}  {:<12}  {}\n",
                j.id,
                j.kind,
                j.status.as_str(),
                mask_recipient(&j.recipient),
                j.run_at
                    .with_timezone(&tz_of(j))
                    .format("%a %b %-d %Y %-I:%M%P %Z"),
                format!("{}/{}", j.attempts, j.max_attempts),
                text_of(j.id),
                j.last_error.as_deref().unwrap_or("")
            ));
        }
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

/// Reads the password: a prompt without echo on a terminal (asked twice),
/// else one line of standard input without its line ending.
fn read_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        return Ok(password.strip_suffix('\r').unwrap_or(password).to_string());
    }
    let ask = |prompt: &str| -> anyhow::Result<String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        // No echo while typing; if stty is missing, the prompt still works.
        let hidden = std::process::Command::new("stty")
            .arg("-echo")
            .status()
            .is_ok_and(|s| s.success());
        let mut line = String::new();
        let read = stdin.lock().read_line(&mut line);
        if hidden {
            let _ = std::process::Command::new("stty").arg("echo").status();
            eprintln!();
        }
        read.context("cannot read the password")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    let first = ask("New console password: ")?;
    let again = ask("The same password again: ")?;
    anyhow::ensure!(first == again, "the two passwords differ; nothing was changed");
    Ok(first)
}

async fn set_owner_password(settings: Settings) -> anyhow::Result<()> {
    let password = read_password()?;
    let store = crate::store::backend::connect(&settings.database_url, crate::clock::system())
        .await?
        .console;
    crate::http::owner::password::set_owner_password(&*store, &password).await?;
    println!(
        "The console password is set. Log in at {}owner/login",
        settings.public_base_url
    );
    Ok(())
}

/// Every configured business's zone, if the configuration loads; the
/// listing still works (in UTC) when it does not.
fn zones(settings: &Settings) -> std::collections::HashMap<String, chrono_tz::Tz> {
    load_businesses(&settings.business_config, 1)
        .map(|b| {
            b.iter()
                .map(|b| (b.business.id.clone(), b.business.timezone))
                .collect()
        })
        .unwrap_or_default()
}

async fn alerts(settings: Settings, json: bool, resolve: Option<i64>) -> anyhow::Result<()> {
    let store = crate::store::backend::connect(&settings.database_url, crate::clock::system())
        .await?
        .console;
    if let Some(id) = resolve {
        anyhow::ensure!(
            store.resolve_alert(id, "cli", chrono::Utc::now()).await?,
            "there is no open alert {id}"
        );
        println!("Alert {id} is resolved.");
        return Ok(());
    }
    let zones = zones(&settings);
    let alerts = store.console_alerts(None, true, 10_000).await?;
    let mut out = String::new();
    for a in &alerts {
        let tz = zones.get(&a.business_id).copied().unwrap_or(chrono_tz::UTC);
        let when = a.created_at.with_timezone(&tz);
        if json {
            let line = serde_json::json!({
                "id": a.id,
                "kind": a.kind,
                "business": a.business_id,
                "conversation": a.conversation_id.map(|c| c.0),
                "customer": a.customer_name,
                "phone": a.customer_address,
                "detail": a.detail,
                "created": when.to_rfc3339(),
            });
            out.push_str(&line.to_string());
            out.push('\n');
        } else {
            out.push_str(&format!(
                "#{} {}{} {} {}{}\n    {}\n",
                a.id,
                business_tag(&zones, &a.business_id),
                when.format("%a %b %-d %-I:%M%P %Z"),
                a.kind,
                a.customer_name
                    .as_deref()
                    .map(|n| format!("{n} "))
                    .unwrap_or_default(),
                a.customer_address.as_deref().unwrap_or(""),
                a.detail.replace('\n', "\n    "),
            ));
        }
    }
    if !json && alerts.is_empty() {
        out.push_str("No open alerts.\n");
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

async fn conversations(settings: Settings, json: bool) -> anyhow::Result<()> {
    use crate::store::console::InboxQuery;
    let store = crate::store::backend::connect(&settings.database_url, crate::clock::system())
        .await?
        .console;
    let zones = zones(&settings);
    let rows = store
        .inbox(&InboxQuery {
            limit: 100_000,
            ..InboxQuery::default()
        })
        .await?;
    let mut out = String::new();
    for r in &rows {
        let tz = zones.get(&r.business_id).copied().unwrap_or(chrono_tz::UTC);
        let last_at = r.last_at.map(|t| t.with_timezone(&tz));
        if json {
            let line = serde_json::json!({
                "id": r.id.0,
                "business": r.business_id,
                "phone": r.customer_address,
                "name": r.customer_name,
                "channel": crate::channel::Channel::of_address(&r.customer_address).name(),
                "state": r.state,
                "opted_out": r.opted_out,
                "needs_you": r.needs_you,
                "unread": r.unread,
                "last_text": r.last_text,
                "last_at": last_at.map(|t| t.to_rfc3339()),
            });
            out.push_str(&line.to_string());
            out.push('\n');
        } else {
            let last: String = r.last_text.as_deref().unwrap_or("").chars().take(60).collect();
            out.push_str(&format!(
                "{:<6} {}{:<1} {:<10} {:<20} {:<24} {:<26} {}\n",
                r.id.0,
                business_tag(&zones, &r.business_id),
                if r.needs_you {
                    "!"
                } else if r.unread {
                    "*"
                } else {
                    ""
                },
                r.state,
                r.customer_name.as_deref().unwrap_or(""),
                r.customer_address,
                last_at
                    .map(|t| t.format("%b %-d %-I:%M%P %Z").to_string())
                    .unwrap_or_default(),
                last.replace('\n', " "),
            ));
        }
    }
    if !json && rows.is_empty() {
        out.push_str("No conversations yet.\n");
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

/// `[id] ` when several businesses share the database, so one customer of
/// two of them is not two identical rows; nothing with one business.
fn business_tag<V>(zones: &std::collections::HashMap<String, V>, business_id: &str) -> String {
    if zones.len() > 1 {
        format!("[{business_id}] ")
    } else {
        String::new()
    }
}

fn business_path(path: Option<PathBuf>) -> PathBuf {
    path.or_else(|| std::env::var_os("BUSINESS_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("business.toml"))
}

/// `id` or `id=count`.
fn selected(raw: &str) -> anyhow::Result<Selected> {
    let (id, quantity) = match raw.split_once('=') {
        Some((id, n)) => (
            id,
            // The parser's own words ("number too large to fit in target
            // type") are for programmers: say what is expected instead.
            n.trim().parse().map_err(|_| {
                anyhow::anyhow!("`{raw}`: the count must be a whole number from 0 to {}", u32::MAX)
            })?,
        ),
        None => (raw, 1),
    };
    Ok(Selected {
        id: id.trim().to_string(),
        quantity,
    })
}

fn quote(args: QuoteArgs) -> anyhow::Result<()> {
    let path = business_path(args.config.clone());
    let businesses = load_businesses(&path, 1)?;
    let config: &BusinessConfig = match &args.business {
        Some(id) => businesses.get(id).with_context(|| {
            format!(
                "no business `{id}` in {}; there are: {}",
                path.display(),
                businesses
                    .iter()
                    .map(|b| b.business.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?,
        None => businesses.single().with_context(|| {
            format!(
                "{} holds several businesses: say which with --business ID",
                path.display()
            )
        })?,
    };
    let file: JobFile = match &args.job {
        Some(job) => {
            let text =
                std::fs::read_to_string(job).with_context(|| format!("cannot read {}", job.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!(describe_toml_error(job, &text, &e)))?
        }
        None => JobFile::default(),
    };
    let mut modifiers: Vec<Selected> = file
        .modifiers
        .into_iter()
        .map(|(id, quantity)| Selected { id, quantity })
        .collect();
    for raw in &args.modifiers {
        let s = selected(raw)?;
        modifiers.retain(|m| m.id != s.id);
        modifiers.push(s);
    }
    let mut items: Vec<Selected> = file
        .items
        .into_iter()
        .map(|(id, quantity)| Selected { id, quantity })
        .collect();
    for raw in &args.items {
        let s = selected(raw)?;
        items.retain(|m| m.id != s.id);
        items.push(s);
    }
    let discounts = if args.discounts.is_empty() {
        file.discounts
    } else {
        args.discounts.clone()
    };
    let labour = match (args.hours.or(file.hours), args.crew.or(file.crew)) {
        (Some(hours), Some(crew)) => Some(Labour { hours, crew }),
        (None, None) => None,
        _ => anyhow::bail!("--hours and --crew go together"),
    };
    let job = match config.business.kind {
        BusinessKind::JunkRemoval => JobSpec::Junk(JunkJob {
            tier: args.size.clone().or(file.size),
            items,
            labour,
            modifiers,
            discounts,
        }),
        BusinessKind::Maid => JobSpec::Maid(MaidJob {
            bedrooms: args.bedrooms.or(file.bedrooms).unwrap_or(0),
            bathrooms: args.bathrooms.or(file.bathrooms).unwrap_or_default(),
            square_feet: args.sqft.or(file.square_feet),
            clean_type: args
                .clean
                .clone()
                .or(file.clean_type)
                .unwrap_or_else(|| "standard".into()),
            labour,
            modifiers,
            discounts,
        }),
    };
    let now = chrono::Utc::now();
    let quote = price(&config.pricing, &job, "check".into(), now)
        .map_err(|e| anyhow::anyhow!("cannot price this job: {e}"))?;
    let _ = std::io::stdout()
        .lock()
        .write_all(render_quote(config, &quote).as_bytes());
    Ok(())
}

fn render_quote(config: &BusinessConfig, quote: &crate::domain::quote::Quote) -> String {
    let width = quote
        .lines
        .iter()
        .map(|l| l.label.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = format!(
        "{} - quote ({})\n\n",
        config.business.name,
        config.business.kind.as_str()
    );
    for line in &quote.lines {
        out.push_str(&format!(
            "  {:<width$}  {:>10}\n",
            line.label,
            line.amount.to_string()
        ));
    }
    out.push_str(&format!("  {:<width$}  {:>10}\n", "", "----------"));
    out.push_str(&format!(
        "  {:<width$}  {:>10}\n\n",
        "Total",
        quote.total.to_string()
    ));
    for assumption in &quote.assumptions {
        out.push_str(&format!("{assumption}\n"));
    }
    let expires = quote.expires_at.with_timezone(&config.business.timezone);
    out.push_str(&format!("Valid until {}.\n", expires.format("%a %b %-d, %Y")));
    out
}

fn check_config(path: Option<PathBuf>) -> anyhow::Result<()> {
    let path = business_path(path);
    // A directory: every file is checked, and every problem reported.
    let businesses = load_businesses(&path, 1)?;
    let settings = Settings::from_env();
    let stored = match &settings {
        Ok(settings) => console_settings(settings)?,
        Err(_) => None,
    };
    let mut report = String::new();
    for (file, config) in &businesses.list {
        if businesses.list.len() > 1 {
            report.push_str(&format!(
                "=== {} (business `{}`) ===\n",
                file.display(),
                config.business.id
            ));
        }
        let fragments = stored.as_ref().and_then(|s| s.get(&config.business.id));
        match fragments.map(|f| fragments::apply(config, file, f)) {
            None => report.push_str(&config_summary(file, config)),
            Some(Ok(applied)) => {
                report.push_str(&config_summary(file, &applied));
                report.push_str(&console_overrides(&applied));
            }
            Some(Err(e)) => {
                report.push_str(&config_summary(file, config));
                report.push_str(&format!(
                    "\nwarning: the owner console's setting {e}; the file's value serves until it is changed on /owner/settings\n"
                ));
            }
        }
    }
    match &settings {
        Ok(settings) => report.push_str(&environment_summary(settings)),
        Err(e) => report.push_str(&format!("\nEnvironment: {e}\n")),
    }
    // `check-config | head` closes the pipe early; that is not an error.
    let _ = std::io::stdout().lock().write_all(report.as_bytes());
    Ok(())
}

/// The owner console's assistant settings in the database `DATABASE_URL`
/// names, by business id; `None` when that database does not exist yet
/// (check-config never creates one).
fn console_settings(settings: &Settings) -> anyhow::Result<Option<HashMap<String, Vec<Fragment>>>> {
    // No runtime needed for a SQLite file that is not there.
    if BackendKind::of(&settings.database_url) == BackendKind::Sqlite
        && !sqlite_file(&settings.database_url).is_some_and(|f| f.exists())
    {
        return Ok(None);
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime
        .block_on(stored_fragments(&settings.database_url))
        .with_context(|| {
            format!(
                "cannot read the owner console's settings from {}",
                redact_url(&settings.database_url)
            )
        })
}

/// Every business's console settings in the database `url` names, if that
/// database exists: a SQLite file, or a Postgres database that a `serve`
/// has migrated. Never creates or migrates one.
async fn stored_fragments(url: &str) -> Result<Option<HashMap<String, Vec<Fragment>>>, StoreError> {
    match BackendKind::of(url) {
        BackendKind::Sqlite => match sqlite_file(url).filter(|f| f.exists()) {
            Some(_) => Ok(Some(
                SqliteStore::connect(url).await?.assistant_fragments().await?,
            )),
            None => Ok(None),
        },
        BackendKind::Postgres => match PgStore::open_existing(url).await? {
            Some(store) => Ok(Some(store.assistant_fragments().await?)),
            None => Ok(None),
        },
    }
}

/// The file a `sqlite:` URL names, if it names one.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Which settings the owner console overrides, with their source.
fn console_overrides(config: &BusinessConfig) -> String {
    let mut out = String::from(
        "\nConsole overrides (set on /owner/settings, stored in the database; business.toml stays the base):\n",
    );
    for f in &config.console.fragments {
        let how = if config.console.appended(&f.key) > 0 {
            "appended to the file's list"
        } else {
            "replaces the file's value"
        };
        out.push_str(&format!(
            "  [assistant] {} = {}  (source: console, {how}; saved {} by {})\n",
            f.key,
            f.value,
            f.updated_at.format("%Y-%m-%d %H:%M UTC"),
            f.updated_by
        ));
    }
    out
}

async fn export_config(settings: Settings, business_id: Option<&str>) -> anyhow::Result<()> {
    let directory = BusinessDirectory::load(&settings.business_config)?;
    let businesses = directory.current();
    let business = match business_id {
        Some(id) => businesses
            .get(id)
            .cloned()
            .with_context(|| format!("no business `{id}`"))?,
        None => businesses
            .single()
            .cloned()
            .context("several businesses are configured: say which with --business ID")?,
    };
    let exported = match stored_fragments(&settings.database_url).await? {
        Some(mut stored) => {
            let own = stored.remove(&business.business.id).unwrap_or_default();
            let path = businesses
                .path_of(&business.business.id)
                .unwrap_or(&settings.business_config)
                .to_path_buf();
            let applied = fragments::apply(&business, &path, &own)
                .with_context(|| format!("business `{}`", business.business.id))?;
            fragments::export(&applied)?
        }
        None => fragments::export(&business)?,
    };
    let _ = std::io::stdout().lock().write_all(exported.as_bytes());
    Ok(())
}

fn config_summary(path: &Path, config: &BusinessConfig) -> String {
    let b = &config.business;
    let a = &config.assistant;
    let mut out = format!("{} is valid.\n\n", path.display());
    let warnings = config.warnings();
    if !warnings.is_empty() {
        for warning in &warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        out.push('\n');
    }
    out.push_str(&format!("Business:   {} ({})\n", b.name, b.kind.as_str()));
    out.push_str(&format!("Timezone:   {}\n", b.timezone.name()));
    out.push_str(&format!(
        "Phone:      {}\n",
        b.phone.as_ref().map_or("(not set)", |p| p.as_str())
    ));
    out.push_str(&format!(
        "Owner:      {}\n",
        match (&b.owner_email, &b.owner_phone) {
            (None, None) => "(no email or phone: alerts are only stored)".to_string(),
            (email, phone) => [email.as_deref(), phone.as_ref().map(|p| p.as_str())]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", "),
        }
    ));
    out.push_str(&format!(
        "Assistant:  tone {}, replies {}, last {} messages of history\n",
        a.tone.as_str(),
        a.reply_length.as_str(),
        a.history_messages
    ));
    out.push_str(&match a.approval {
        ApprovalPolicy::Off => "Approval:   off (replies go out as drafted)\n".to_string(),
        policy => format!(
            "Approval:   {policy}; unanswered for {} minute(s), a held reply hands the conversation to you{}\n",
            a.approval_timeout_minutes,
            match (&policy, &a.approval_holding_text) {
                (ApprovalPolicy::All, Some(_)) => "; the holding text goes out once while one waits",
                _ => "",
            }
        ),
    });
    out.push_str(&format!(
        "SMS:        at most {} segment(s) per reply\n",
        config.sms.max_segments
    ));
    let p = &config.pricing;
    out.push_str(&format!(
        "Pricing:    minimum {}, rounding {:?}, quotes valid {} days; {} modifier(s), {} discount(s)\n",
        p.minimum_charge,
        p.rounding,
        p.quote_valid_days,
        p.modifiers.len(),
        p.discounts.len()
    ));
    match b.kind {
        BusinessKind::JunkRemoval => out.push_str(&format!(
            "            {} delivery + {}/hour per person; {} size tier(s), {} item(s)\n",
            p.junk.delivery_fee,
            p.junk.hourly_rate_per_person,
            p.junk.tiers.len(),
            p.junk.items.len()
        )),
        BusinessKind::Maid => out.push_str(&format!(
            "            {}/hour per cleaner, crew of {}; {} clean type(s), {} flat rate(s)\n",
            p.maid.hourly_rate_per_person,
            p.maid.crew,
            p.maid.clean_types.len(),
            p.maid.flat_rates.len()
        )),
    }
    out.push_str("            Check prices with `textdesk quote`.\n");
    let s = &config.schedule;
    let day = |d: crate::domain::availability::DayHours| match d {
        crate::domain::availability::DayHours::Closed => "closed".to_string(),
        crate::domain::availability::DayHours::Open { open, close } => {
            format!("{}-{}", open.format("%H:%M"), close.format("%H:%M"))
        }
    };
    let h = &s.hours;
    out.push_str(&format!(
        "Schedule:   Mon {} Tue {} Wed {} Thu {} Fri {} Sat {} Sun {}\n",
        day(h.mon),
        day(h.tue),
        day(h.wed),
        day(h.thu),
        day(h.fri),
        day(h.sat),
        day(h.sun)
    ));
    out.push_str(&format!(
        "            {}-minute grid, {} notice {}h, horizon {} days, buffers {}+{} min, {} closed date(s)\n",
        s.slot_minutes,
        if s.arrival_window_minutes > 0 {
            format!("{}-minute arrival windows,", s.arrival_window_minutes)
        } else {
            "exact start times,".to_string()
        },
        s.min_notice_hours,
        s.horizon_days,
        s.buffer_before_minutes,
        s.buffer_after_minutes,
        s.closed_dates.len()
    ));
    for p in &config.providers {
        out.push_str(&format!(
            "Provider:   {} ({}), calendar {}\n",
            p.name,
            p.id,
            p.calendar_id.as_deref().unwrap_or("(textdesk's own bookings)")
        ));
    }
    let g = &config.guardrail;
    let listed = |phrases: &[String]| {
        if phrases.is_empty() {
            "(none)".to_string()
        } else {
            phrases
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    out.push_str(&format!(
        "Guardrail:  promises you allow: {}; phrases also refused: {}\n",
        listed(&g.allowed_commitments),
        listed(&g.forbidden_phrases)
    ));
    let mut assembled = prompt::assemble(config, chrono::Utc::now());
    assembled.push(
        "Catalog",
        prompt::Origin::File,
        "[pricing] (labels only; prices come from get_quote)",
        prompt::catalog_text(config),
    );
    if assembled.base_is_overridden() {
        out.push_str("\nWARNING: [assistant] base_prompt replaces the built-in base prompt.\n");
    }
    out.push_str(
        "\nAssembled system prompt, section by section (each turn adds the conversation's state):\n",
    );
    for section in &assembled.sections {
        out.push_str(&format!(
            "\n== {}  (from {})\n{}\n",
            section.title, section.source, section.text
        ));
    }
    out
}

fn environment_summary(settings: &Settings) -> String {
    let mut out = String::from("\nEnvironment:\n");
    out.push_str(&format!(
        "Model:      {}\n",
        settings
            .anthropic
            .as_ref()
            .map_or("none (ANTHROPIC_API_KEY unset)".to_string(), |a| a.model.clone())
    ));
    out.push_str(&format!(
        "Texts:      {}\n",
        if settings.twilio.credentials().is_some() {
            "sent through Twilio"
        } else {
            "printed to the console (Twilio not configured)"
        }
    ));
    out.push_str(&format!(
        "Webhook:    {}api/sms/inbound\n",
        settings.public_base_url
    ));
    out.push_str(&format!("Database:   {}\n", redact_url(&settings.database_url)));
    out
}
