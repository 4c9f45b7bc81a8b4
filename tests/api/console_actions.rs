//! Issue 10, part 3 (the conversation's actions) and part 9 (the owner's
//! alert texts), through the console's real HTTP routes.

use std::time::Duration;

use reqwest::StatusCode;
use textdesk::clock::ManualClock;
use textdesk::store::{BookingStatus, JobStatus};

use crate::console::{Browser, DANA, Page, with_password};
use crate::helpers::*;

const LA: chrono_tz::Tz = chrono_tz::America::Los_Angeles;
const OWNER_PHONE: &str = "+15035550199";

/// A junk hauler whose owner gets alert texts, with one crew.
fn business() -> String {
    format!(
        "[business]\nname = \"Rose City Junk Haulers\"\nphone = \"+15035550142\"\n\
         owner_name = \"Maria\"\nowner_phone = \"{OWNER_PHONE}\"\n\
         [schedule]\nmin_notice_hours = 48\nhorizon_days = 14\n"
    )
}

/// The guided flow (no model), at noon in the business's zone: texts may
/// go out, whatever the hour the test runs at.
async fn app_at(hour: u32) -> (TestApp, ManualClock) {
    let clock = ManualClock::at(today_at(LA, hour, 0));
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(business()),
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    with_password(&app).await;
    (app, clock)
}

fn path(id: i64, action: &str) -> String {
    format!("/owner/conversations/{id}/{action}")
}

/// Posts an action with the session's token and follows the 303 back to
/// the conversation: the page after it.
async fn act(browser: &mut Browser, csrf: &str, id: i64, action: &str, form: &[(&str, &str)]) -> Page {
    let mut fields = vec![("csrf", csrf)];
    fields.extend_from_slice(form);
    let done = browser.post(&path(id, action), &fields).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{action}: {}", done.body);
    let back = format!("/owner/conversations/{id}");
    assert_eq!(done.location.as_deref(), Some(back.as_str()));
    let page = browser.get(&back).await;
    assert_eq!(page.status, StatusCode::OK);
    page
}

async fn state_of(app: &TestApp, customer: &str) -> &'static str {
    let id = app.conversation(customer).await.unwrap();
    app.store.turn_input(id, 0).await.unwrap().state.name()
}

async fn texts_to(app: &TestApp, to: &str) -> Vec<String> {
    app.sent_texts()
        .await
        .into_iter()
        .filter(|(number, _)| number == to)
        .map(|(_, body)| body)
        .collect()
}

async fn wait_for_text_to(app: &TestApp, to: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let sent = texts_to(app, to).await;
        if sent.len() >= n {
            return sent;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {n} texts to {to}, got {sent:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Dana's first text, answered; her conversation's id.
async fn dana_says_hi(app: &TestApp) -> i64 {
    app.text(DANA, "hi").await;
    app.wait_for_texts(1).await;
    app.wait_until_settled(DANA).await;
    app.conversation(DANA).await.unwrap().0
}

#[tokio::test]
async fn take_over_silences_the_assistant_the_text_shows_unread_and_hand_back_restores_it() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, _clock) = app_at(12).await;
    let id = dana_says_hi(&app).await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;

    let page = browser.get(&format!("/owner/conversations/{id}")).await;
    assert!(page.body.contains("id=\"take-over\""), "{}", page.body);
    assert!(page.body.contains("id=\"reply-body\""));
    assert!(page.body.contains("src=\"/owner/static/reply-counter.js\""));

    let page = act(&mut browser, &csrf, id, "take-over", &[]).await;
    assert!(page.body.contains("the assistant stays silent"), "{}", page.body);
    assert!(page.body.contains("id=\"hand-back\""), "{}", page.body);
    assert_eq!(state_of(&app, DANA).await, "HANDED_OFF");

    // The customer writes while the owner has the conversation: the
    // assistant does not answer it (only the one acknowledgement goes
    // out), and the inbox pins it, unread.
    app.text(DANA, "3").await;
    app.wait_until_settled(DANA).await;
    let replies: Vec<_> = app
        .messages(DANA)
        .await
        .into_iter()
        .filter(|m| m.kind == "guided" || m.kind == "reply")
        .collect();
    assert_eq!(
        replies.len(),
        1,
        "only the first text was answered by the assistant"
    );
    assert_eq!(state_of(&app, DANA).await, "HANDED_OFF", "not moved on by the 3");
    app.text(LEE_, "hello").await;
    app.wait_until_settled(LEE_).await;
    let inbox = browser.get("/owner/").await.body;
    let dana_row = inbox.find(DANA).unwrap();
    assert!(
        dana_row < inbox.find(LEE_).unwrap(),
        "pinned above newer: {inbox}"
    );
    let row_end = inbox[dana_row..].find("</li>").unwrap() + dana_row;
    let row_start = inbox[..dana_row].rfind("<li").unwrap();
    assert!(
        inbox[row_start..row_end].contains("aria-label=\"unread\""),
        "{}",
        &inbox[row_start..row_end]
    );
    let page = browser.get(&format!("/owner/conversations/{id}")).await;
    assert!(page.body.contains("badge new"), "the new text is marked");

    let open_kinds = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            let console = db.console().await;
            console
                .console_alerts(None, true, 50)
                .await
                .unwrap()
                .into_iter()
                .filter(|a| a.conversation_id.map(|c| c.0) == Some(id))
                .map(|a| a.kind)
                .collect::<Vec<_>>()
        }
    };
    assert!(
        open_kinds(&app).await.contains(&"handed_off_text".to_string()),
        "{:?}",
        open_kinds(&app).await
    );

    let page = act(&mut browser, &csrf, id, "hand-back", &[]).await;
    assert!(page.body.contains("Handed back"), "{}", page.body);
    // Handing back answers the alerts the hand-off raised.
    assert_eq!(open_kinds(&app).await, Vec::<String>::new());
    assert!(page.body.contains("id=\"take-over\""));
    assert_ne!(state_of(&app, DANA).await, "HANDED_OFF");
    app.text(DANA, "3").await;
    app.wait_until_settled(DANA).await;
    let replies = app
        .messages(DANA)
        .await
        .into_iter()
        .filter(|m| m.kind == "guided" || m.kind == "reply")
        .count();
    assert_eq!(replies, 2, "the assistant answers again");

    // Handing back what the owner does not have is refused in words (once
    // the assistant's turn has let go of the conversation).
    app.wait_until_idle().await;
    let page = act(&mut browser, &csrf, id, "hand-back", &[]).await;
    assert!(page.body.contains("not with you"), "{}", page.body);
}

