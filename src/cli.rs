//! The binary's commands. This is the edge where errors become `anyhow`
//! and messages for a person.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::{Application, Services};
use crate::config::business::BusinessConfig;
use crate::config::settings::Settings;
use crate::domain::phone::E164;
use crate::domain::prompt;
use crate::store::{InboundSms, Recorded};
use crate::telemetry;
use crate::twilio::ConsoleSender;

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
    },
    /// Validate business.toml and show the prompt it assembles.
    CheckConfig {
        /// Defaults to BUSINESS_CONFIG, then business.toml.
        path: Option<PathBuf>,
    },
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
        command => tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")
            .and_then(|rt| rt.block_on(run(command))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    match command {
        Command::Serve => {
            telemetry::init(settings.log_format, "info,sqlx=warn");
            let business = BusinessConfig::load(&settings.business_config)?;
            tracing::info!(
                business = %business.business.name,
                config = %settings.business_config.display(),
                database = %redact_url(&settings.database_url),
                "starting"
            );
            let app = Application::build(settings, business).await?;
            app.run_until_stopped().await;
            Ok(())
        }
        Command::Chat { from } => {
            telemetry::init(settings.log_format, "warn");
            chat(settings, &from).await
        }
        Command::CheckConfig { .. } => unreachable!("handled without a runtime"),
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

async fn chat(settings: Settings, from: &str) -> anyhow::Result<()> {
    let business = Arc::new(BusinessConfig::load(&settings.business_config)?);
    let customer = E164::parse(from).context("--from")?;
    let business_number = business
        .business
        .phone
        .clone()
        .unwrap_or_else(|| E164::parse("+15555550199").expect("valid"));
    let sender = Arc::new(ConsoleSender {
        label: Some(business.business.name.clone()),
    });
    let services = Services::build(&settings, business.clone(), Some(sender)).await?;
    if settings.anthropic.is_none() {
        println!("(No ANTHROPIC_API_KEY: replies are the no-model acknowledgement.)");
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
        let sms = InboundSms {
            message_sid: format!("CHAT{}", uuid::Uuid::new_v4().simple()),
            from: customer.clone(),
            to: business_number.clone(),
            body: line,
            media_urls: Vec::new(),
            params: serde_json::json!({"Source": "textdesk chat"}),
        };
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

fn check_config(path: Option<PathBuf>) -> anyhow::Result<()> {
    let path = path
        .or_else(|| std::env::var_os("BUSINESS_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("business.toml"));
    let config = BusinessConfig::load(&path)?;
    let mut report = config_summary(&path, &config);
    match Settings::from_env() {
        Ok(settings) => report.push_str(&environment_summary(&settings)),
        Err(e) => report.push_str(&format!("\nEnvironment: {e}\n")),
    }
    // `check-config | head` closes the pipe early; that is not an error.
    let _ = std::io::stdout().lock().write_all(report.as_bytes());
    Ok(())
}

fn config_summary(path: &Path, config: &BusinessConfig) -> String {
    let b = &config.business;
    let a = &config.assistant;
    let mut out = format!("{} is valid.\n\n", path.display());
    out.push_str(&format!("Business:   {} ({})\n", b.name, b.kind.as_str()));
    out.push_str(&format!("Timezone:   {}\n", b.timezone.name()));
    out.push_str(&format!(
        "Phone:      {}\n",
        b.phone.as_ref().map_or("(not set)", |p| p.as_str())
    ));
    out.push_str(&format!(
        "Assistant:  tone {}, replies {}, last {} messages of history\n",
        a.tone.as_str(),
        a.reply_length.as_str(),
        a.history_messages
    ));
    out.push_str(&format!(
        "SMS:        at most {} segment(s) per reply\n",
        config.sms.max_segments
    ));
    let assembled = prompt::assemble(config, chrono::Utc::now());
    if assembled.base_is_overridden() {
        out.push_str("\nWARNING: [assistant] base_prompt replaces the built-in base prompt.\n");
    }
    out.push_str("\nAssembled system prompt, section by section:\n");
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
