//! What proactive work a turn sets in motion, decided from the state it
//! started in and the state it ended in. Everything planned here is
//! committed with the turn, so a crash neither loses nor doubles it.

use chrono::{DateTime, Utc};

use crate::config::business::BusinessConfig;
use crate::domain::conversation::{Booking, ConversationState};
use crate::domain::phone::{E164, redact_phone_numbers};
use crate::domain::quote::Quote;
use crate::domain::reminders;
use crate::email::Email;
use crate::jobs::payload::{
    BookingChangeNotice, BookingNotice, BookingReminder, JobPayload, JobTarget, OwnerText, QuoteFollowUp,
};
pub use crate::jobs::payload::{DEFERRED_REPLY, EMAIL, FETCH_MEDIA, FOLLOW_UP, REMINDER};
use crate::store::{AlertKind, NewAlert, NewJob, TurnInput};
use crate::templates;

#[derive(Debug, Default)]
pub struct Plan {
    pub jobs: Vec<NewJob>,
    pub cancel: Vec<String>,
    /// The reply to send instead of the draft: a booking's facts, stated by
    /// code.
    pub confirmation: Option<String>,
}

fn booking_of(state: &ConversationState) -> Option<&Booking> {
    state.standing_booking()
}

/// Whether the turn cancelled the booking that stood before it: the
/// conversation ended cancelled, or the owner cancelled one held through
/// a hand-off or an opt-out. (A job done closes the conversation instead.)
fn cancelled(before: &ConversationState, after: &ConversationState) -> bool {
    booking_of(before).is_some()
        && booking_of(after).is_none()
        && matches!(
            after,
            ConversationState::Cancelled(_)
                | ConversationState::HandedOff(_)
                | ConversationState::OptedOut(_)
        )
}

/// The reply a turn that made or moved a booking sends instead of any
/// draft: the booking's day, time and price, stated by code. `None` when the
/// turn left the booking as it found it.
///
/// The one place that decides it: the plan sends it, and the model's tool
/// loop stops calling the model once a tool result makes it `Some` (what
/// the model would write next would not be sent).
pub fn booking_confirmation(
    business: &BusinessConfig,
    before: &ConversationState,
    after: &ConversationState,
) -> Option<String> {
    let ConversationState::Booked(booked) = after else {
        return None;
    };
    let changed = booking_of(before).is_none_or(|previous| moved(previous, &booked.booking));
    changed.then(|| templates::confirmation(business, &booked.booking.slot.label, booked.quote.total))
}

/// The dedupe keys of booking notices start with this: a newer change to
/// the booking cancels any notice still waiting.
pub const NOTICE_PREFIX: &str = "notice:";

/// What the customer is told of a change the owner made to their booking
/// from the console: a move is confirmed as a booking is, a cancellation
/// is told in code's words. `None` when the booking did not change.
pub fn owner_change_notice(
    business: &BusinessConfig,
    before: &ConversationState,
    after: &ConversationState,
) -> Option<BookingNotice> {
    match after {
        ConversationState::Booked(booked) => {
            booking_confirmation(business, before, after).map(|body| BookingNotice {
                booking_id: booked.booking.id.clone(),
                start: booked.booking.slot.start,
                change: BookingChangeNotice::Moved,
                body,
            })
        }
        _ if cancelled(before, after) => booking_of(before).map(|cancelled| BookingNotice {
            booking_id: cancelled.id.clone(),
            start: cancelled.slot.start,
            change: BookingChangeNotice::Cancelled,
            body: templates::cancelled_by_business(business, &cancelled.slot.label),
        }),
        _ => None,
    }
}

/// What names one change in its jobs' keys (a job's key is never used
/// twice, cancelled or done). A turn's is its last text: the turn run
/// again after a crash plans the same jobs, which are not queued twice. An
/// owner's action has no text: its moment names it, so moving a booking
/// back to a time it had earlier (a booking keeps its id when moved) gets
/// its reminders, email and notice again.
fn change_key(turn: &TurnInput, now: DateTime<Utc>) -> String {
    match turn.pending.last() {
        Some(text) => text.id.0.to_string(),
        None => format!("o{}", now.timestamp_millis()),
    }
}