const LEE_: &str = "+15035559876";

#[tokio::test]
async fn the_owners_reply_reaches_the_customer_through_twilio_and_takes_the_conversation() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, _clock) = app_at(12).await;
    let id = dana_says_hi(&app).await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;

    let page = act(
        &mut browser,
        &csrf,
        id,
        "reply",
        &[
            ("body", "Hi Dana, it\u{2019}s Maria. We can come Tuesday."),
            ("send", "now"),
        ],
    )
    .await;
    assert!(page.body.contains("Sent."), "{}", page.body);
    let sent = app.wait_for_texts(2).await;
    // The channel's rules apply: the curly quote went out as GSM-7.
    assert_eq!(
        sent[1],
        (
            DANA.to_string(),
            "Hi Dana, it's Maria. We can come Tuesday.".to_string()
        )
    );
    assert!(page.body.contains("We can come Tuesday"), "in the thread");
    assert_eq!(state_of(&app, DANA).await, "HANDED_OFF");
    let owner = app
        .messages(DANA)
        .await
        .into_iter()
        .find(|m| m.kind == "owner_reply")
        .unwrap();
    assert_eq!(owner.status, "sent");

    // An empty text is refused in words, and nothing more is sent.
    let page = act(&mut browser, &csrf, id, "reply", &[("body", "   ")]).await;
    assert!(page.body.contains("the text is empty"), "{}", page.body);
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), 2);
}

#[tokio::test]
async fn an_opted_out_customer_cannot_be_texted_and_the_page_says_why() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, _clock) = app_at(12).await;
    let id = dana_says_hi(&app).await;
    let before = opt_out(&app).await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;

    let page = browser.get(&format!("/owner/conversations/{id}")).await;
    assert!(page.body.contains("id=\"reply-refused\""), "{}", page.body);
    assert!(page.body.contains("opted out of texts"));
    assert!(!page.body.contains("id=\"reply-send\""));

    // A form posted anyway (an old tab) is refused too.
    let page = act(&mut browser, &csrf, id, "reply", &[("body", "please call me")]).await;
    assert!(
        page.body.contains("Not sent: this customer opted out"),
        "{}",
        page.body
    );
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), before, "nothing was sent");
    assert!(
        app.messages(DANA).await.iter().all(|m| m.kind != "owner_reply"),
        "nothing was queued"
    );
}

