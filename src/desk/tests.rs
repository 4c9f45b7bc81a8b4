//! The desk's operations that need no calendar, as plain functions. Those
//! that do (offer, book, cancel) are exercised through the tools and the
//! guided flow in tests/api.

use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, TimeZone};

use super::*;
use crate::domain::conversation::{Intake, JobDetails, Scheduling};
use crate::domain::phone::E164;
use crate::store::{ConversationId, CustomerId};

fn business() -> BusinessConfig {
    BusinessConfig::parse(include_str!("../../business.toml"), Path::new("business.toml")).unwrap()
}

fn conversation() -> Conversation {
    Conversation {
        id: ConversationId(7),
        customer_id: CustomerId(3),
        customer_phone: E164::parse("+15035551234").unwrap(),
        business_number: E164::parse("+15035550100").unwrap(),
        opted_out: false,
        profile_name: None,
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 18, 0, 0).unwrap()
}

/// A size the example catalog has.
fn priced_job(business: &BusinessConfig) -> JobDetails {
    JobDetails {
        size: Some(business.pricing.junk.tiers[0].id.clone()),
        ..JobDetails::default()
    }
}

struct Work {
    state: ConversationState,
    new_quotes: Vec<Quote>,
    alerts: Vec<OwnerAlert>,
}

impl Work {
    fn at(state: ConversationState) -> Self {
        Self {
            state,
            new_quotes: Vec::new(),
            alerts: Vec::new(),
        }
    }

    fn turn<'a>(&'a mut self, business: &'a BusinessConfig, conversation: &'a Conversation) -> Turn<'a> {
        Turn {
            business,
            conversation,
            now: now(),
            state: &mut self.state,
            new_quotes: &mut self.new_quotes,
            alerts: &mut self.alerts,
        }
    }
}

fn slot(id: u8, hours_from_now: i64) -> OfferedSlot {
    OfferedSlot {
        id,
        start: now() + Duration::hours(hours_from_now),
        end: now() + Duration::hours(hours_from_now + 2),
        label: format!("opening {id}"),
        crew: "crew-1".into(),
        quote: None,
    }
}

#[test]
fn a_described_job_is_priced_and_becomes_the_quote() {
    let business = business();
    let conversation = conversation();
    let mut work = Work::at(ConversationState::Intake(Intake {
        job: priced_job(&business),
    }));
    let quote = issue_quote(&mut work.turn(&business, &conversation)).unwrap();
    assert_eq!(work.state.name(), "QUOTED");
    assert_eq!(work.state.quote(), Some(&quote));
    assert_eq!(work.new_quotes, vec![quote.clone()]);
    assert!(quote.total.amount() > rust_decimal::Decimal::ZERO);
    assert!(quote.id.starts_with('Q') && quote.id.len() == 17);
}

#[test]
fn an_undescribed_job_is_not_priced_and_nothing_changes() {
    let business = business();
    let conversation = conversation();
    let mut work = Work::at(ConversationState::default());
    let refused = issue_quote(&mut work.turn(&business, &conversation));
    assert!(matches!(refused, Err(DeskError::Incomplete(_))), "{refused:?}");
    assert_eq!(work.state, ConversationState::default());
    assert!(work.new_quotes.is_empty());
}

#[test]
fn a_hand_off_moves_the_conversation_and_tells_the_owner() {
    let business = business();
    let conversation = conversation();
    let mut work = Work::at(ConversationState::default());
    hand_off(
        &mut work.turn(&business, &conversation),
        HandoffReason::Complaint,
        "  Unhappy with the last visit. ",
    )
    .unwrap();
    assert_eq!(work.state.name(), "HANDED_OFF");
    assert_eq!(
        work.alerts,
        vec![OwnerAlert {
            kind: crate::store::AlertKind::Handoff,
            detail: "Handed to you (a complaint): customer +1503***1234. Unhappy with the last visit.".into(),
        }]
    );
    // Handed off already: the state machine refuses a second one.
    let again = hand_off(
        &mut work.turn(&business, &conversation),
        HandoffReason::Other,
        "again",
    );
    assert!(matches!(again, Err(DeskError::NotAllowed(_))), "{again:?}");
    assert_eq!(work.alerts.len(), 1);
}

#[test]
fn keeping_a_booking_needs_a_reschedule_in_progress() {
    let business = business();
    let conversation = conversation();
    let mut work = Work::at(ConversationState::default());
    let refused = keep_booking(&mut work.turn(&business, &conversation));
    assert!(matches!(refused, Err(DeskError::NotAllowed(_))), "{refused:?}");
}