/// The job that sends `notice` at `at` (when quiet hours end), for the
/// owner's change made `now`.
pub fn notice_job(notice: BookingNotice, turn: &TurnInput, now: DateTime<Utc>, at: DateTime<Utc>) -> NewJob {
    let conversation = &turn.conversation;
    let change = match notice.change {
        BookingChangeNotice::Moved => "moved",
        BookingChangeNotice::Cancelled => "cancelled",
    };
    let dedupe_key = format!(
        "{NOTICE_PREFIX}{}:{}:{change}:{}",
        notice.booking_id,
        notice.start.timestamp(),
        change_key(turn, now)
    );
    JobPayload::BookingNotice(notice).job(JobTarget {
        dedupe_key,
        conversation_id: Some(conversation.id),
        customer_id: Some(conversation.customer_id),
        recipient: conversation.customer_phone.as_str().to_string(),
        run_at: at,
        max_attempts: 5,
    })
}

/// Whether `now` is another booking or another time than `previous`.
fn moved(previous: &Booking, now: &Booking) -> bool {
    previous.slot.start != now.slot.start || previous.id != now.id
}

/// Whether a follow-up can be pending in this state.
pub fn may_have_follow_up(state: &ConversationState) -> bool {
    matches!(
        state,
        ConversationState::Quoted(_) | ConversationState::Scheduling(_)
    )
}

fn quote_and_job(state: &ConversationState) -> Option<(&Quote, &crate::domain::conversation::JobDetails)> {
    match state {
        ConversationState::Booked(b) => Some((&b.quote, &b.job)),
        ConversationState::Scheduling(s) => Some((&s.quote, &s.job)),
        ConversationState::HandedOff(h) => h.booked.as_deref().map(|b| (&b.quote, &b.job)),
        ConversationState::OptedOut(o) => quote_and_job(&o.previous),
        _ => None,
    }
}

fn reminder_prefix(booking: &Booking) -> String {
    format!("reminder:{}:", booking.id)
}

/// `event_link` gives where the crew can open a booking's calendar event,
/// if its calendar has such a page (see `Scheduler::event_link`).
pub fn plan(
    before: &ConversationState,
    after: &ConversationState,
    turn: &TurnInput,
    business: &BusinessConfig,
    now: DateTime<Utc>,
    event_link: &dyn Fn(&Booking) -> Option<String>,
) -> Plan {
    let emails = BookingEmails {
        turn,
        business,
        now,
        event_link,
    };
    let mut plan = Plan::default();
    let conversation = &turn.conversation;
    let tz = business.business.timezone;

    // The customer answered: a pending nudge is moot. (Only a quote or an
    // offer has one.)
    if may_have_follow_up(before) {
        plan.cancel.push("followup:".into());
    }
    let quote_now = match after {
        ConversationState::Quoted(q) => Some(&q.quote),
        ConversationState::Scheduling(s) if s.rescheduling.is_none() => Some(&s.quote),
        _ => None,
    };
    if let Some(quote) = quote_now
        && let Some(at) = reminders::follow_up_at(now, tz, &business.reminders, &business.quiet_hours)
    {
        let through = turn.pending.last().map_or(0, |m| m.id.0);
        let follow_up = JobPayload::FollowUp(QuoteFollowUp {
            quote_id: quote.id.clone(),
        });
        plan.jobs.push(follow_up.job(JobTarget {
            dedupe_key: format!("followup:{}:{through}", quote.id),
            conversation_id: Some(conversation.id),
            customer_id: Some(conversation.customer_id),
            recipient: conversation.customer_phone.as_str().to_string(),
            run_at: at,
            max_attempts: 5,
        }));
    }

    plan.confirmation = booking_confirmation(business, before, after);
    let old = booking_of(before);
    let new = match after {
        ConversationState::Booked(b) => Some((&b.booking, &b.quote, &b.job)),
        _ => None,
    };
    match (old, new) {
        (None, Some((booking, quote, job))) => {
            plan_booking(&mut plan, &emails, "New booking", booking, None, quote, job);
        }
        (Some(previous), Some((booking, quote, job))) if moved(previous, booking) => {
            plan.cancel.push(reminder_prefix(previous));
            if previous.slot.crew != booking.slot.crew {
                // The crew that had it must hear it is off their day.
                plan_email(
                    &mut plan,
                    &emails,
                    "Booking moved to another crew",
                    previous,
                    None,
                    quote,
                    job,
                );
            }
            plan_booking(
                &mut plan,
                &emails,
                "Booking moved",
                booking,
                Some(previous),
                quote,
                job,
            );
        }
        (Some(previous), None) if cancelled(before, after) => {
            plan.cancel.push(reminder_prefix(previous));
            if let Some((quote, job)) = quote_and_job(before) {
                plan_email(
                    &mut plan,
                    &emails,
                    "Booking cancelled",
                    previous,
                    None,
                    quote,
                    job,
                );
            }
        }
        _ => {}
    }
    plan
}