#[tokio::test]
async fn in_quiet_hours_the_reply_is_refused_now_and_sent_at_the_next_allowed_moment() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, clock) = app_at(12).await;
    let id = dana_says_hi(&app).await;
    clock.set(today_at(LA, 22, 30));
    let (mut browser, csrf) = Browser::logged_in(&app).await;

    let page = browser.get(&format!("/owner/conversations/{id}")).await;
    assert!(page.body.contains("id=\"quiet-hours\""), "{}", page.body);
    let tomorrow_8am = today_at(LA, 8, 0) + chrono::Duration::days(1);
    let label = tomorrow_8am
        .with_timezone(&LA)
        .format("%a %b %-d, %-I:%M %P")
        .to_string();
    assert!(page.body.contains(&format!("Send at {label}")), "{}", page.body);

    // "Send" now is refused, and the draft is kept for the owner.
    let page = act(
        &mut browser,
        &csrf,
        id,
        "reply",
        &[("body", "See you soon"), ("send", "now")],
    )
    .await;
    assert!(page.body.contains("Not sent: it is quiet hours"), "{}", page.body);
    assert!(page.body.contains(">See you soon</textarea>"), "{}", page.body);

    let page = act(
        &mut browser,
        &csrf,
        id,
        "reply",
        &[("body", "See you soon"), ("send", "later")],
    )
    .await;
    assert!(page.body.contains("Scheduled"), "{}", page.body);
    // The thread shows it, marked scheduled, at the business's time.
    let thread = page.body[page.body.find("class=\"messages\"").unwrap()..]
        .split("</ol>")
        .next()
        .unwrap();
    assert!(thread.contains("See you soon"), "{thread}");
    let at = tomorrow_8am.with_timezone(&LA).format("%-I:%M %P").to_string();
    assert!(thread.contains("scheduled"), "{thread}");
    assert!(thread.contains(&at), "{at}: {thread}");
    assert_eq!(state_of(&app, DANA).await, "HANDED_OFF");
    let held: Vec<_> = app
        .store
        .jobs(&[JobStatus::Pending], 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == "owner_reply")
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].run_at, tomorrow_8am);
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), 1, "nothing at night");

    clock.set(tomorrow_8am);
    let sent = app.wait_for_texts(2).await;
    assert_eq!(sent[1], (DANA.to_string(), "See you soon".to_string()));
    // Twilio is handed the text before its status is recorded `sent`.
    app.wait_until_idle().await;
    let owner = app
        .messages(DANA)
        .await
        .into_iter()
        .find(|m| m.kind == "owner_reply")
        .unwrap();
    assert_eq!(owner.status, "sent");
}

/// Dana texts STOP; once it has settled, how many texts she has had.
async fn opt_out(app: &TestApp) -> usize {
    app.text(DANA, "STOP").await;
    app.wait_until_settled(DANA).await;
    app.wait_until_idle().await;
    texts_to(app, DANA).await.len()
}

/// Books Dana's half-truck job through the guided flow.
async fn book(app: &TestApp) -> i64 {
    for (i, text) in ["hi", "3", "1", "12 Oak St", "1"].iter().enumerate() {
        app.text(DANA, text).await;
        app.wait_for_texts(i + 1).await;
    }
    app.wait_until_settled(DANA).await;
    assert_eq!(state_of(app, DANA).await, "BOOKED");
    app.conversation(DANA).await.unwrap().0
}