#[test]
fn only_an_opening_on_offer_can_be_picked() {
    let business = business();
    let mut quoting = Work::at(ConversationState::Intake(Intake {
        job: priced_job(&business),
    }));
    let quote = issue_quote(&mut quoting.turn(&business, &conversation())).unwrap();
    let scheduling = ConversationState::Scheduling(Scheduling {
        job: priced_job(&business),
        quote,
        offered: vec![slot(1, 48), slot(2, 72)],
        rescheduling: None,
        picked: None,
    });
    assert_eq!(offered_slot(&scheduling, 2).unwrap(), slot(2, 72));
    match offered_slot(&scheduling, 5) {
        Err(DeskError::NotOffered { id: 5, offered }) => assert_eq!(offered, vec![1, 2]),
        other => panic!("expected NotOffered, got {other:?}"),
    }
    assert!(matches!(
        offered_slot(&ConversationState::default(), 1),
        Err(DeskError::NotAllowed(_))
    ));
}

#[test]
fn dropping_the_current_time_renumbers_and_keeps_each_price_beside_its_opening() {
    let mut offer = Offer {
        slots: vec![slot(1, 48), slot(2, 72), slot(3, 96)],
        note: None,
        prices: vec![
            Some("$300".into()),
            None,
            Some("$385 with weekend service".into()),
        ],
    };
    without_start(&mut offer, slot(2, 72).start);
    assert_eq!(
        offer.slots.iter().map(|s| (s.id, s.start)).collect::<Vec<_>>(),
        vec![(1, slot(1, 48).start), (2, slot(3, 96).start)]
    );
    assert_eq!(
        offer.prices,
        vec![Some("$300".into()), Some("$385 with weekend service".into())]
    );
}

/// A web visitor in SCHEDULING with openings on offer and an address.
fn web_scheduling(business: &BusinessConfig, verified: Option<&str>) -> (Conversation, ConversationState) {
    let mut job = priced_job(business);
    job.address = Some("12 Oak St".into());
    job.verified_phone = verified.map(|p| E164::parse(p).unwrap());
    let quote = crate::domain::quote::price(
        &business.pricing,
        &job.to_spec(business.business.kind).unwrap(),
        "Q1".into(),
        now(),
    )
    .unwrap();
    let conversation = Conversation {
        customer_phone: E164::web("0123456789abcdef0123456789abcdef").unwrap(),
        ..conversation()
    };
    let state = ConversationState::Scheduling(Scheduling {
        job,
        quote,
        offered: vec![slot(1, 20)],
        rescheduling: None,
        picked: None,
    });
    (conversation, state)
}

#[tokio::test]
async fn the_desk_books_no_web_visitor_without_a_verified_phone() {
    let business = business();
    let store = Arc::new(
        crate::store::sqlite::SqliteStore::connect("sqlite::memory:")
            .await
            .unwrap(),
    );
    let scheduler = Scheduler::new(store.clone(), Arc::new(crate::calendar::LocalCalendar));
    let (web, state) = web_scheduling(&business, None);
    let mut work = Work::at(state.clone());
    let refused = book(&mut work.turn(&business, &web), &scheduler, 1).await;
    assert!(matches!(refused, Err(DeskError::PhoneUnverified)), "{refused:?}");
    // Nothing booked; the pick is kept for when the number is verified.
    let ConversationState::Scheduling(before) = &state else {
        unreachable!("web_scheduling is SCHEDULING")
    };
    let kept = ConversationState::Scheduling(Scheduling {
        picked: Some(1),
        ..before.clone()
    });
    assert_eq!(work.state, kept);
    assert!(
        crate::store::BookingStore::bookings(store.as_ref())
            .await
            .unwrap()
            .is_empty()
    );

    // A text customer needs no such proof: the check is the web channel's.
    let sms = conversation();
    let mut work = Work::at(state);
    let result = book(&mut work.turn(&business, &sms), &scheduler, 1).await;
    assert!(!matches!(result, Err(DeskError::PhoneUnverified)), "{result:?}");

    // A verified web visitor passes the check and reaches the calendar
    // (which judges the opening as for anyone; the API tests book one).
    let (web, state) = web_scheduling(&business, Some("+15035557788"));
    let mut work = Work::at(state);
    let result = book(&mut work.turn(&business, &web), &scheduler, 1).await;
    assert!(!matches!(result, Err(DeskError::PhoneUnverified)), "{result:?}");
}
