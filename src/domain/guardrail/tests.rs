//! The checker on its own: every defect the issue quotes, more adversarial
//! drafts, and the product's own texts, which must pass.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::config::business::BusinessConfig;
use crate::domain::conversation::{
    Booked, Booking, CloseReason, Closed, Intake, JobDetails, OfferedSlot, Quoted, Scheduling,
};
use crate::domain::quote::{JobSpec, JunkJob, Selected, price};
use crate::templates;

fn business() -> BusinessConfig {
    BusinessConfig::parse(
        include_str!("../../../business.toml"),
        std::path::Path::new("business.toml"),
    )
    .unwrap()
}

/// Saturday Nov 28 2026, 10am in Portland.
fn now() -> DateTime<Utc> {
    chrono_tz::America::Los_Angeles
        .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn local(day: u32, hour: u32) -> DateTime<Utc> {
    chrono_tz::America::Los_Angeles
        .with_ymd_and_hms(2026, 11, day, hour, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn quote(items: &[&str]) -> Quote {
    let job = JobSpec::Junk(JunkJob {
        tier: Some("half_truck".into()),
        items: items
            .iter()
            .map(|id| Selected {
                id: (*id).into(),
                quantity: 1,
            })
            .collect(),
        ..JunkJob::default()
    });
    price(&business().pricing, &job, "q".into(), now()).unwrap()
}

/// The only opening offered: Mon Nov 30, 8-10am.
fn slot() -> OfferedSlot {
    OfferedSlot {
        id: 1,
        start: local(30, 8),
        end: local(30, 11),
        label: "Mon Nov 30, 8-10am".into(),
        crew: "crew-1".into(),
        quote: None,
    }
}

fn booking() -> Booking {
    Booking {
        id: "b1".into(),
        slot: slot(),
        calendar_event_id: "b1".into(),
    }
}

fn quoted() -> ConversationState {
    ConversationState::Quoted(Quoted {
        job: JobDetails::default(),
        quote: quote(&[]),
    })
}

fn scheduling() -> ConversationState {
    ConversationState::Scheduling(Scheduling {
        job: JobDetails::default(),
        quote: quote(&[]),
        offered: vec![slot()],
        rescheduling: None,
        picked: None,
    })
}

fn booked() -> ConversationState {
    ConversationState::Booked(Booked {
        job: JobDetails::default(),
        quote: quote(&[]),
        booking: booking(),
    })
}

fn facts_of(before: &ConversationState, after: &ConversationState) -> Facts {
    let quotes: Vec<Quote> = after.quote().into_iter().cloned().collect();
    Facts::of(&business().guardrail_terms(), before, after, &quotes, now())
}

fn kinds(text: &str, facts: &Facts) -> Vec<ViolationKind> {
    check(text, facts).into_iter().map(|v| v.kind).collect()
}

use ViolationKind::*;

#[test]
fn the_quote_used_here_is_350_with_a_150_delivery_line() {
    let q = quote(&[]);
    assert_eq!(q.total.to_string(), "$350");
    assert!(q.lines.iter().any(|l| l.amount.to_string() == "$150"), "{q:?}");
}

#[test]
fn dates_and_times_the_model_wrote() {
    let offered = facts_of(&quoted(), &scheduling());
    let quoted = facts_of(&quoted(), &quoted());
    // With no openings looked up.
    assert_eq!(
        kinds("We can come Tuesday at 3pm! Does that work?", &quoted),
        [Date, Time]
    );
    // The only opening offered was 8-10am.
    assert_eq!(
        kinds("Good news: Mon Nov 30 at 2:30pm works for us.", &offered),
        [Time]
    );
    // Nov 30 is a Monday.
    assert_eq!(kinds("How about Tuesday, Nov 30, 8-10am?", &offered), [Weekday]);
    // No booking exists.
    let friday = check("You're booked for Friday! See you then.", &offered);
    assert!(friday.iter().any(|v| v.kind == StateClaim), "{friday:?}");
    assert!(
        friday
            .iter()
            .any(|v| v.kind == Date && v.phrase.contains("friday")),
        "{friday:?}"
    );
    // After book_slot refused a made-up slot, the state is still SCHEDULING.
    let refused = check("All set, you're booked for Thursday at 10:15am!", &offered);
    let found: Vec<ViolationKind> = refused.iter().map(|v| v.kind).collect();
    for kind in [StateClaim, Date, Time] {
        assert!(found.contains(&kind), "{kind:?} in {refused:?}");
    }
}

#[test]
fn commitments_nobody_configured() {
    let booked = facts_of(&booked(), &booked());
    for draft in [
        "we'll waive the $150 delivery fee for you!",
        "Guaranteed same-day pickup",
        "we'll be there in 30 minutes!",
        "The owner will call you within 10 minutes.",
        "Sure, we can haul the extra chair free of charge.",
        "No extra cost for the stairs!",
        "We'll be there within the hour.",
        "I'll throw in the mattress for free",
        "I can give you a discount if you book today",
        "Our crew is on the way",
        "The owner will text you back by 5pm",
    ] {
        assert!(kinds(draft, &booked).contains(&Commitment), "{draft}");
    }
    // The booking and its calendar event were still live.
    let live = kinds("your booking is cancelled and you won't be charged", &booked);
    assert_eq!(live, [StateClaim, Commitment]);
}

#[test]
fn the_owner_allows_and_extends_commitments() {
    let mut business = business();
    business.guardrail = toml::from_str::<GuardrailConfig>(
        "allowed_commitments = [\"free estimates\", \"satisfaction guaranteed\"]\n\
         forbidden_phrases = [\"cash discount\", \"in # days\"]",
    )
    .unwrap();
    let facts = Facts::of(
        &business.guardrail_terms(),
        &quoted(),
        &quoted(),
        [&quote(&[])],
        now(),
    );
    assert!(check("We give free estimates, satisfaction guaranteed.", &facts).is_empty());
    assert_eq!(kinds("Free pickup too!", &facts), [Commitment]);
    assert_eq!(kinds("Ask about our cash discount", &facts), [Commitment]);
    assert_eq!(kinds("The owner will reply in 2 days", &facts), [Commitment]);
}

#[test]
fn guardrail_config_is_validated() {
    let parse = |t: &str| toml::from_str::<GuardrailConfig>(t).map_err(|e| e.to_string());
    assert!(
        parse("allowed_commitments = [\"  \"]")
            .unwrap_err()
            .contains("has no words")
    );
    assert!(
        parse("forbidden_phrases = [\"deal\", \"Deal\"]")
            .unwrap_err()
            .contains("twice")
    );
    assert!(
        parse("allowed_commitments = [\"free\"]\nforbidden_phrases = [\"free\"]")
            .unwrap_err()
            .contains("both")
    );
    assert!(parse("allow = [\"x\"]").is_err());
    let err = BusinessConfig::parse(
        "[guardrail]\nforbidden_phrases = [\"!!\"]\n",
        std::path::Path::new("business.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("business.toml:") && err.contains("guardrail"),
        "{err}"
    );
}

#[test]
fn prices_the_guardrail_could_not_see() {
    let facts = facts_of(&quoted(), &quoted());
    assert_eq!(
        kinds("That's three hundred fifty dollars all in.", &facts),
        Vec::<ViolationKind>::new()
    );
    assert_eq!(kinds("About three hundred dollars.", &facts), [Amount]);
    assert_eq!(kinds("Call it two fifty bucks", &facts), [Amount]);
    assert_eq!(kinds("Only \u{FF04}\u{FF11}\u{FF19}\u{FF19}", &facts), [Amount]);
    // A reply that Twilio splits: "$" ends one text, "199." starts the next.
    let long = format!(
        "{} Your price today is just $\n199. Shall I book it?",
        "Sure thing. ".repeat(13)
    );
    assert_eq!(kinds(&long, &facts), [Price]);
    assert_eq!(kinds("I'll knock off 20% for you", &facts), [Percent, Commitment]);
    // A real line amount stated as the total.
    assert_eq!(kinds("Your total is $150", &facts), [Price]);
    assert!(check("That's $150 delivery plus $200 labour.", &facts).is_empty());
    assert!(
        check(
            "Your total is $350 ($150 delivery + $200 labour, $50/hour).",
            &facts
        )
        .is_empty()
    );
    // Configured percentages, in their role.
    assert!(check("Seniors get 10% off.", &facts).is_empty());
    assert!(check("Weekends are 10% extra, same-day 20% more.", &facts).is_empty());
    assert_eq!(kinds("Same-day is 20% off!", &facts), [Percent]);
}

#[test]
fn an_old_total_after_the_job_changed_is_not_the_price() {
    let old = quote(&[]);
    let new = quote(&["piano"]);
    assert_ne!(old.total, new.total);
    let after = ConversationState::Quoted(Quoted {
        job: JobDetails::default(),
        quote: new.clone(),
    });
    let facts = Facts::of(
        &business().guardrail_terms(),
        &quoted(),
        &after,
        [&old, &new],
        now(),
    );
    let draft = format!("still just {} total with the piano!", old.total);
    assert_eq!(kinds(&draft, &facts), [Price]);
    assert!(check(&format!("With the piano it's {}.", new.total), &facts).is_empty());
    // The job changed and was not priced again: no figure is current.
    let intake = ConversationState::Intake(Intake::default());
    let facts = Facts::of(&business().guardrail_terms(), &quoted(), &intake, [&old], now());
    assert_eq!(kinds(&format!("Still {}!", old.total), &facts), [Amount]);
}

#[test]
fn more_adversarial_drafts() {
    let offered = facts_of(&quoted(), &scheduling());
    let quoted = facts_of(&quoted(), &quoted());
    let cases: &[(&str, &Facts, &[ViolationKind])] = &[
        ("Could do it on Tues 12/1 at 8am", &offered, &[Date, Time]),
        ("How about tomorrow at noon?", &offered, &[Date, Time]),
        ("We have Monday the 30th open", &offered, &[]),
        ("We have Tuesday the 30th open", &offered, &[Weekday]),
        ("Nov 31 works", &offered, &[Date]),
        ("We could come 1-3pm Monday", &offered, &[Time]),
        ("Mon Nov 30, 8 a.m. to 10 a.m.", &offered, &[]),
        ("Friday works!", &quoted, &[Date]),
        ("Does Friday suit you?", &quoted, &[]),
        ("Does Friday at 9am suit you?", &quoted, &[Time]),
        ("Re: are you open sunday?", &quoted, &[]),
        ("our crew can be there soon", &quoted, &[]),
        ("Sorry, we're closed Sundays and on Dec 25.", &quoted, &[]),
        ("For a 3/2 home that's $350", &quoted, &[]),
        ("About 1/2 a truck is $350", &quoted, &[]),
        ("Closed on 3/2", &quoted, &[Date]),
        (
            "Your appointment is confirmed for 11/30.",
            &offered,
            &[StateClaim],
        ),
        ("We've moved you to Mon Nov 30, 8-10am.", &offered, &[StateClaim]),
        ("It's $350 plus a $40 fuel charge", &quoted, &[Amount]),
        ("$350 flat, 100% satisfaction", &quoted, &[Percent]),
        ("We'll beat any price you find", &quoted, &[Commitment]),
        ("USD 199 total", &quoted, &[Price]),
        ("350$ total", &quoted, &[]),
    ];
    for (draft, facts, expected) in cases {
        assert_eq!(
            &kinds(draft, facts),
            expected,
            "{draft}: {:?}",
            check(draft, facts)
        );
    }
}

#[test]
fn hedged_and_true_claims_pass() {
    let offered = facts_of(&quoted(), &scheduling());
    for text in [
        "Once you pick a time, you'll be all set.",
        "Nothing is booked yet: reply 1 to book Mon Nov 30, 8-10am.",
        "Want me to get you booked for Mon Nov 30, 8-10am?",
        "You're not booked yet.",
        "Feel free to ask anything. We have a free slot Mon Nov 30.",
        "Reply with a number, or tell me a day that suits you.",
    ] {
        assert!(
            check(text, &offered).is_empty(),
            "{text}: {:?}",
            check(text, &offered)
        );
    }
    let now_booked = facts_of(&scheduling(), &booked());
    let text = "All set! You're booked for Monday, Nov 30, 8-10am. See you then.";
    assert!(
        check(text, &now_booked).is_empty(),
        "{:?}",
        check(text, &now_booked)
    );
    let cancelled = ConversationState::Cancelled(Closed {
        reason: CloseReason::CancelledByCustomer,
        at: now(),
        job: None,
        quote: None,
    });
    let facts = facts_of(&booked(), &cancelled);
    let text = "Your booking for Mon Nov 30, 8-10am is cancelled. Text us any time to book again.";
    assert!(check(text, &facts).is_empty(), "{:?}", check(text, &facts));
}

#[test]
fn the_customers_own_name_and_address_are_quoted_not_read() {
    for name in [
        "Tuesday Weld",
        "Eve Sunday",
        "Dawn Noon",
        "Free Willy",
        "Guaranteed Smith",
    ] {
        let job = JobDetails {
            customer_name: Some(name.into()),
            address: Some("12 Monday Lane, Suite 3pm".into()),
            ..JobDetails::default()
        };
        let quoted = ConversationState::Quoted(Quoted {
            job,
            quote: quote(&[]),
        });
        let facts = facts_of(&quoted, &quoted);
        let text = format!("Thanks, {name}! The job is at 12 Monday Lane, Suite 3pm. What time suits you?");
        assert_eq!(check(&text, &facts), [], "{text}");
    }
    // Someone else's name is still read.
    assert_eq!(
        kinds("Thanks, Tuesday Weld!", &facts_of(&quoted(), &quoted())),
        [Date]
    );
}

#[test]
fn the_products_own_texts_pass() {
    let business = business();
    let q = quote(&[]);
    let quoted_facts = facts_of(&ConversationState::default(), &quoted());
    let offered = facts_of(&quoted(), &scheduling());
    let booked_facts = facts_of(&scheduling(), &booked());
    let kept = facts_of(&booked(), &booked());
    let menu = crate::domain::guided::QUOTED_MENU;
    let quote_text = templates::quote_message(&business, &q);
    let pricing = &business.pricing;
    let mut texts: Vec<(String, &Facts)> = vec![
        (
            format!("{} {quote_text} {menu}", business.greeting()),
            &quoted_facts,
        ),
        (templates::follow_up(&business, &q), &quoted_facts),
        (templates::help(&business), &quoted_facts),
        (templates::apology(&business), &quoted_facts),
        (
            format!(
                "Openings:\n1) {}\nReply with a number, or tell me a day that suits you.",
                slot().label
            ),
            &offered,
        ),
        (
            templates::confirmation(&business, &slot().label, q.total),
            &booked_facts,
        ),
        (
            format!(
                "You're booked: {}. Total {}. {}",
                slot().label,
                q.total,
                crate::domain::guided::RESCHEDULE_HINT
            ),
            &booked_facts,
        ),
        (
            format!("Thanks! You're confirmed for {}. See you then.", slot().label),
            &kept,
        ),
        (
            format!("No problem: you're still booked for {}.", slot().label),
            &kept,
        ),
        ("OK, I've asked the owner to text you.".into(), &quoted_facts),
        (crate::domain::guided::ADDRESS_QUESTION.into(), &quoted_facts),
        (
            "Our calendar is unavailable right now; the owner will text you to set a time.".into(),
            &quoted_facts,
        ),
        (
            "We have no openings soon; the owner will text you to find a time.".into(),
            &quoted_facts,
        ),
    ];
    let job = JobDetails::default();
    let kind = business.business.kind;
    let mut questions = Vec::new();
    let mut next = crate::domain::guided::next_question(&job, kind, pricing);
    if let Some(q) = next.take() {
        questions.push(crate::domain::guided::ask(q, pricing));
    }
    questions.push(crate::domain::guided::ask(
        crate::domain::guided::Question::Extras,
        pricing,
    ));
    texts.extend(questions.into_iter().map(|q| (q, &quoted_facts)));
    // The model restating the quote's own breakdown, as get_quote gave it.
    texts.push((q.breakdown().replace('\n', ". "), &quoted_facts));
    // The reminder goes out the day before the booking.
    let reminder = templates::reminder(&business, &slot().label, q.total, true);
    let mut eve = kept.clone();
    eve.today = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    texts.push((reminder, &eve));
    for (text, facts) in texts {
        let found = check(&text, facts);
        assert!(found.is_empty(), "{text}: {found:?}");
    }
}

#[test]
fn the_maid_examples_own_texts_pass() {
    use crate::domain::quote::MaidJob;
    let business = BusinessConfig::parse(
        include_str!("../../../examples/maid.toml"),
        std::path::Path::new("maid.toml"),
    )
    .unwrap();
    for (bedrooms, bathrooms, clean) in [(3, 2, "deep"), (2, 1, "standard"), (4, 3, "move_out")] {
        let job = JobSpec::Maid(MaidJob {
            bedrooms,
            bathrooms: bathrooms.into(),
            clean_type: clean.into(),
            ..MaidJob::default()
        });
        let q = price(&business.pricing, &job, "q".into(), now()).unwrap();
        let state = ConversationState::Quoted(Quoted {
            job: JobDetails::default(),
            quote: q.clone(),
        });
        let facts = Facts::of(&business.guardrail_terms(), &state, &state, [&q], now());
        let text = format!(
            "{} {} {}",
            business.greeting(),
            templates::quote_message(&business, &q),
            crate::domain::guided::QUOTED_MENU
        );
        assert!(
            check(&text, &facts).is_empty(),
            "{text}: {:?}",
            check(&text, &facts)
        );
        // The model restating the quote's own breakdown.
        let breakdown = q.breakdown().replace('\n', ". ");
        assert!(
            check(&breakdown, &facts).is_empty(),
            "{breakdown}: {:?}",
            check(&breakdown, &facts)
        );
        let mut asked = JobDetails::default();
        while let Some(question) =
            crate::domain::guided::next_question(&asked, business.business.kind, &business.pricing)
        {
            let text = crate::domain::guided::ask(question, &business.pricing);
            assert!(
                check(&text, &facts).is_empty(),
                "{text}: {:?}",
                check(&text, &facts)
            );
            match question {
                crate::domain::guided::Question::Bedrooms => asked.bedrooms = Some(3),
                crate::domain::guided::Question::Bathrooms => asked.bathrooms = Some(2.into()),
                crate::domain::guided::Question::CleanType => asked.clean_type = Some("deep".into()),
                _ => break,
            }
        }
    }
}