#[tokio::test]
async fn the_owner_moves_the_booking_to_an_opening_the_scheduler_offered_then_cancels_it() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, _clock) = app_at(12).await;
    let id = book(&app).await;
    let booked = app.store.bookings().await.unwrap();
    let first = booked[0].clone();
    let (mut browser, csrf) = Browser::logged_in(&app).await;

    let page = browser.get(&format!("/owner/conversations/{id}")).await;
    assert!(page.body.contains("id=\"reschedule\""), "{}", page.body);
    assert!(page.body.contains("id=\"cancel-booking\""));

    // First the openings, from the scheduler; the booking stands meanwhile.
    let page = act(&mut browser, &csrf, id, "reschedule", &[]).await;
    assert!(page.body.contains("Pick one of the openings"), "{}", page.body);
    assert!(page.body.contains("name=\"slot\" value=\"1\""), "{}", page.body);
    assert_eq!(
        app.store.booking(&first.id).await.unwrap().unwrap().status,
        BookingStatus::Confirmed
    );

    // A number not on offer moves nothing.
    let page = act(&mut browser, &csrf, id, "reschedule", &[("slot", "9")]).await;
    assert!(page.body.contains("no longer on offer"), "{}", page.body);

    let texts_before = app.sent_texts().await.len();
    let page = act(&mut browser, &csrf, id, "reschedule", &[("slot", "1")]).await;
    assert!(page.body.contains("Moved the booking to"), "{}", page.body);
    assert!(page.body.contains("The customer was texted."), "{}", page.body);
    assert_eq!(state_of(&app, DANA).await, "BOOKED");
    let moved: Vec<_> = app
        .store
        .bookings()
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.status == BookingStatus::Confirmed)
        .collect();
    assert_eq!(moved.len(), 1);
    assert_ne!(moved[0].slot.start, first.slot.start, "a new time");
    // The customer hears the new time, stated by code.
    let sent = app.wait_for_texts(texts_before + 1).await;
    assert!(
        sent.last().unwrap().1.contains(&moved[0].label),
        "{:?}",
        sent.last()
    );
    // Its reminders follow the new time.
    let reminders: Vec<_> = app
        .store
        .jobs(&[JobStatus::Pending], 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == "reminder")
        .collect();
    assert!(!reminders.is_empty());
    assert!(
        reminders
            .iter()
            .all(|j| j.payload["label"] == moved[0].label.as_str()),
        "{reminders:?}"
    );

    let texts_before_cancel = app.sent_texts().await.len();
    let page = act(&mut browser, &csrf, id, "cancel", &[]).await;
    assert!(page.body.contains("Cancelled the booking"), "{}", page.body);
    assert!(page.body.contains("The customer was texted."), "{}", page.body);
    assert_eq!(state_of(&app, DANA).await, "CANCELLED");
    // The customer hears it from the business, in code's words.
    let sent = app.wait_for_texts(texts_before_cancel + 1).await;
    assert_eq!(
        sent.last().unwrap(),
        &(
            DANA.to_string(),
            format!(
                "Rose City Junk Haulers cancelled your booking for {}. We're sorry for the change. Text us any time to book again.",
                moved[0].label
            )
        )
    );
    let bookings = app.store.bookings().await.unwrap();
    assert!(!bookings.is_empty(), "the booking is kept, cancelled");
    assert!(
        bookings.iter().all(|b| b.status == BookingStatus::Cancelled),
        "{bookings:?}"
    );
    assert!(!page.body.contains("id=\"cancel-booking\""));

    // Again: there is nothing to cancel, in words.
    let page = act(&mut browser, &csrf, id, "cancel", &[]).await;
    assert!(
        page.body.contains("there is no booking to cancel"),
        "{}",
        page.body
    );
    let page = act(&mut browser, &csrf, id, "reschedule", &[]).await;
    assert!(page.body.contains("there is no booking to move"), "{}", page.body);
    app.wait_until_idle().await;
    assert_eq!(
        app.sent_texts().await.len(),
        texts_before_cancel + 1,
        "one text for one cancellation"
    );
}

/// The pending booking notices of Dana's conversation.
async fn notices(app: &TestApp, status: JobStatus) -> Vec<textdesk::store::Job> {
    app.store
        .jobs(&[status], 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == "booking_notice")
        .collect()
}

#[tokio::test]
async fn at_night_the_owners_changes_reach_the_customer_when_quiet_hours_end_and_only_the_last() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, clock) = app_at(12).await;
    let id = book(&app).await;
    let texts_by_day = app.sent_texts().await.len();
    clock.set(today_at(LA, 22, 30));
    let tomorrow_8am = today_at(LA, 8, 0) + chrono::Duration::days(1);
    let (mut browser, csrf) = Browser::logged_in(&app).await;

    act(&mut browser, &csrf, id, "reschedule", &[]).await;
    let page = act(&mut browser, &csrf, id, "reschedule", &[("slot", "1")]).await;
    assert!(page.body.contains("Moved the booking to"), "{}", page.body);
    let morning = tomorrow_8am
        .with_timezone(&LA)
        .format("%a %b %-d, %-I:%M %P")
        .to_string();
    assert!(
        page.body.contains(&format!(
            "It is quiet hours for this customer: they will be texted {morning}"
        )),
        "{}",
        page.body
    );
    let waiting = notices(&app, JobStatus::Pending).await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].run_at, tomorrow_8am);
    assert!(
        waiting[0].payload["body"]
            .as_str()
            .unwrap()
            .starts_with("You're booked with")
    );
    // The owner sees what will go out, marked scheduled.
    let thread = page.body[page.body.find("class=\"messages\"").unwrap()..]
        .split("</ol>")
        .next()
        .unwrap()
        .to_string();
    assert!(thread.contains("scheduled, not sent yet"), "{thread}");
    assert!(
        thread.contains("re booked with Rose City Junk Haulers"),
        "{thread}"
    );

    // Changed again before morning: only the cancellation goes out.
    let label = app
        .store
        .bookings()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.status == BookingStatus::Confirmed)
        .unwrap()
        .label;
    let page = act(&mut browser, &csrf, id, "cancel", &[]).await;
    assert!(page.body.contains("they will be texted"), "{}", page.body);
    let waiting = notices(&app, JobStatus::Pending).await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].payload["change"], "cancelled");
    assert_eq!(
        notices(&app, JobStatus::Cancelled).await.len(),
        1,
        "the move's notice is off"
    );
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), texts_by_day, "nothing at night");

    clock.set(tomorrow_8am);
    let sent = app.wait_for_texts(texts_by_day + 1).await;
    assert_eq!(
        sent.last().unwrap().1,
        format!(
            "Rose City Junk Haulers cancelled your booking for {label}. We're sorry for the change. Text us any time to book again."
        )
    );
    app.wait_until_idle().await;
    assert_eq!(app.sent_texts().await.len(), texts_by_day + 1, "one text");
    assert!(notices(&app, JobStatus::Pending).await.is_empty());
    let told = app
        .messages(DANA)
        .await
        .into_iter()
        .filter(|m| m.kind == "cancellation")
        .collect::<Vec<_>>();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].status, "sent");
}