/// What every provider email of one turn is written from.
struct BookingEmails<'a> {
    turn: &'a TurnInput,
    business: &'a BusinessConfig,
    now: DateTime<Utc>,
    event_link: &'a dyn Fn(&Booking) -> Option<String>,
}

/// Reminders and the provider's email for a booking made or moved.
fn plan_booking(
    plan: &mut Plan,
    emails: &BookingEmails<'_>,
    headline: &str,
    booking: &Booking,
    previous: Option<&Booking>,
    quote: &crate::domain::quote::Quote,
    job: &crate::domain::conversation::JobDetails,
) {
    let BookingEmails {
        turn, business, now, ..
    } = *emails;
    let conversation = &turn.conversation;
    let tz = business.business.timezone;
    for (kind, at) in reminders::schedule(
        booking.slot.start,
        tz,
        &business.reminders,
        &business.quiet_hours,
        now,
    ) {
        let reminder = JobPayload::Reminder(BookingReminder {
            booking_id: booking.id.clone(),
            reminder: kind,
            start: booking.slot.start,
            label: booking.slot.label.clone(),
            total: quote.total,
        });
        plan.jobs.push(reminder.job(JobTarget {
            // The change is part of the key: moving a booking back to a time it
            // had before still gets fresh reminders (the old rows are cancelled).
            dedupe_key: format!(
                "{}{}:{}:{}",
                reminder_prefix(booking),
                kind.as_str(),
                booking.slot.start.timestamp(),
                change_key(turn, now)
            ),
            conversation_id: Some(conversation.id),
            customer_id: Some(conversation.customer_id),
            recipient: conversation.customer_phone.as_str().to_string(),
            run_at: at,
            max_attempts: 5,
        }));
    }
    plan_email(plan, emails, headline, booking, previous, quote, job);
}

/// The crew's email about a booking; `previous` is the time a moved
/// booking had.
fn plan_email(
    plan: &mut Plan,
    emails: &BookingEmails<'_>,
    headline: &str,
    booking: &Booking,
    previous: Option<&Booking>,
    quote: &crate::domain::quote::Quote,
    job: &crate::domain::conversation::JobDetails,
) {
    let BookingEmails {
        turn,
        business,
        now,
        event_link,
    } = *emails;
    let Some(provider) = business.providers.iter().find(|p| p.id == booking.slot.crew) else {
        return;
    };
    let Some(to) = provider.email.clone() else {
        tracing::warn!(provider = %provider.id, "provider has no email in business.toml; no booking email");
        return;
    };
    // A cancelled booking's event is gone: no link to it.
    let calendar_link = if headline == "Booking cancelled" {
        None
    } else {
        event_link(booking)
    };
    let phone = turn.conversation.customer_phone.as_str().to_string();
    let notice = templates::BookingNotice {
        headline: format!("{headline} for {}", provider.name),
        when: &booking.slot.label,
        previous: previous.map(|p| p.slot.label.as_str()),
        address: job.address.as_deref().unwrap_or("(no address given)"),
        customer: job.customer_name.as_deref().unwrap_or("Customer"),
        phone: &phone,
        job: quote.assumptions.first().map(String::as_str).unwrap_or(""),
        quote,
        notes: job.notes.as_deref(),
        calendar_link,
    };
    let (subject, html, text) = templates::booking_email(business, &notice);
    let email = JobPayload::Email(Email {
        to: vec![to.clone()],
        subject,
        html,
        text,
        date: Some(now),
        // The crew sees the pile before they arrive.
        attach_photos: true,
        attachments: Vec::new(),
    });
    plan.jobs.push(email.job(JobTarget {
        dedupe_key: format!(
            "email:{}:{headline}:{}:{}",
            booking.id,
            booking.slot.start.timestamp(),
            change_key(turn, now)
        ),
        conversation_id: Some(turn.conversation.id),
        customer_id: None,
        recipient: to,
        run_at: now,
        max_attempts: 8,
    }));
}

