//! The owner's commands, run as the owner runs them: the real binary.

use std::process::Command;

fn textdesk(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_textdesk"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("BUSINESS_CONFIG")
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .expect("run textdesk");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn quote_prints_the_formula_breakdown() {
    let (ok, out, err) = textdesk(&["quote", "--hours", "3", "--crew", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains("Delivery") && out.contains("$150"), "{out}");
    assert!(
        out.contains("Labour: 2 people x 3 hours at $50/hour each") && out.contains("$300"),
        "{out}"
    );
    let total = out.lines().find(|l| l.trim_start().starts_with("Total")).unwrap();
    assert!(total.trim_end().ends_with("$450"), "{out}");
}

#[test]
fn quote_takes_a_job_file_and_the_maid_profile() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        "size = \"half_truck\"\nmodifiers = { stairs = 2, mattress = 1 }\n",
    )
    .unwrap();
    let (ok, out, err) = textdesk(&["quote", "--job", job.to_str().unwrap()]);
    assert!(ok, "{err}");
    // 150 + 2 x 2 x 50 + 2 x 25 + 30 = 430.
    let total = out.lines().find(|l| l.trim_start().starts_with("Total")).unwrap();
    assert!(total.trim_end().ends_with("$430"), "{out}");
    assert!(out.contains("Stairs: 2 flight(s) x $25"), "{out}");

    let (ok, out, err) = textdesk(&[
        "quote",
        "--config",
        "examples/maid.toml",
        "--bedrooms",
        "2",
        "--bathrooms",
        "1",
        "--clean",
        "standard",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("(flat rate)") && out.contains("$139"), "{out}");
}

#[test]
fn quote_refuses_what_it_cannot_price() {
    let (ok, _, err) = textdesk(&["quote", "--hours", "0", "--crew", "2"]);
    assert!(!ok);
    assert!(err.contains("hours must be more than zero"), "{err}");
    let (ok, _, err) = textdesk(&["quote", "--size", "half_truck", "--modifier", "gold_plating"]);
    assert!(!ok);
    assert!(err.contains("unknown modifier `gold_plating`"), "{err}");
    let (ok, _, err) = textdesk(&["quote", "--hours", "2"]);
    assert!(!ok);
    assert!(err.contains("--hours and --crew go together"), "{err}");
}

#[test]
fn check_config_locates_mistakes() {
    let (ok, out, _) = textdesk(&["check-config"]);
    assert!(ok);
    assert!(out.contains("business.toml is valid"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("business.toml");
    std::fs::write(&bad, "[business]\nname = \"X\"\ntimezone = \"America/Nowhere\"\n").unwrap();
    let (ok, _, err) = textdesk(&["check-config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("business.toml:3:12: business.timezone:"), "{err}");
}

fn total_line(out: &str) -> String {
    out.lines()
        .find(|l| l.trim_start().starts_with("Total"))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

#[test]
fn stated_hours_honour_the_minimum_and_the_billing_increment() {
    // business.toml: a 1-hour minimum in half-hour steps, $50 per person.
    let (ok, out, err) = textdesk(&["quote", "--hours", "0.1", "--crew", "1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Labour: 1 person x 1 hour at $50/hour each"),
        "{out}"
    );
    assert!(!out.contains("1 people"), "{out}");
    assert!(out.contains("Based on 1 person for 1 hour."), "{out}");
    assert!(total_line(&out).ends_with("$200"), "{out}");
    let (ok, out, err) = textdesk(&["quote", "--hours", "2.2", "--crew", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains("Labour: 2 people x 2.5 hours"), "{out}");
    assert!(total_line(&out).ends_with("$400"), "{out}");
}

#[test]
fn the_shipped_job_file_prices() {
    let (ok, out, err) = textdesk(&["quote", "--job", "examples/job.toml"]);
    assert!(ok, "{err}");
    // Half a truck (2 h) and a piano (1 h, 3 people): 150 + 3 x 3 x 50,
    // stairs 2 x 25, a mattress 30: 680, less 10% senior = 612.
    assert!(out.contains("Labour: 3 people x 3 hours"), "{out}");
    assert!(out.contains("Stairs: 2 flight(s) x $25"), "{out}");
    assert!(out.contains("Senior discount (10% off)"), "{out}");
    assert!(total_line(&out).ends_with("$612"), "{out}");
}

#[test]
fn os_errors_are_printed_once() {
    let missing = "/nonexistent/business.toml";
    for args in [
        vec!["check-config", missing],
        vec!["quote", "--config", missing, "--size", "half_truck"],
        vec!["quote", "--job", "/nonexistent/job.toml"],
    ] {
        let (ok, _, err) = textdesk(&args);
        assert!(!ok, "{args:?}");
        assert_eq!(
            err.matches("No such file or directory").count(),
            1,
            "{args:?}: {err}"
        );
    }
    let (_, _, err) = textdesk(&["check-config", missing]);
    assert!(
        err.starts_with("error: /nonexistent/business.toml: cannot read the business file: No such file"),
        "{err}"
    );
}

#[test]
fn check_config_refuses_what_would_misprice_or_crash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("business.toml");
    let cases = [
        (
            "[pricing.junk]\nhourly_rate_per_person = -50\n",
            "pricing.junk.hourly_rate_per_person: expected an amount from $0 to $100,000, got -$50",
        ),
        (
            "[pricing.junk]\ndelivery_fee = -150\n",
            "pricing.junk.delivery_fee: expected an amount",
        ),
        (
            "[pricing]\nminimum_charge = -10\n",
            "pricing.minimum_charge: expected an amount",
        ),
        (
            "[[pricing.modifiers]]\nid = \"weekend\"\nlabel = \"Weekend\"\nkind = \"percent\"\npercent = 500\n",
            "pricing.modifiers: `weekend`: expected a percentage from 0 up to 100, got 500",
        ),
        (
            "[pricing]\nquote_valid_days = 4294967295\n",
            "pricing.quote_valid_days: expected a number of days from 1 to 365",
        ),
        (
            "[schedule]\nhorizon_days = 100000000\n",
            "schedule.horizon_days: expected a number of days from 1 to 365",
        ),
        (
            "[schedule]\nmin_notice_hours = 4294967295\n",
            "schedule.min_notice_hours: expected a number of hours from 0 to 720",
        ),
        (
            "[schedule]\noffers = \"three\"\n",
            "schedule.offers: expected a whole number",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&file, format!("[business]\nname = \"X\"\n{text}")).unwrap();
        let (ok, out, err) = textdesk(&["check-config", file.to_str().unwrap()]);
        assert!(!ok, "accepted {text}: {out}");
        assert!(err.contains("business.toml:"), "{err}");
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn check_config_warns_when_alerts_would_go_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("business.toml");
    std::fs::write(&file, "[business]\nname = \"X\"\n").unwrap();
    let (ok, out, err) = textdesk(&["check-config", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("warning: business.owner_email: not set: owner alerts")
            && out.contains("will go nowhere"),
        "{out}"
    );
    std::fs::write(&file, "[business]\nkind = \"maid\"\n").unwrap();
    let (ok, _, err) = textdesk(&["check-config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("business.name: the business name is missing"),
        "{err}"
    );
    let (ok, out, _) = textdesk(&["check-config"]);
    assert!(ok);
    assert!(!out.contains("warning:"), "the shipped file is complete: {out}");
}

#[test]
fn check_config_shows_the_owners_phone_and_locates_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("business.toml");
    std::fs::write(
        &file,
        "[business]\nname = \"X\"\nphone = \"+15035550142\"\nowner_email = \"o@example.com\"\nowner_phone = \"503-555-0199\"\n",
    )
    .unwrap();
    let (ok, out, err) = textdesk(&["check-config", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("Owner:      o@example.com, +15035550199"), "{out}");
    std::fs::write(&file, "[business]\nname = \"X\"\nowner_phone = \"the owner\"\n").unwrap();
    let (ok, _, err) = textdesk(&["check-config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains(":3:") && err.contains("business.owner_phone"),
        "{err}"
    );
}

#[test]
fn a_job_file_mistake_is_located_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(&job, "size = \"half_truck\"\nitems = { piano = -1 }\n").unwrap();
    let (ok, _, err) = textdesk(&["quote", "--job", job.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("job.toml:2:19: expected a whole number from 0 to 4294967295, got -1"),
        "{err}"
    );
}

#[test]
fn check_config_warns_of_a_weekend_surcharge_while_closed_on_weekends() {
    let (ok, out, err) = textdesk(&["check-config", "examples/maid.toml"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "warning: pricing.modifiers: `weekend` (Weekend service) applies on weekends, but [schedule.hours] \
             is closed on Saturday and Sunday: it is never charged."
        ),
        "{out}"
    );
    // The shipped junk-removal business is open Saturdays: no such warning.
    let (ok, out, err) = textdesk(&["check-config"]);
    assert!(ok, "{err}");
    assert!(!out.contains("is never charged"), "{out}");
}

#[test]
fn a_count_too_large_is_refused_in_plain_words() {
    let (ok, _, err) = textdesk(&[
        "quote",
        "--size",
        "few_items",
        "--modifier",
        "mattress=100000000000",
    ]);
    assert!(!ok);
    assert!(
        err.contains("the count must be a whole number from 0 to 4294967295"),
        "{err}"
    );
    assert!(!err.contains("target type"), "{err}");
}

/// A directory of businesses (the shipped junk and maid files).
fn two_business_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(manifest.join("business.toml"), dir.path().join("junk.toml")).unwrap();
    std::fs::copy(manifest.join("examples/maid.toml"), dir.path().join("maid.toml")).unwrap();
    dir
}

#[test]
fn check_config_checks_every_file_of_a_directory_and_a_number_claimed_twice() {
    let dir = two_business_dir();
    let (ok, out, err) = textdesk(&["check-config", dir.path().to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("business `junk`") && out.contains("business `maid`"),
        "{out}"
    );

    std::fs::write(
        dir.path().join("zz.toml"),
        "[business]\nname = \"Copycat\"\nnumbers = [\"+12175550187\"]\n",
    )
    .unwrap();
    let (ok, _, err) = textdesk(&["check-config", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("zz.toml:3:") && err.contains("maid.toml:7:"),
        "{err}"
    );
}

#[test]
fn quote_prices_for_the_business_named() {
    let dir = two_business_dir();
    let config = dir.path().to_str().unwrap();
    let (ok, out, err) = textdesk(&[
        "quote",
        "--config",
        config,
        "--business",
        "maid",
        "--bedrooms",
        "2",
        "--bathrooms",
        "1",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("bedroom"), "{out}");
    let (ok, _, err) = textdesk(&["quote", "--config", config, "--size", "half_truck"]);
    assert!(!ok);
    assert!(err.contains("--business"), "{err}");
}

/// The documented contract: SIGHUP re-reads the configuration; a bad edit
/// is refused with its location and the old configuration keeps serving.
#[cfg(unix)]
#[test]
fn sighup_reloads_a_good_edit_and_refuses_a_bad_one() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("business.toml");
    std::fs::write(&file, "[business]\nname = \"Old Name\"\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_textdesk"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("DATABASE_URL", format!("sqlite://{}/t.db", dir.path().display()))
        .env("BUSINESS_CONFIG", &file)
        .env("OUTBOX_DIR", dir.path().join("outbox"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run textdesk serve");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| -> String {
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no log line containing `{needle}`"));
            if line.contains(needle) {
                return line;
            }
        }
    };
    let hangup = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    };
    wait_for("textdesk is listening");

    std::fs::write(&file, "[business]\nname = \"New Name\"\nkind = \"plumber\"\n").unwrap();
    hangup(child.id());
    let refused = wait_for("reload refused");
    assert!(
        refused.contains("business.toml:3:") && refused.contains("business.kind"),
        "{refused}"
    );

    std::fs::write(&file, "[business]\nname = \"New Name\"\n").unwrap();
    hangup(child.id());
    let reloaded = wait_for("configuration reloaded");
    assert!(reloaded.contains("\"version\":2"), "{reloaded}");
    assert!(child.try_wait().unwrap().is_none(), "textdesk exited");
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs textdesk on the database `db` with `stdin` as its input.
fn textdesk_on(db: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_textdesk"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env_remove("BUSINESS_CONFIG")
        .env_remove("ANTHROPIC_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run textdesk");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn owner_set_password_creates_the_database_and_stores_only_a_hash() {
    use textdesk::http::owner::password::verify_password;
    use textdesk::store::console::ConsoleStore;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");
    assert!(!db.exists());
    // One line without its newline: the trailing newline is not part of it.
    let (ok, out, err) = textdesk_on(&db, &["owner", "set-password"], "a long passphrase\n");
    assert!(ok, "{err}");
    assert!(out.contains("/owner/login"), "{out}");
    assert!(db.exists(), "the database was created and migrated");
    let (ok, _, err) = textdesk_on(&db, &["owner", "set-password"], "short\n");
    assert!(!ok && err.contains("at least 10 characters"), "{err}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let hash = rt.block_on(async {
        let store = textdesk::store::sqlite::SqliteStore::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        store.owner_password_hash().await.unwrap().expect("a stored hash")
    });
    assert!(
        hash.starts_with("$argon2id$") && !hash.contains("a long passphrase"),
        "{hash}"
    );
    assert!(verify_password("a long passphrase", &hash));
    assert!(!verify_password("a long passphrase\n", &hash));
}

#[test]
fn alerts_and_conversations_list_the_inbox_and_resolve_from_the_terminal() {
    use textdesk::domain::phone::E164;
    use textdesk::store::{AlertKind, ConversationStore, InboundMessage, OwnerAlerts, Recorded};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("desk.db");
    let (ok, out, err) = textdesk_on(&db, &["conversations"], "");
    assert!(ok, "{err}");
    assert!(out.contains("No conversations yet."), "{out}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = textdesk::store::sqlite::SqliteStore::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let recorded = store
            .record_inbound(&InboundMessage {
                business_id: "default".into(),
                channel_message_id: format!("SM{}", "1".repeat(32)),
                from: E164::parse("+15035551234").unwrap(),
                to: E164::parse("+15035550142").unwrap(),
                body: "Can someone call me?".into(),
                media: Vec::new(),
                params: serde_json::json!({}),
                opt_out_keyword: None,
                profile_name: None,
            })
            .await
            .unwrap();
        let Recorded::New(conversation, _) = recorded else {
            panic!("{recorded:?}")
        };
        store
            .record_alert(
                &AlertKind::Handoff,
                Some(conversation),
                "The customer asked for a person",
            )
            .await
            .unwrap();
    });

    let (ok, out, err) = textdesk_on(&db, &["conversations", "--json"], "");
    assert!(ok, "{err}");
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["phone"], "+15035551234", "the owner sees the full number");
    assert_eq!(row["needs_you"], true);
    assert_eq!(row["last_text"], "Can someone call me?");

    let (ok, out, err) = textdesk_on(&db, &["alerts", "--json"], "");
    assert!(ok, "{err}");
    let alert: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(alert["phone"], "+15035551234");
    assert_eq!(alert["detail"], "The customer asked for a person");
    let id = alert["id"].as_i64().unwrap().to_string();

    let (ok, out, err) = textdesk_on(&db, &["alerts", "--resolve", &id], "");
    assert!(ok, "{err}");
    assert!(out.contains("resolved"), "{out}");
    let (ok, out, _) = textdesk_on(&db, &["alerts"], "");
    assert!(ok && out.contains("No open alerts."), "{out}");
    let (ok, _, err) = textdesk_on(&db, &["alerts", "--resolve", &id], "");
    assert!(!ok && err.contains("no open alert"), "{err}");
    let (_, out, _) = textdesk_on(&db, &["conversations", "--json"], "");
    assert!(
        out.contains("\"needs_you\":false"),
        "resolved alerts no longer pin: {out}"
    );
}

/// Runs textdesk on the database `db` and the business file(s) `config`.
fn textdesk_with(db: &std::path::Path, config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_textdesk"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("BUSINESS_CONFIG", config)
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .expect("run textdesk");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A business file and a database holding the console's settings for it,
/// as `/owner/settings` saves them.
fn business_with_console_settings(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use textdesk::config::fragments::{CONSOLE_EDITOR, Fragment};
    use textdesk::store::AssistantFragments;
    let file = dir.join("rose.toml");
    std::fs::write(
        &file,
        "# The owner's comments stay in the file.\n[business]\nname = \"Rose City Junk\"\n\n[assistant]\ntone = \"friendly\"\nadditional_rules = [\"FILE-RULE.\"]\n",
    )
    .unwrap();
    let db = dir.join("desk.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = textdesk::store::sqlite::SqliteStore::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let fragment = |key: &str, value: &str| Fragment {
            key: key.into(),
            value: value.into(),
            updated_at: chrono::Utc::now(),
            updated_by: CONSOLE_EDITOR.into(),
        };
        store
            .replace_assistant_fragments(
                "rose",
                &[
                    fragment("additional_rules", "[\"CONSOLE-RULE.\"]"),
                    fragment("tone", "\"casual\""),
                ],
            )
            .await
            .unwrap();
    });
    (file, db)
}

#[test]
fn check_config_shows_the_console_s_overrides_with_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let (file, db) = business_with_console_settings(dir.path());
    let (ok, out, err) = textdesk_with(&db, &file, &["check-config", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("Console overrides"), "{out}");
    assert!(
        out.contains("[assistant] tone = \"casual\"  (source: console, replaces the file's value"),
        "{out}"
    );
    assert!(
        out.contains("(source: console, appended to the file's list"),
        "{out}"
    );
    assert!(out.contains("Assistant:  tone casual"), "{out}");
    // The assembled prompt names each section's source.
    assert!(
        out.contains("(from console: [assistant] additional_rules)"),
        "{out}"
    );
    assert!(out.contains("(from [assistant] additional_rules)"), "{out}");

    // Without a database, check-config creates none and shows the file.
    let missing = dir.path().join("none.db");
    let (ok, out, err) = textdesk_with(&missing, &file, &["check-config", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(!out.contains("Console overrides"), "{out}");
    assert!(!missing.exists());
}

#[test]
fn config_export_writes_the_merged_configuration_as_toml() {
    let dir = tempfile::tempdir().unwrap();
    let (file, db) = business_with_console_settings(dir.path());
    let (ok, out, err) = textdesk_with(&db, &file, &["config", "export"]);
    assert!(ok, "{err}");
    let exported: toml::Table = out.parse().unwrap_or_else(|e| panic!("{e}: {out}"));
    let assistant = exported["assistant"].as_table().unwrap();
    assert_eq!(assistant["tone"].as_str(), Some("casual"));
    let rules: Vec<_> = assistant["additional_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rules, ["FILE-RULE.", "CONSOLE-RULE."]);
    assert_eq!(exported["business"]["name"].as_str(), Some("Rose City Junk"));
    // What it writes is a business file textdesk accepts.
    let again = dir.path().join("exported.toml");
    std::fs::write(&again, &out).unwrap();
    let (ok, _, err) = textdesk_with(&db, &again, &["check-config", again.to_str().unwrap()]);
    assert!(ok, "{err}");

    let (ok, _, err) = textdesk_with(&db, &file, &["config", "export", "--business", "nobody"]);
    assert!(!ok && err.contains("no business `nobody`"), "{err}");
}

#[test]
fn serve_says_where_an_unreachable_database_is_and_hides_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("business.toml");
    std::fs::write(&file, "[business]\nname = \"Rose City Junk\"\n").unwrap();
    // Nothing listens on port 1.
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_textdesk"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", "0")
        .env("DATABASE_URL", "postgres://desk:s3cret-pw@127.0.0.1:1/desk")
        .env("BUSINESS_CONFIG", &file)
        .env("OUTBOX_DIR", dir.path().join("outbox"))
        .output()
        .expect("run textdesk serve");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "serve must exit non-zero: {stderr}");
    assert!(
        stderr.contains("127.0.0.1:1"),
        "names the host and port: {stderr}"
    );
    // What happened, at once: not the pool's "timed out" after its 3 s.
    assert!(
        stderr.to_lowercase().contains("connection refused"),
        "says the connection was refused: {stderr}"
    );
    assert!(!stderr.contains("timed out"), "{stderr}");
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    assert!(stderr.contains("running"), "says to check the server: {stderr}");
    assert!(stderr.contains("DATABASE_URL"), "says to check the URL: {stderr}");
    assert!(
        !stderr.contains("s3cret-pw") && !stdout.contains("s3cret-pw"),
        "never the password: {stdout}{stderr}"
    );
}

#[test]
fn a_hand_off_in_chat_prints_no_log_line_into_the_conversation() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("desk.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_textdesk"))
        .args(["chat", "--from", "+15035551234"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("TMPDIR", dir.path())
        .env_remove("BUSINESS_CONFIG")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run textdesk");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hi\ncan I talk to a person\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{err}");
    assert!(out.contains("I've asked the owner to text you"), "{out}");
    for printed in [&out, &err] {
        for noise in ["ERROR", "WARN", "owner alert"] {
            assert!(!printed.contains(noise), "{noise} in the terminal: {printed}");
        }
    }
    // The log is in its file, the hand-off at info: normal business.
    let log = std::fs::read_to_string(dir.path().join("textdesk-chat.log")).unwrap();
    let handoff = log
        .lines()
        .find(|l| l.contains("owner alert") && l.contains("handoff"))
        .unwrap_or_else(|| panic!("no hand-off in the log: {log}"));
    assert!(handoff.contains("INFO"), "{handoff}");
    assert!(
        out.contains("textdesk-chat.log"),
        "the chat says where its log is: {out}"
    );
}