#[tokio::test]
async fn a_cancellation_notice_waiting_for_morning_is_dropped_once_the_customer_books_again() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, clock) = app_at(12).await;
    let id = book(&app).await;
    clock.set(today_at(LA, 22, 30));
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    act(&mut browser, &csrf, id, "cancel", &[]).await;
    assert_eq!(notices(&app, JobStatus::Pending).await.len(), 1);

    // Dana texts that night and books again: a reply, not a proactive text.
    let before = app.sent_texts().await.len();
    for (i, text) in ["hi", "3", "1", "12 Oak St", "1"].iter().enumerate() {
        app.text(DANA, text).await;
        app.wait_for_texts(before + i + 1).await;
    }
    app.wait_until_settled(DANA).await;
    assert_eq!(state_of(&app, DANA).await, "BOOKED");
    let rebooked = app.sent_texts().await.len();

    clock.set(today_at(LA, 8, 0) + chrono::Duration::days(1));
    app.wait_until_idle().await;
    let gone = notices(&app, JobStatus::Cancelled).await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert!(notices(&app, JobStatus::Pending).await.is_empty());
    assert_eq!(
        app.sent_texts().await.len(),
        rebooked,
        "no news that reads as the new booking off"
    );
}

#[tokio::test]
async fn a_customer_who_opted_out_is_not_texted_of_a_cancellation_and_the_owner_is_told_to_call() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, _clock) = app_at(12).await;
    let id = book(&app).await;
    let before = opt_out(&app).await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let booked = browser.get("/owner/?filter=booked").await.body;
    assert!(booked.contains(DANA), "opted out, still booked: {booked}");
    let page = act(&mut browser, &csrf, id, "cancel", &[]).await;
    let booked = browser.get("/owner/?filter=booked").await.body;
    assert!(!booked.contains(DANA), "{booked}");
    assert!(page.body.contains("Cancelled the booking"), "{}", page.body);
    assert!(
        page.body
            .contains("opted out of texts, so they were not told: call them"),
        "{}",
        page.body
    );
    app.wait_until_idle().await;
    assert_eq!(
        texts_to(&app, DANA).await.len(),
        before,
        "{:?}",
        app.sent_texts().await
    );
    assert!(notices(&app, JobStatus::Pending).await.is_empty());
    assert!(app.messages(DANA).await.iter().all(|m| m.kind != "cancellation"));
    // Cancelled as any cancel is: off the calendar, no reminders left to
    // come back with START, the crew told.
    assert_eq!(state_of(&app, DANA).await, "OPTED_OUT");
    assert_cancelled_everywhere(&app).await;
}

/// The booking is cancelled and its reminders are off (none pending or
/// held by an opt-out). (The crew's email: `jobs::plan`'s tests.)
async fn assert_cancelled_everywhere(app: &TestApp) {
    let bookings = app.store.bookings().await.unwrap();
    assert!(!bookings.is_empty());
    assert!(
        bookings.iter().all(|b| b.status == BookingStatus::Cancelled),
        "{bookings:?}"
    );
    let live = app
        .store
        .jobs(&[JobStatus::Pending, JobStatus::Suspended], 100)
        .await
        .unwrap();
    assert!(live.iter().all(|j| j.kind != "reminder"), "{live:?}");
}