/// Who an alert is about, as the owner needs it: the name they gave and
/// the full number, to call. Logs get `redact` instead.
#[derive(Debug, Clone)]
pub struct CustomerContact {
    pub name: Option<String>,
    pub phone: E164,
}

impl CustomerContact {
    pub fn of(turn: &TurnInput, state: &ConversationState) -> Self {
        let name = state
            .job()
            .or_else(|| turn.state.job())
            .and_then(|j| j.customer_name.as_deref())
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        Self {
            name,
            phone: turn.conversation.customer_phone.clone(),
        }
    }

    /// "Dana Reyes (+15035551234)", or the number alone.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} ({})", self.phone.as_str()),
            None => self.phone.as_str().to_string(),
        }
    }

    /// An alert's detail with the customer's masked number (as the tools
    /// write it) replaced by who they are; the owner cannot call a mask.
    pub fn reveal(&self, detail: &str) -> String {
        let masked = self.phone.masked().to_string();
        if detail.contains(self.phone.as_str()) {
            detail.to_string()
        } else if detail.contains(&masked) {
            detail.replace(&masked, &self.describe())
        } else {
            format!("{detail} Customer: {}.", self.describe())
        }
    }

    /// The same text fit for a log: no name, numbers masked.
    pub fn redact(&self, text: &str) -> String {
        let text = match &self.name {
            Some(name) => text.replace(name.as_str(), "(name)"),
            None => text.to_string(),
        };
        redact_phone_numbers(&text)
    }
}

/// What tells the owner of an alert a person must act on: the email, and
/// a text to `owner_phone` when one is set.
pub fn alert_jobs(
    business: &BusinessConfig,
    alert: &NewAlert,
    conversation: Option<crate::store::ConversationId>,
    key: &str,
    now: DateTime<Utc>,
) -> Vec<NewJob> {
    alert_jobs_about(business, alert, conversation, None, key, now)
}

/// The owner's email for an alert about one customer, with their name and
/// their number as a link to call, and the owner's text, with a link to
/// the conversation in the console. Every alert that reaches the owner
/// passes here, so this is the one place that decides how.
pub fn alert_jobs_about(
    business: &BusinessConfig,
    alert: &NewAlert,
    conversation: Option<crate::store::ConversationId>,
    customer: Option<&CustomerContact>,
    key: &str,
    now: DateTime<Utc>,
) -> Vec<NewJob> {
    // Only the alerts a person must act on reach the owner; those have a title.
    let Some(headline) = alert.kind.email_title() else {
        return Vec::new();
    };
    let mut jobs = Vec::new();
    if let Some(to) = business.business.owner_email.clone() {
        let (subject, html, text) = templates::alert_email_about(
            business,
            headline,
            &alert.detail,
            customer.and_then(|c| c.name.as_deref()),
            customer.map(|c| c.phone.as_str()),
        );
        let email = JobPayload::Email(Email {
            to: vec![to.clone()],
            subject,
            html,
            text,
            date: Some(now),
            // The owner taking over sees what the customer sent.
            attach_photos: matches!(alert.kind, AlertKind::Handoff | AlertKind::HandedOffText)
                && conversation.is_some(),
            attachments: Vec::new(),
        });
        jobs.push(email.job(JobTarget {
            dedupe_key: format!("alert:{key}:{}", alert.kind),
            conversation_id: conversation,
            customer_id: None,
            recipient: to,
            run_at: now,
            max_attempts: 8,
        }));
    }
    if let Some(owner) = &business.business.owner_phone
        // A text to the owner that failed is not texted to the owner again.
        && customer.is_none_or(|c| &c.phone != owner)
    {
        let detail = match customer {
            Some(customer) => customer.reveal(&alert.detail),
            None => alert.detail.clone(),
        };
        let text = JobPayload::OwnerText(OwnerText {
            business_id: business.business.id.clone(),
            body: crate::domain::sms_text::prepare_reply(
                &format!("{headline}: {detail}"),
                OWNER_TEXT_SEGMENTS,
            ),
            conversation_id: conversation.map(|c| c.0),
        });
        jobs.push(text.job(JobTarget {
            dedupe_key: format!("ownertext:{key}:{}", alert.kind),
            conversation_id: conversation,
            customer_id: None,
            recipient: owner.as_str().to_string(),
            run_at: now,
            max_attempts: 8,
        }));
    }
    jobs
}

