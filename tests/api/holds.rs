//! Exclusive holds: an opening is on offer to one customer at a time, and a
//! customer who books the opening they hold is never refused because of
//! someone else's hold.

use std::sync::Arc;

use crate::helpers::TestDb;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use textdesk::calendar::LocalCalendar;
use textdesk::config::business::{BusinessConfig, BusinessKind};
use textdesk::domain::availability::DateFilter;
use textdesk::domain::conversation::JobDetails;
use textdesk::domain::phone::E164;
use textdesk::domain::quote::{Quote, price};
use textdesk::scheduling::Scheduler;
use textdesk::store::{BookingStatus, ConversationId, InboundMessage, Recorded, Store};

/// One crew, open Mondays 08:00-10:00 only: a two-hour job fits once a week.
const ONE_OPENING: &str = r#"
[business]
name = "Rose City Junk Haulers"
phone = "+15035550142"
timezone = "America/Los_Angeles"

[schedule]
min_notice_hours = 0
horizon_days = 6
slot_minutes = 60
arrival_window_minutes = 0
buffer_before_minutes = 0
buffer_after_minutes = 0

[schedule.hours]
mon = "08:00-10:00"
tue = "closed"
wed = "closed"
thu = "closed"
fri = "closed"
sat = "closed"
sun = "closed"

[[providers]]
id = "crew-1"
name = "Crew 1"
"#;

struct Rig {
    store: Arc<dyn Store>,
    scheduler: Arc<Scheduler>,
    business: Arc<BusinessConfig>,
    _db: TestDb,
}

async fn rig(toml: &str) -> Rig {
    let db = TestDb::new().await;
    let store = db.store().await;
    let business = Arc::new(BusinessConfig::parse(toml, std::path::Path::new("t.toml")).unwrap());
    let scheduler = Arc::new(Scheduler::new(store.clone(), Arc::new(LocalCalendar)));
    Rig {
        store,
        scheduler,
        business,
        _db: db,
    }
}

impl Rig {
    async fn customer(&self, i: usize) -> ConversationId {
        let sms = InboundMessage {
            business_id: "test".into(),
            channel_message_id: format!("SMhold{i:030}"),
            from: E164::parse(&format!("+1503555{i:04}")).unwrap(),
            to: E164::parse("+15035550142").unwrap(),
            body: "hi".into(),
            media: vec![],
            params: json!({}),
            opt_out_keyword: None,
            profile_name: None,
        };
        match self.store.record_inbound(&sms).await.unwrap() {
            Recorded::New(c, _) | Recorded::Duplicate(c, _) => c,
        }
    }

    fn quote(&self, now: DateTime<Utc>) -> Quote {
        let job = job();
        price(
            &self.business.pricing,
            &job.to_spec(BusinessKind::JunkRemoval).unwrap(),
            "QHOLD".into(),
            now,
        )
        .unwrap()
    }
}

fn job() -> JobDetails {
    JobDetails {
        size: Some("half_truck".into()),
        address: Some("12 Oak St, Portland".into()),
        customer_name: Some("Dana".into()),
        ..JobDetails::default()
    }
}