#[tokio::test]
async fn a_booking_stands_while_the_owner_has_the_conversation_and_the_owner_can_cancel_it() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, _clock) = app_at(12).await;
    let id = book(&app).await;
    let label = app.store.bookings().await.unwrap()[0].label.clone();
    let (mut browser, csrf) = Browser::logged_in(&app).await;

    let page = act(&mut browser, &csrf, id, "take-over", &[]).await;
    assert_eq!(state_of(&app, DANA).await, "HANDED_OFF");
    // Still listed with the booked ones.
    let booked = browser.get("/owner/?filter=booked").await.body;
    assert!(booked.contains(DANA), "{booked}");
    assert!(
        page.body.contains(&format!("<h3>Booking: {label}</h3>")),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"cancel-booking\""), "{}", page.body);
    // Moving is the booking flow's: hand back first.
    assert!(!page.body.contains("id=\"reschedule\""), "{}", page.body);
    assert!(page.body.contains("id=\"move-after-hand-back\""), "{}", page.body);
    let refused = act(&mut browser, &csrf, id, "reschedule", &[]).await;
    assert!(
        refused.body.contains("hand it back to move the booking"),
        "{}",
        refused.body
    );

    // Handing back returns to the booking, reminders and all.
    act(&mut browser, &csrf, id, "hand-back", &[]).await;
    assert_eq!(state_of(&app, DANA).await, "BOOKED");
    let reminders = app.store.jobs(&[JobStatus::Pending], 100).await.unwrap();
    assert!(reminders.iter().any(|j| j.kind == "reminder"), "{reminders:?}");

    // Taken over again, the owner cancels it and keeps the conversation.
    act(&mut browser, &csrf, id, "take-over", &[]).await;
    let before = texts_to(&app, DANA).await.len();
    let page = act(&mut browser, &csrf, id, "cancel", &[]).await;
    assert!(page.body.contains("Cancelled the booking"), "{}", page.body);
    assert!(page.body.contains("The customer was texted."), "{}", page.body);
    assert_eq!(state_of(&app, DANA).await, "HANDED_OFF");
    assert!(page.body.contains("id=\"hand-back\""), "{}", page.body);
    let booked = browser.get("/owner/?filter=booked").await.body;
    assert!(!booked.contains(DANA), "{booked}");
    assert!(!page.body.contains("id=\"cancel-booking\""), "{}", page.body);
    let sent = wait_for_text_to(&app, DANA, before + 1).await;
    assert_eq!(
        sent.last().unwrap(),
        &format!(
            "Rose City Junk Haulers cancelled your booking for {label}. We're sorry for the change. Text us any time to book again."
        )
    );
    assert_cancelled_everywhere(&app).await;
}

#[tokio::test]
async fn after_the_owner_cancels_the_customer_keeps_name_address_and_price_and_the_owner_is_named() {
    if crate::helpers::skipped() {
        return;
    }
    use textdesk::domain::conversation::{CloseReason, ConversationState};
    let (app, _clock) = app_at(12).await;
    for (i, text) in ["hi, my name is Dana Smith", "3", "1", "12 Oak St", "1"]
        .iter()
        .enumerate()
    {
        app.text(DANA, text).await;
        app.wait_for_texts(i + 1).await;
    }
    app.wait_until_settled(DANA).await;
    assert_eq!(state_of(&app, DANA).await, "BOOKED");
    let id = app.conversation(DANA).await.unwrap().0;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let booked_page = browser.get(&format!("/owner/conversations/{id}")).await;
    let at = booked_page.body.find("<h2>Quote: ").expect("a quote card");
    let quote_card = booked_page.body[at..].split("</h2>").next().unwrap().to_string();

    let page = act(&mut browser, &csrf, id, "cancel", &[]).await;
    assert!(page.body.contains("Cancelled the booking"), "{}", page.body);
    assert!(page.body.contains("Dana Smith"), "{}", page.body);
    assert!(page.body.contains("12 Oak St"), "{}", page.body);
    assert!(page.body.contains(&quote_card), "{quote_card}: {}", page.body);
    let inbox = browser.get("/owner/?q=Dana").await;
    assert!(inbox.body.contains("Dana Smith"), "{}", inbox.body);
    let ConversationState::Cancelled(closed) = app
        .store
        .turn_input(app.conversation(DANA).await.unwrap(), 0)
        .await
        .unwrap()
        .state
    else {
        panic!("not cancelled");
    };
    assert_eq!(closed.reason, CloseReason::CancelledByOwner);
}

#[tokio::test]
async fn every_action_needs_the_csrf_token_and_an_existing_conversation() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, _clock) = app_at(12).await;
    let id = dana_says_hi(&app).await;
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    for action in ["take-over", "hand-back", "reply", "reschedule", "cancel"] {
        let page = browser.post(&path(id, action), &[("body", "hello")]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{action}");
        let page = browser.post(&path(id, action), &[("csrf", "forged")]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{action}");
        for unknown in ["999999", "abc", "0"] {
            let page = browser
                .post(
                    &format!("/owner/conversations/{unknown}/{action}"),
                    &[("csrf", &csrf)],
                )
                .await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "{action} {unknown}");
        }
    }
    assert_eq!(state_of(&app, DANA).await, "INTAKE", "nothing changed");
    assert_eq!(app.sent_texts().await.len(), 1);

    // Without a session an action changes nothing either.
    let mut anonymous = Browser::new(&app);
    let page = anonymous.post(&path(id, "take-over"), &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(state_of(&app, DANA).await, "INTAKE");
}

#[tokio::test]
async fn the_reply_counter_script_is_served_from_the_console_itself() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, _clock) = app_at(12).await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/owner/static/reply-counter.js").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(page.body.contains("reply-counter"));
}