/// The owner's alert text, before the console link: enough for the gist.
const OWNER_TEXT_SEGMENTS: usize = 2;

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::conversation::{
        Booked, CancelledBy, Event, HandedOff, HandoffReason, JobDetails, OfferedSlot, transition,
    };
    use crate::store::{Conversation, ConversationId, CustomerId};

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 17, 0, 0).unwrap()
    }

    fn crew_business() -> BusinessConfig {
        let mut business = BusinessConfig::default();
        business.business.name = "Rose City Junk Haulers".into();
        business.providers = vec![crate::config::business::ProviderConfig {
            id: "crew-1".into(),
            name: "Crew 1".into(),
            email: Some("crew1@example.com".into()),
            phone: None,
            calendar_id: None,
        }];
        business
    }

    fn booked(business: &BusinessConfig, id: &str, days: i64) -> ConversationState {
        let job = JobDetails {
            size: Some("half_truck".into()),
            ..JobDetails::default()
        };
        let spec = job.to_spec(business.business.kind).unwrap();
        let quote = crate::domain::quote::price(&business.pricing, &spec, "q1".into(), at()).unwrap();
        let start = at() + chrono::Duration::days(days);
        ConversationState::Booked(Booked {
            job,
            quote,
            booking: Booking {
                id: id.into(),
                slot: OfferedSlot {
                    id: 1,
                    start,
                    end: start + chrono::Duration::hours(2),
                    label: format!("Mon Dec {}, 10am", days),
                    crew: "crew-1".into(),
                    quote: None,
                },
                calendar_event_id: "ev1".into(),
            },
        })
    }

    fn turn_of(state: &ConversationState) -> TurnInput {
        TurnInput {
            conversation: Conversation {
                id: ConversationId(1),
                customer_id: CustomerId(1),
                customer_phone: E164::parse("+15035551234").unwrap(),
                business_number: E164::parse("+15035550142").unwrap(),
                opted_out: false,
                profile_name: None,
            },
            pending: Vec::new(),
            history: Vec::new(),
            first_contact: false,
            state: state.clone(),
            last_activity: None,
            quotes: Vec::new(),
            images: Vec::new(),
        }
    }

    fn plan_of(business: &BusinessConfig, before: &ConversationState, after: &ConversationState) -> Plan {
        plan(before, after, &turn_of(before), business, at(), &|_| None)
    }

    fn subjects(plan: &Plan) -> Vec<String> {
        plan.jobs
            .iter()
            .filter(|j| j.kind == EMAIL)
            .map(|j| j.payload["subject"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_booking_held_through_a_hand_off_or_an_opt_out_is_cancelled_like_any_other() {
        let business = crew_business();
        let booked = booked(&business, "b1", 3);
        let cancel = || Event::BookingCancelled {
            at: at(),
            by: CancelledBy::Owner,
        };
        let handed = transition(
            booked.clone(),
            Event::HandOff {
                reason: HandoffReason::OwnerTookOver,
                summary: "The owner is answering.".into(),
                at: at(),
            },
        )
        .unwrap();
        assert!(matches!(
            &handed,
            ConversationState::HandedOff(HandedOff { booked: Some(_), .. })
        ));
        // Taking over and handing back change nothing the crew or the
        // customer should hear of.
        for (before, after) in [(&booked, &handed), (&handed, &booked)] {
            let nothing = plan_of(&business, before, after);
            assert!(
                nothing.jobs.is_empty() && nothing.cancel.is_empty(),
                "{nothing:?}"
            );
            assert_eq!(nothing.confirmation, None);
            assert!(owner_change_notice(&business, before, after).is_none());
        }

        let opted_out = transition(booked.clone(), Event::OptOut { at: at() }).unwrap();
        for held in [handed, opted_out] {
            let cancelled = transition(held.clone(), cancel()).unwrap();
            let planned = plan_of(&business, &held, &cancelled);
            assert!(
                planned.cancel.contains(&"reminder:b1:".to_string()),
                "{planned:?}"
            );
            assert_eq!(
                subjects(&planned),
                ["Booking cancelled for Crew 1: Mon Dec 3, 10am"],
                "{planned:?}"
            );
            let notice = owner_change_notice(&business, &held, &cancelled).unwrap();
            assert_eq!(notice.change, BookingChangeNotice::Cancelled);
            assert_eq!(
                notice.body,
                "Rose City Junk Haulers cancelled your booking for Mon Dec 3, 10am. We're sorry for the change. Text us any time to book again."
            );
        }
    }

    #[test]
    fn the_owners_move_is_told_as_a_confirmation_and_its_notice_is_keyed_by_booking_and_time() {
        let business = crew_business();
        // A move keeps the booking's id; only its time changes.
        let before = booked(&business, "b1", 3);
        let after = booked(&business, "b1", 4);
        let notice = owner_change_notice(&business, &before, &after).unwrap();
        assert_eq!(notice.change, BookingChangeNotice::Moved);
        assert_eq!(
            notice.body,
            "You're booked with Rose City Junk Haulers: Mon Dec 4, 10am. Total $350. Reply R to reschedule, or CANCEL BOOKING to cancel it."
        );
        let later = at() + chrono::Duration::hours(15);
        let job = notice_job(notice, &turn_of(&after), at(), later);
        assert_eq!(job.kind, crate::jobs::payload::BOOKING_NOTICE);
        assert_eq!(job.run_at, later);
        let start = (at() + chrono::Duration::days(4)).timestamp();
        let made = at().timestamp_millis();
        assert_eq!(job.dedupe_key, format!("notice:b1:{start}:moved:o{made}"));
        assert!(job.dedupe_key.starts_with(NOTICE_PREFIX));

        // Moved away and then to the same time again by a later action:
        // every job it plans has a key of its own, so none is dropped as
        // already used.
        let first_keys: Vec<String> = plan_of(&business, &before, &after)
            .jobs
            .into_iter()
            .map(|j| j.dedupe_key)
            .collect();
        let back_at = at() + chrono::Duration::minutes(5);
        let back = plan(&before, &after, &turn_of(&before), &business, back_at, &|_| None);
        let back_keys: Vec<String> = back.jobs.iter().map(|j| j.dedupe_key.clone()).collect();
        assert!(
            back_keys.iter().any(|k| k.starts_with("reminder:b1:"))
                && back_keys.iter().any(|k| k.starts_with("email:b1:")),
            "{back_keys:?}"
        );
        assert!(
            back_keys.iter().all(|k| !first_keys.contains(k)),
            "{first_keys:?} {back_keys:?}"
        );
        let again_notice = owner_change_notice(&business, &before, &after).unwrap();
        let again = notice_job(again_notice, &turn_of(&before), back_at, later);
        assert_ne!(again.dedupe_key, job.dedupe_key);
        // A booking that did not change has nothing to tell.
        assert!(owner_change_notice(&business, &after, &after).is_none());
    }

    fn dana(name: Option<&str>) -> CustomerContact {
        CustomerContact {
            name: name.map(str::to_string),
            phone: E164::parse("+15035551234").unwrap(),
        }
    }

    #[test]
    fn the_owner_reads_the_full_number_and_the_log_a_masked_one() {
        let contact = dana(Some("Dana Reyes"));
        let detail = contact.reveal("Customer +1503***1234 asked for a person.");
        assert_eq!(detail, "Customer Dana Reyes (+15035551234) asked for a person.");
        let logged = contact.redact(&detail);
        assert!(
            !logged.contains("+15035551234") && !logged.contains("Dana"),
            "{logged}"
        );
        assert!(logged.contains("+1503***1234"), "{logged}");

        // A detail that names no one gets the customer added.
        let detail = dana(None).reveal("The calendar refused the booking.");
        assert_eq!(
            detail,
            "The calendar refused the booking. Customer: +15035551234."
        );
        // One that already has the full number is left alone.
        assert_eq!(dana(None).reveal("Call +15035551234"), "Call +15035551234");
    }

    #[test]
    fn with_owner_phone_an_alert_is_also_texted_except_one_about_a_text_to_the_owner() {
        let mut business = BusinessConfig::default();
        business.business.id = "junk".into();
        business.business.owner_phone = Some(E164::parse("+15035550199").unwrap());
        let at = Utc.with_ymd_and_hms(2026, 11, 28, 17, 0, 0).unwrap();
        let alert = |kind: AlertKind| NewAlert {
            kind,
            detail: "Handed to you: customer +1503***1234 asked for a person.".into(),
        };
        let conversation = Some(crate::store::ConversationId(7));
        let jobs = alert_jobs_about(
            &business,
            &alert(AlertKind::Handoff),
            conversation,
            Some(&dana(Some("Dana"))),
            "k",
            at,
        );
        assert_eq!(jobs.len(), 1, "no owner_email: the text alone");
        assert_eq!(jobs[0].kind, "owner_text");
        assert_eq!(jobs[0].recipient, "+15035550199");
        let JobPayload::OwnerText(text) = JobPayload::from_stored(jobs[0].kind, &jobs[0].payload).unwrap()
        else {
            panic!("an owner text")
        };
        assert_eq!(text.business_id, "junk");
        assert_eq!(text.conversation_id, Some(7));
        assert!(
            text.body
                .starts_with("A customer needs you: Handed to you: customer Dana (+15035551234)"),
            "{}",
            text.body
        );

        // Only what needs a person; and a failed text to the owner is not
        // texted to the owner.
        assert!(
            alert_jobs_about(
                &business,
                &alert(AlertKind::PriceGuardrail),
                conversation,
                None,
                "k",
                at
            )
            .is_empty()
        );
        let owner = CustomerContact {
            name: None,
            phone: E164::parse("+15035550199").unwrap(),
        };
        assert!(
            alert_jobs_about(
                &business,
                &alert(AlertKind::SendFailed),
                None,
                Some(&owner),
                "k",
                at
            )
            .is_empty()
        );
    }

    #[test]
    fn the_owners_hand_off_email_carries_the_photos_and_other_alerts_do_not() {
        let mut business = BusinessConfig::default();
        business.business.owner_email = Some("owner@example.com".into());
        let email = |kind: &'static str| {
            let alert = NewAlert {
                kind: AlertKind::parse(kind),
                detail: "Customer asked for a person.".into(),
            };
            let jobs = alert_jobs_about(
                &business,
                &alert,
                Some(crate::store::ConversationId(7)),
                Some(&dana(None)),
                "k",
                Utc.with_ymd_and_hms(2026, 11, 28, 17, 0, 0).unwrap(),
            );
            serde_json::from_value::<Email>(jobs[0].payload.clone()).unwrap()
        };
        assert!(email("handoff").attach_photos);
        assert!(email("handed_off_text").attach_photos);
        assert!(!email("dead_job").attach_photos);
        assert!(!email("send_failed").attach_photos);
    }
}