/// Sunday 2030-03-03, noon in Portland: the one opening is Monday 8am.
fn sunday_noon() -> DateTime<Utc> {
    chrono_tz::America::Los_Angeles
        .with_ymd_and_hms(2030, 3, 3, 12, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_customers_asking_at_once_for_the_last_opening_one_is_offered_it_and_books_it() {
    if crate::helpers::skipped() {
        return;
    }
    for round in 0..20 {
        let rig = rig(ONE_OPENING).await;
        let now = sunday_noon();
        let quote = rig.quote(now);
        let last_opening = chrono_tz::America::Los_Angeles
            .with_ymd_and_hms(2030, 3, 4, 8, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let mut customers = Vec::new();
        for i in 0..20 {
            customers.push(rig.customer(i).await);
        }

        // Everyone asks at the same moment, each on its own task.
        let asks = customers.iter().map(|&c| {
            let scheduler = rig.scheduler.clone();
            let business = rig.business.clone();
            let quote = quote.clone();
            tokio::spawn(async move {
                let offer = scheduler
                    .for_business(&business)
                    .offer(c, &quote, &DateFilter::default(), None, now)
                    .await
                    .unwrap();
                (c, offer)
            })
        });
        let offers: Vec<_> = futures::future::join_all(asks)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();

        let offered_it: Vec<_> = offers
            .iter()
            .filter(|(_, o)| o.slots.iter().any(|s| s.start == last_opening))
            .collect();
        assert_eq!(
            offered_it.len(),
            1,
            "round {round}: the last opening was offered to {} customers",
            offered_it.len()
        );
        for (_, offer) in &offers {
            assert!(
                offer.slots.iter().all(|s| s.start == last_opening),
                "round {round}: nothing else is open, yet {:?} was offered",
                offer.numbered()
            );
        }

        // Everyone who was offered something books it, at once: nobody is
        // refused because of someone else's hold.
        let books = offers
            .iter()
            .filter(|(_, o)| !o.slots.is_empty())
            .map(|(c, offer)| {
                let scheduler = rig.scheduler.clone();
                let business = rig.business.clone();
                let store = rig.store.clone();
                let quote = quote.clone();
                let slot = offer.slots[0].clone();
                let c = *c;
                tokio::spawn(async move {
                    let conversation = store.turn_input(c, 5).await.unwrap().conversation;
                    scheduler
                        .for_business(&business)
                        .book(&conversation, &job(), &quote, &slot, None, now)
                        .await
                })
            });
        let results: Vec<_> = futures::future::join_all(books)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert!(
            results.iter().all(|r| r.is_ok()),
            "round {round}: a customer holding the opening was refused: {results:?}"
        );
        let confirmed: Vec<_> = rig
            .store
            .bookings()
            .await
            .unwrap()
            .into_iter()
            .filter(|b| b.status == BookingStatus::Confirmed)
            .collect();
        assert_eq!(confirmed.len(), 1, "round {round}: {confirmed:?}");
        assert_eq!(confirmed[0].slot.start, last_opening);
        assert_eq!(confirmed[0].conversation_id, offered_it[0].0);
    }
}

/// One crew, Mondays 08:00-12:00: two-hour jobs can start at 8, 9 or 10.
const MONDAY_MORNING: &str = r#"
[business]
name = "Rose City Junk Haulers"
phone = "+15035550142"
timezone = "America/Los_Angeles"

[schedule]
min_notice_hours = 0
horizon_days = 6
slot_minutes = 60
arrival_window_minutes = 0
buffer_before_minutes = 0
buffer_after_minutes = 0

[schedule.hours]
mon = "08:00-12:00"
tue = "closed"
wed = "closed"
thu = "closed"
fri = "closed"
sat = "closed"
sun = "closed"

[[providers]]
id = "crew-1"
name = "Crew 1"
"#;

#[tokio::test]
async fn rescheduling_never_offers_the_current_opening_but_its_neighbours_stay_open() {
    if crate::helpers::skipped() {
        return;
    }
    let rig = rig(MONDAY_MORNING).await;
    let now = sunday_noon();
    let quote = rig.quote(now);
    let c = rig.customer(1).await;
    let conversation = rig.store.turn_input(c, 5).await.unwrap().conversation;
    let first = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap();
    assert_eq!(
        first.numbered(),
        "1) Mon Mar 4, 8am\n2) Mon Mar 4, 9am\n3) Mon Mar 4, 10am"
    );
    let booking = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation, &job(), &quote, &first.slots[0], None, now)
        .await
        .unwrap();

    let moving = rig
        .scheduler
        .for_business(&rig.business)
        .offer(c, &quote, &DateFilter::default(), Some(&booking), now)
        .await
        .unwrap();
    // 9am overlaps the 8-10am booking: only the booking itself could block
    // it, and a booking does not block its own move.
    assert_eq!(moving.numbered(), "1) Mon Mar 4, 9am\n2) Mon Mar 4, 10am");
}

#[tokio::test]
async fn a_hold_is_refused_when_the_other_customers_job_would_run_into_it() {
    if crate::helpers::skipped() {
        return;
    }
    // 8am blocks the crew until 10:30 (30 minutes after). 10am does not block
    // 8am's job, but 8am's job blocks 10am's arrival: were the hold checked
    // one way only, B would hold 10am and A could no longer book 8am.
    let business = MONDAY_MORNING
        .replace("buffer_after_minutes = 0", "buffer_after_minutes = 30")
        .replace("[schedule]\n", "[schedule]\noffers = 1\n");
    let rig = rig(&business).await;
    let now = sunday_noon();
    let quote = rig.quote(now);
    let (a, b) = (rig.customer(1).await, rig.customer(2).await);
    let offer_a = rig
        .scheduler
        .for_business(&rig.business)
        .offer(a, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap();
    assert_eq!(offer_a.numbered(), "1) Mon Mar 4, 8am");
    let offer_b = rig
        .scheduler
        .for_business(&rig.business)
        .offer(b, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap();
    assert!(offer_b.slots.is_empty(), "{}", offer_b.numbered());
    let conversation = rig.store.turn_input(a, 5).await.unwrap().conversation;
    rig.scheduler
        .for_business(&rig.business)
        .book(&conversation, &job(), &quote, &offer_a.slots[0], None, now)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offers_spanning_two_crews_at_once_never_overlap_and_every_holder_can_book() {
    if crate::helpers::skipped() {
        return;
    }
    let two_crews = format!(
        "{}\n[[providers]]\nid = \"crew-2\"\nname = \"Crew 2\"\n",
        MONDAY_MORNING
            .replace("buffer_before_minutes = 0", "buffer_before_minutes = 30")
            .replace("mon = \"08:00-12:00\"", "mon = \"08:00-17:00\"")
    );
    for round in 0..10 {
        let rig = rig(&two_crews).await;
        let now = sunday_noon();
        let quote = rig.quote(now);
        let mut customers = Vec::new();
        for i in 0..20 {
            customers.push(rig.customer(i).await);
        }
        let asks = customers.iter().map(|&c| {
            let scheduler = rig.scheduler.clone();
            let business = rig.business.clone();
            let quote = quote.clone();
            tokio::spawn(async move {
                let offer = scheduler
                    .for_business(&business)
                    .offer(c, &quote, &DateFilter::default(), None, now)
                    .await
                    .unwrap();
                (c, offer)
            })
        });
        let offers: Vec<_> = futures::future::join_all(asks)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let offered: Vec<_> = offers.iter().filter(|(_, o)| !o.slots.is_empty()).collect();
        assert!(!offered.is_empty(), "round {round}: nobody was offered anything");

        // Each holder books the last opening it was offered, all at once.
        let books = offered.iter().map(|(c, offer)| {
            let scheduler = rig.scheduler.clone();
            let business = rig.business.clone();
            let store = rig.store.clone();
            let quote = quote.clone();
            let slot = offer.slots.last().unwrap().clone();
            let c = *c;
            tokio::spawn(async move {
                let conversation = store.turn_input(c, 5).await.unwrap().conversation;
                scheduler
                    .for_business(&business)
                    .book(&conversation, &job(), &quote, &slot, None, now)
                    .await
            })
        });
        let results: Vec<_> = futures::future::join_all(books)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert!(
            results.iter().all(|r| r.is_ok()),
            "round {round}: a customer holding an opening was refused: {results:?}"
        );
        assert_eq!(
            rig.store
                .bookings()
                .await
                .unwrap()
                .iter()
                .filter(|b| b.status == BookingStatus::Confirmed)
                .count(),
            offered.len()
        );
    }
}

#[tokio::test]
async fn an_expired_hold_frees_the_opening_for_the_next_customer_who_then_books_it() {
    if crate::helpers::skipped() {
        return;
    }
    let rig = rig(ONE_OPENING).await;
    let now = sunday_noon();
    let quote = rig.quote(now);
    let (a, b) = (rig.customer(1).await, rig.customer(2).await);
    let offer_a = rig
        .scheduler
        .for_business(&rig.business)
        .offer(a, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap();
    assert_eq!(offer_a.numbered(), "1) Mon Mar 4, 8am");
    let held = rig
        .scheduler
        .for_business(&rig.business)
        .offer(b, &quote, &DateFilter::default(), None, now)
        .await
        .unwrap();
    assert!(held.slots.is_empty(), "A holds it: {}", held.numbered());

    // Holds last hold_minutes (10 by default); B asks again after that.
    let later = now + chrono::Duration::minutes(11);
    let offer_b = rig
        .scheduler
        .for_business(&rig.business)
        .offer(b, &quote, &DateFilter::default(), None, later)
        .await
        .unwrap();
    assert_eq!(offer_b.numbered(), "1) Mon Mar 4, 8am");
    let conversation_a = rig.store.turn_input(a, 5).await.unwrap().conversation;
    let late = rig
        .scheduler
        .for_business(&rig.business)
        .book(&conversation_a, &job(), &quote, &offer_a.slots[0], None, later)
        .await;
    assert!(late.is_err(), "A's hold had expired and B holds it now: {late:?}");
    let conversation_b = rig.store.turn_input(b, 5).await.unwrap().conversation;
    rig.scheduler
        .for_business(&rig.business)
        .book(&conversation_b, &job(), &quote, &offer_b.slots[0], None, later)
        .await
        .unwrap();
}

/// "Monday" said on a Monday after its only opening has passed means the
/// coming Monday, not "nothing then" and the earliest of any day.
#[tokio::test]
async fn a_day_whose_openings_are_gone_is_offered_a_week_on() {
    if crate::helpers::skipped() {
        return;
    }
    let rig = rig(&ONE_OPENING.replace("horizon_days = 6", "horizon_days = 14")).await;
    let monday_late = chrono_tz::America::Los_Angeles
        .with_ymd_and_hms(2030, 3, 4, 11, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    let conversation = rig.customer(1).await;
    let monday = monday_late
        .with_timezone(&chrono_tz::America::Los_Angeles)
        .date_naive();
    let filter = DateFilter {
        from: Some(monday),
        to: Some(monday),
        part: None,
    };
    let offer = rig
        .scheduler
        .for_business(&rig.business)
        .offer(conversation, &rig.quote(monday_late), &filter, None, monday_late)
        .await
        .unwrap();
    let labels: Vec<&str> = offer.slots.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["Mon Mar 11, 8am"]);
    assert_eq!(
        offer.note.as_deref(),
        Some("Nothing is open that day; these are the openings a week later.")
    );
}