#[tokio::test]
async fn a_hand_off_is_texted_to_the_owner_with_a_link_to_the_conversation() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, _clock) = app_at(12).await;
    app.text(DANA, "can I talk to a person").await;
    app.wait_until_settled(DANA).await;
    assert_eq!(state_of(&app, DANA).await, "HANDED_OFF");
    let id = app.conversation(DANA).await.unwrap().0;

    let told = wait_for_text_to(&app, OWNER_PHONE, 1).await;
    assert!(told[0].starts_with("A customer needs you"), "{told:?}");
    assert!(told[0].contains(DANA), "the owner can call: {told:?}");
    // Why, in plain words, not a Rust name.
    assert!(told[0].contains("the customer asked for a person"), "{told:?}");
    assert!(!told[0].contains("CustomerAskedForPerson"), "{told:?}");
    assert!(
        told[0].ends_with(&format!("{PUBLIC_BASE_URL}/owner/conversations/{id}")),
        "{told:?}"
    );
    // It went out from the business's number, through the outbox.
    let requests = app.twilio.received_requests().await.unwrap();
    let to_owner = requests
        .iter()
        .map(|r| {
            form_urlencoded::parse(&r.body)
                .into_owned()
                .collect::<std::collections::HashMap<_, _>>()
        })
        .find(|f| f.get("To").map(String::as_str) == Some(OWNER_PHONE))
        .unwrap();
    assert_eq!(to_owner["From"], BUSINESS_NUMBER);

    // The owner answering the text is not taken for a customer.
    app.text(OWNER_PHONE, "on my way to call her").await;
    app.wait_until_settled(OWNER_PHONE).await;
    app.wait_until_idle().await;
    assert_eq!(
        texts_to(&app, OWNER_PHONE).await.len(),
        1,
        "no reply to the owner"
    );

    // The owner's STOP is honoured: the next alert is not texted.
    app.text(OWNER_PHONE, "STOP").await;
    app.wait_until_settled(OWNER_PHONE).await;
    app.text(DANA, "hello? anyone").await;
    app.wait_until_settled(DANA).await;
    let alerts = app.store.alerts().await.unwrap();
    assert!(alerts.iter().any(|a| a.kind == "handed_off_text"), "{alerts:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let owner_texts = loop {
        let jobs: Vec<_> = app
            .store
            .jobs(
                &[
                    JobStatus::Pending,
                    JobStatus::Running,
                    JobStatus::Done,
                    JobStatus::Cancelled,
                ],
                50,
            )
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.kind == "owner_text")
            .collect();
        if jobs.len() == 2
            && jobs
                .iter()
                .all(|j| matches!(j.status, JobStatus::Done | JobStatus::Cancelled))
        {
            break jobs;
        }
        assert!(std::time::Instant::now() < deadline, "{jobs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        owner_texts.iter().any(|j| j.status == JobStatus::Cancelled),
        "the text after the owner's STOP was not sent: {owner_texts:?}"
    );
    assert_eq!(
        texts_to(&app, OWNER_PHONE).await.len(),
        1,
        "{:?}",
        app.sent_texts().await
    );
}

#[tokio::test]
async fn the_owners_own_phone_reads_as_the_owners_line_not_a_customer() {
    if crate::helpers::skipped() {
        return;
    }
    let (app, _clock) = app_at(12).await;
    app.text(OWNER_PHONE, "on my way to call her").await;
    app.wait_until_settled(OWNER_PHONE).await;
    let id = app.conversation(OWNER_PHONE).await.unwrap().0;
    let (mut browser, _) = Browser::logged_in(&app).await;

    let inbox = browser.get("/owner/").await.body;
    let at = inbox.find(OWNER_PHONE).expect("the owner's line is listed");
    let row_start = inbox[..at].rfind("<li").unwrap();
    let row_end = inbox[at..].find("</li>").unwrap() + at;
    let row = &inbox[row_start..row_end];
    assert!(row.contains("Your phone (owner)"), "{row}");
    assert!(!row.contains("aria-label=\"unread\""), "{row}");

    let page = browser.get(&format!("/owner/conversations/{id}")).await;
    assert!(page.body.contains("Your phone (owner)"), "{}", page.body);
    let thread = page.body[page.body.find("class=\"messages\"").unwrap()..]
        .split("</ol>")
        .next()
        .unwrap();
    assert!(thread.contains("author-owner"), "{thread}");
    assert!(!thread.contains(">Customer"), "{thread}");
    assert!(!thread.contains("badge new"), "{thread}");
}

