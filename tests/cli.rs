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

#[test]
fn check_config_warns_of_a_weekend_surcharge_while_closed_on_weekends() {
    let (ok, out, err) = textdesk(&["check-config", "examples/maid.toml"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "WARNING: [[pricing.modifiers]] `weekend` (Weekend service) applies on weekends, but [schedule.hours] \
             is closed on Saturday and Sunday: it is never charged."
        ),
        "{out}"
    );
    // The shipped junk-removal business is open Saturdays: no such warning.
    let (ok, out, err) = textdesk(&["check-config"]);
    assert!(ok, "{err}");
    assert!(!out.contains("is never charged"), "{out}");
}