#[tokio::test]
async fn the_browsers_favicon_request_is_answered_without_an_error() {
    if crate::helpers::skipped() {
        return;
    }
    let app = spawn_app().await;
    let response = reqwest::get(format!("{}/favicon.ico", app.address))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_radio_shares_its_line_with_its_label() {
    if crate::helpers::skipped() {
        return;
    }
    // The text inputs' padding and 40px height pushed each radio of "Move
    // it to" above its label (checked in Chromium at 1280 and 375 px).
    let app = spawn_app().await;
    let css = reqwest::get(format!("{}/owner/static/console.css", app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rule = css
        .lines()
        .find(|l| l.starts_with("label.choice input"))
        .expect("a rule for the radio in a choice");
    assert!(
        rule.contains("min-height: 0") && rule.contains("padding: 0"),
        "{rule}"
    );
}

#[tokio::test]
async fn a_calendar_failure_during_the_owners_cancel_is_an_alert_that_says_the_booking_stands() {
    if crate::helpers::skipped() {
        return;
    }
    let clock = ManualClock::at(today_at(LA, 12, 0));
    let app = spawn_app_with(Options {
        with_model: false,
        google: true,
        business: Some(format!(
            "{}[[providers]]\nid = \"crew-1\"\nname = \"Crew 1\"\n\
             calendar_id = \"crew1@group.calendar.google.com\"\n",
            business()
        )),
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    with_password(&app).await;
    let id = book(&app).await;
    let label = app.store.bookings().await.unwrap()[0].label.clone();
    let google = app.google.as_ref().unwrap();
    assert_eq!(google.events().len(), 1);
    google
        .state
        .fail_deletes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    let before = texts_to(&app, DANA).await.len();

    let page = act(&mut browser, &csrf, id, "cancel", &[]).await;
    assert!(
        page.body.contains("The calendar could not do it")
            && page.body.contains("You have an alert about it"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Cancelled the booking"), "{}", page.body);
    assert_eq!(state_of(&app, DANA).await, "BOOKED");
    assert_eq!(google.events().len(), 1, "still on the crew's calendar");
    // Kept as an alert, with the customer's full number (it is the
    // owner's to call) and what to do; not texted to the owner, who is
    // looking at the page that says so.
    let alerts = app.store.alerts().await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0]
            .detail
            .starts_with(&format!("Could not cancel customer {DANA}'s booking for {label}"))
            && alerts[0].detail.contains("It still stands"),
        "{alerts:?}"
    );
    app.wait_until_idle().await;
    assert_eq!(
        texts_to(&app, DANA).await.len(),
        before,
        "the customer is told nothing"
    );
}

#[tokio::test]
async fn a_night_move_to_a_slot_that_starts_as_quiet_hours_end_says_to_call_and_still_texts_at_eight() {
    if crate::helpers::skipped() {
        return;
    }
    use chrono::TimeZone;
    // Tuesday 1 December 2026, noon in Los Angeles; openings an hour out.
    let noon = LA
        .with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let clock = ManualClock::at(noon);
    let app = spawn_app_with(Options {
        with_model: false,
        business: Some(business().replace("min_notice_hours = 48", "min_notice_hours = 1")),
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    with_password(&app).await;
    let id = book(&app).await;
    let texts_by_day = texts_to(&app, DANA).await.len();

    // 10:30pm: the first opening now is Wednesday's first, at 8am, when
    // quiet hours end.
    clock.set(
        LA.with_ymd_and_hms(2026, 12, 1, 22, 30, 0)
            .unwrap()
            .with_timezone(&chrono::Utc),
    );
    let eight = LA
        .with_ymd_and_hms(2026, 12, 2, 8, 0, 0)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let (mut browser, csrf) = Browser::logged_in(&app).await;
    act(&mut browser, &csrf, id, "reschedule", &[]).await;
    let page = act(&mut browser, &csrf, id, "reschedule", &[("slot", "1")]).await;
    let moved = app
        .store
        .bookings()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.status == BookingStatus::Confirmed)
        .unwrap();
    assert_eq!(moved.slot.start, eight, "{moved:?}");
    assert!(
        page.body.contains("The booking starts before then: call them."),
        "{}",
        page.body
    );
    app.wait_until_idle().await;
    assert_eq!(texts_to(&app, DANA).await.len(), texts_by_day, "nothing at night");

    // At 8:00 the job is on: the confirmation still goes.
    clock.set(eight);
    let sent = wait_for_text_to(&app, DANA, texts_by_day + 1).await;
    assert!(
        sent.last()
            .unwrap()
            .starts_with("You're booked with Rose City Junk Haulers: Wed Dec 2, 8"),
        "{sent:?}"
    );
}
