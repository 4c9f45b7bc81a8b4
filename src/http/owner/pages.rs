//! The console's pages for a signed-in owner: inbox, conversation, photos,
//! schedule, alerts and jobs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use tower_sessions::Session;

use super::csrf_token;
use super::views::{
    self, AlertView, AlertsPage, BookingView, ConversationPage, CrewView, DayView, InboxItem, InboxPage,
    JobView, JobsPage, MediaView, MessageView, Nav, QuoteView, ScheduleItem, SchedulePage,
};
use crate::config::business::BusinessConfig;
use crate::domain::conversation::ConversationState;
use crate::http::AppState;
use crate::store::console::{ConsoleBooking, InboxFilter, InboxQuery, JobChange};
use crate::store::{ConversationId, Direction, JobStatus, MessageId, STALE_PENDING_MINUTES};

pub const INBOX_PAGE_SIZE: usize = 50;

/// A failure the owner cannot fix from the page: logged, and a plain 500.
pub(super) fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console: a page failed");
    views::error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong. Try again in a moment.",
    )
}

pub(super) async fn not_found() -> Response {
    views::error_page(StatusCode::NOT_FOUND, "There is no such page.")
}

/// The business the switcher names, if it is one we know.
fn picked_business(state: &AppState, raw: Option<&str>) -> Option<Arc<BusinessConfig>> {
    raw.filter(|id| !id.is_empty())
        .and_then(|id| state.businesses.business(id))
}

/// The business whose zone and crews a page uses when none is picked.
/// How the console names the conversation with `[business] owner_phone`.
const OWNERS_LINE: &str = "Your phone (owner)";

/// Whether `address` is the owner's own phone for this business: that
/// conversation holds the owner's texts and alerts, not a customer's.
/// It stays in the inbox (the owner may look for what was texted to
/// them) but is named and labelled as theirs.
fn is_owners_line(state: &AppState, business_id: &str, address: &str) -> bool {
    state
        .businesses
        .business(business_id)
        .and_then(|b| b.business.owner_phone.clone())
        .is_some_and(|owner| owner.as_str() == address)
}

pub(super) fn business_or_first(state: &AppState, id: Option<&str>) -> Option<Arc<BusinessConfig>> {
    id.and_then(|id| state.businesses.business(id))
        .or_else(|| state.businesses.current().iter().next().cloned())
}

pub(super) async fn nav(
    state: &AppState,
    session: &Session,
    active: &'static str,
    business: Option<&str>,
) -> Result<Nav, Response> {
    let csrf = csrf_token(session).await.map_err(internal)?;
    let open_alerts = state
        .owner
        .console
        .open_alert_count(business)
        .await
        .map_err(internal)?;
    let all = state.businesses.current();
    let businesses = if all.single().is_some() {
        Vec::new()
    } else {
        all.iter()
            .map(|b| (b.business.id.clone(), b.business.name.clone()))
            .collect()
    };
    Ok(Nav {
        csrf,
        open_alerts,
        active,
        businesses,
        business: business.unwrap_or_default().to_string(),
    })
}

pub(super) fn parse_id(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|id| *id > 0)
}

#[derive(Deserialize, Default)]
pub(super) struct InboxParams {
    filter: Option<String>,
    q: Option<String>,
    business: Option<String>,
    page: Option<usize>,
}

pub(super) async fn inbox(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<InboxParams>,
) -> Response {
    let business = picked_business(&state, params.business.as_deref());
    let business_id = business.as_ref().map(|b| b.business.id.clone());
    let nav = match nav(&state, &session, "inbox", business_id.as_deref()).await {
        Ok(nav) => nav,
        Err(response) => return response,
    };
    let filter = params
        .filter
        .as_deref()
        .and_then(InboxFilter::parse)
        .unwrap_or_default();
    let search = params.q.clone().unwrap_or_default();
    let page = params.page.unwrap_or(0).min(10_000);
    let rows = match state
        .owner
        .console
        .inbox(&InboxQuery {
            business_id: business_id.clone(),
            filter,
            search: Some(search.clone()),
            // One more than shown tells whether there is a next page.
            limit: INBOX_PAGE_SIZE + 1,
            offset: page * INBOX_PAGE_SIZE,
        })
        .await
    {
        Ok(rows) => rows,
        Err(e) => return internal(e),
    };
    let now = state.owner.clock.now();
    let several = !nav.businesses.is_empty();
    let next_page = (rows.len() > INBOX_PAGE_SIZE).then(|| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("filter", filter.as_str());
        if !search.is_empty() {
            query.append_pair("q", &search);
        }
        if let Some(id) = &business_id {
            query.append_pair("business", id);
        }
        query.append_pair("page", &(page + 1).to_string());
        format!("/owner/?{}", query.finish())
    });
    let rows = rows
        .into_iter()
        .take(INBOX_PAGE_SIZE)
        .map(|row| {
            let owners_line = is_owners_line(&state, &row.business_id, &row.customer_address);
            InboxItem {
                href: format!("/owner/conversations/{}", row.id.0),
                name: if owners_line {
                    OWNERS_LINE.to_string()
                } else {
                    row.customer_name.clone().unwrap_or_default()
                },
                channel: views::channel_name(&row.customer_address),
                address: row.customer_address,
                state: views::state_label(if row.opted_out { "opted_out" } else { &row.state }),
                needs_you: row.needs_you,
                last_text: row.last_text.unwrap_or_default(),
                last_by: match row.last_direction {
                    Some(Direction::Outbound) => "Sent: ",
                    _ => "",
                },
                since: row.last_at.map(|t| views::since(t, now)).unwrap_or_default(),
                // The owner wrote these texts: nothing there is news to them.
                unread: row.unread && !owners_line,
                business: if several {
                    state
                        .businesses
                        .business(&row.business_id)
                        .map_or(row.business_id, |b| b.business.name.clone())
                } else {
                    String::new()
                },
            }
        })
        .collect();
    views::render(
        StatusCode::OK,
        &InboxPage {
            nav,
            filters: InboxFilter::ALL
                .iter()
                .map(|f| (f.as_str(), f.label(), *f == filter))
                .collect(),
            filter: filter.as_str(),
            search,
            rows,
            next_page,
        },
    )
}

/// The customer's other conversations: from a web chat, the texts of the
/// number the visitor verified; from a phone's, the web chats linked to it.
/// A failed read costs the page its links, never the page.
async fn linked_conversations(
    state: &AppState,
    detail: &crate::store::console::ConversationDetail,
    business: Option<&crate::config::business::BusinessConfig>,
) -> Vec<views::LinkView> {
    let Ok(address) = crate::domain::phone::E164::parse_address(&detail.customer_address) else {
        return Vec::new();
    };
    let link = |id: ConversationId, label: String| views::LinkView {
        href: format!("/owner/conversations/{}", id.0),
        label,
    };
    let store = &state.webchat.store;
    if address.is_web() {
        return match store.web_session_of(&address).await {
            Ok(Some(session)) => match (session.verified_phone, session.linked_conversation) {
                (Some(phone), Some(texts)) => {
                    vec![link(texts, format!("Verified {}: their texts →", phone.as_str()))]
                }
                _ => Vec::new(),
            },
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "console: could not read the web chat's session");
                Vec::new()
            }
        };
    }
    let sessions = match store.web_sessions_linked_to(detail.id).await {
        Ok(sessions) => sessions,
        Err(e) => {
            tracing::warn!(error = %e, "console: could not read the web chats linked to a conversation");
            return Vec::new();
        }
    };
    let Some(number) = business.and_then(|b| b.business.phone.clone()) else {
        return Vec::new();
    };
    let mut links = Vec::new();
    for session in sessions {
        match state.store.find_conversation(&session.address, &number).await {
            Ok(Some(chat)) => links.push(link(
                chat,
                format!(
                    "Web chat of {}: verified this number →",
                    session.created_at.format("%b %-d")
                ),
            )),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "console: could not find a linked web chat"),
        }
    }
    links
}

pub(super) async fn conversation(
    State(state): State<AppState>,
    session: Session,
    Path(raw): Path<String>,
) -> Response {
    let Some(id) = parse_id(&raw) else {
        return not_found().await;
    };
    conversation_page(&state, &session, id, StatusCode::OK, None).await
}

/// The conversation page; with `refused_edit`, the held reply's edit form
/// comes back with the owner's wording and why it was not sent.
pub(super) async fn conversation_page(
    state: &AppState,
    session: &Session,
    id: i64,
    status: StatusCode,
    refused_edit: Option<super::approval::RefusedEdit>,
) -> Response {
    let detail = match state.owner.console.conversation_detail(ConversationId(id)).await {
        Ok(Some(detail)) => detail,
        Ok(None) => return not_found().await,
        Err(e) => return internal(e),
    };
    let nav = match nav(state, session, "inbox", None).await {
        Ok(nav) => nav,
        Err(response) => return response,
    };
    let business = business_or_first(state, Some(&detail.business_id));
    let tz: Tz = business.as_ref().map_or(chrono_tz::UTC, |b| b.business.timezone);
    let conversation_state: Option<ConversationState> = detail
        .state_json
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok());
    let tag = match &conversation_state {
        _ if detail.opted_out => "opted_out",
        Some(s) => state_tag(s),
        None => "intake",
    };
    let job = conversation_state.as_ref().and_then(|s| s.job().cloned());
    let mut job_lines = Vec::new();
    if let Some(job) = &job {
        if let Some(address) = &job.address {
            job_lines.push(("Address", address.clone()));
        }
        if let Some(notes) = &job.notes {
            job_lines.push(("Notes", notes.clone()));
        }
    }
    let quote = conversation_state
        .as_ref()
        .and_then(current_quote)
        .map(|q| QuoteView {
            total: q.total.to_string(),
            lines: q
                .lines
                .iter()
                .map(|l| (l.label.clone(), l.amount.to_string()))
                .collect(),
            assumptions: q.assumptions.clone(),
            valid_until: views::local_time(q.expires_at, tz),
        });
    let handoff = match &conversation_state {
        Some(ConversationState::HandedOff(h)) => Some(format!(
            "Handed to you {}: {}",
            views::local_time(h.at, tz),
            h.summary
        )),
        _ => None,
    };
    let now = state.owner.clock.now();
    let crew_name = |id: &str| {
        business
            .as_ref()
            .and_then(|b| b.providers.iter().find(|p| p.id == id))
            .map_or(id.to_string(), |p| p.name.clone())
    };
    let bookings = detail
        .bookings
        .iter()
        .map(|b| BookingView {
            window: b.label.clone(),
            crew: crew_name(&b.provider_id),
            status: b.status.clone(),
            needs_you: booking_attention(b, now).is_some(),
        })
        .collect();
    let owners_line = is_owners_line(state, &detail.business_id, &detail.customer_address);
    let messages = detail
        .messages
        .iter()
        .map(|m| MessageView {
            author: match m.direction {
                Direction::Inbound if owners_line => "Owner",
                _ => views::author(m.direction, &m.kind),
            },
            inbound: m.direction == Direction::Inbound,
            unread: m.direction == Direction::Inbound && !owners_line && m.id.0 > detail.last_read_id,
            body: m.body.clone(),
            time: views::local_time(m.created_at, tz),
            status: match m.direction {
                Direction::Inbound => String::new(),
                Direction::Outbound => {
                    views::delivery_label(&m.status, m.delivery_status.as_deref(), m.delivery_error_code)
                }
            },
            media: m
                .media
                .iter()
                .map(|media| MediaView {
                    href: (media.status == "fetched").then(|| format!("/owner/media/{}", media.id)),
                    label: format!("{} ({})", media.content_type, media.status.replace('_', " ")),
                })
                .collect(),
        })
        .collect();
    let messages = with_scheduled_owner_replies(state, detail.id, messages, tz).await;
    if let Some(last) = detail.messages.last()
        && let Err(e) = state
            .owner
            .console
            .mark_read(detail.id, MessageId(last.id.0))
            .await
    {
        tracing::warn!(error = %e, "console: could not mark a conversation read");
    }
    let held = super::approval::held_view(&detail, business.as_deref(), tz, refused_edit);
    let usage = match state.store.conversation_usage(detail.id).await {
        Ok(totals) if totals.turns > 0 => Some(views::UsageView::of(&totals, &state.owner.model_prices)),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "console: could not read the conversation's model usage");
            None
        }
    };
    let actions = super::actions::panel(
        session,
        detail.id,
        business.as_deref(),
        &detail.customer_address,
        detail.opted_out,
        conversation_state.as_ref(),
        now,
    )
    .await;
    let linked = linked_conversations(state, &detail, business.as_deref()).await;
    views::render(
        status,
        &ConversationPage {
            linked,
            id: detail.id.0,
            actions,
            nav,
            name: if owners_line {
                OWNERS_LINE.to_string()
            } else {
                job.and_then(|j| j.customer_name).unwrap_or_default()
            },
            channel: views::channel_name(&detail.customer_address),
            tel: views::tel_href(&detail.customer_address),
            address: detail.customer_address,
            business: business.map(|b| b.business.name.clone()).unwrap_or_default(),
            timezone: tz.name().to_string(),
            state: views::state_label(tag),
            needs_you: tag == "handed_off" || detail.open_alerts > 0 || held.is_some(),
            opted_out: detail.opted_out,
            handoff,
            job: job_lines,
            quote,
            bookings,
            messages,
            held,
            usage,
        },
    )
}

/// The texts waiting for the end of quiet hours (the owner's own, and the
/// customer's news of a booking the owner changed), after the thread: the
/// owner sees what will go out, and when, in the business's zone.
async fn with_scheduled_owner_replies(
    state: &AppState,
    id: ConversationId,
    mut messages: Vec<MessageView>,
    tz: Tz,
) -> Vec<MessageView> {
    use crate::jobs::payload::{BOOKING_NOTICE, JobPayload, OWNER_REPLY};
    for kind in [OWNER_REPLY, BOOKING_NOTICE] {
        let scheduled = match state.store.pending_jobs_of(id, kind).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "console: could not read the scheduled texts");
                return messages;
            }
        };
        for job in scheduled {
            let (author, body) = match JobPayload::of(&job) {
                Ok(JobPayload::OwnerReply(reply)) => {
                    (views::author(Direction::Outbound, OWNER_REPLY), reply.body)
                }
                Ok(JobPayload::BookingNotice(notice)) => (
                    views::author(Direction::Outbound, notice.change.message_kind().as_str()),
                    notice.body,
                ),
                _ => continue,
            };
            messages.push(MessageView {
                author,
                inbound: false,
                unread: false,
                body,
                time: views::local_time(job.run_at, tz),
                status: "scheduled, not sent yet".into(),
                media: Vec::new(),
            });
        }
    }
    messages
}

/// The state's tag as stored (`handed_off`), matching the inbox's.
fn state_tag(state: &ConversationState) -> &'static str {
    match state {
        ConversationState::Intake(_) => "intake",
        ConversationState::Quoted(_) => "quoted",
        ConversationState::Scheduling(_) => "scheduling",
        ConversationState::Booked(_) => "booked",
        ConversationState::HandedOff(_) => "handed_off",
        ConversationState::Cancelled(_) => "cancelled",
        ConversationState::OptedOut(_) => "opted_out",
        ConversationState::Closed(_) => "closed",
    }
}

fn current_quote(state: &ConversationState) -> Option<&crate::domain::quote::Quote> {
    state.last_quote()
}

/// Why a booking still needs the owner, if it does: its calendar event is
/// not known to exist.
fn booking_attention(booking: &ConsoleBooking, now: DateTime<Utc>) -> Option<String> {
    if booking.status == "pending" {
        return Some(
            if now - booking.updated_at > Duration::minutes(STALE_PENDING_MINUTES) {
                "Calendar write did not finish: check the crew's calendar".to_string()
            } else {
                "Calendar write in progress".to_string()
            },
        );
    }
    // A failed calendar write or move is an alert on the conversation.
    (booking.open_alerts > 0).then(|| "Open alert: see the conversation".to_string())
}

pub(super) async fn media(State(state): State<AppState>, Path(raw): Path<String>) -> Response {
    let Some(id) = parse_id(&raw) else {
        return not_found().await;
    };
    match state.owner.console.media_bytes(id).await {
        Ok(Some(media)) => {
            // Only images are shown inline; anything else is a download, so
            // a customer's file can never run as a page of ours.
            let inline = media.content_type.starts_with("image/") && !media.content_type.contains("svg");
            let content_type = if inline {
                media.content_type
            } else {
                "application/octet-stream".to_string()
            };
            let disposition = if inline { "inline" } else { "attachment" };
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CONTENT_DISPOSITION, disposition.to_string()),
                ],
                media.bytes,
            )
                .into_response()
        }
        Ok(None) => not_found().await,
        Err(e) => internal(e),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct BusinessParam {
    business: Option<String>,
}

/// Days shown on the schedule: today and the next seven.
pub const SCHEDULE_DAYS: i64 = 8;

fn local_midnight(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    use chrono::TimeZone;
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A zone whose clocks skip midnight starts the day at the first instant that exists.
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(midnight + Duration::hours(1)))
                .earliest()
        })
        .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
}

pub(super) async fn schedule(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<BusinessParam>,
) -> Response {
    let Some(business) = business_or_first(&state, params.business.as_deref()) else {
        return not_found().await;
    };
    let nav = match nav(&state, &session, "schedule", Some(&business.business.id)).await {
        Ok(nav) => nav,
        Err(response) => return response,
    };
    let tz = business.business.timezone;
    let now = state.owner.clock.now();
    let today = now.with_timezone(&tz).date_naive();
    let from = local_midnight(today, tz);
    let to = local_midnight(today + Duration::days(SCHEDULE_DAYS), tz);
    let bookings = match state
        .owner
        .console
        .bookings_between(Some(&business.business.id), from, to)
        .await
    {
        Ok(bookings) => bookings,
        Err(e) => return internal(e),
    };
    let mut by_day: BTreeMap<NaiveDate, BTreeMap<String, Vec<ScheduleItem>>> = BTreeMap::new();
    for offset in 0..SCHEDULE_DAYS {
        by_day.entry(today + Duration::days(offset)).or_default();
    }
    let crew_name = |id: &str| {
        business
            .providers
            .iter()
            .find(|p| p.id == id)
            .map_or(id.to_string(), |p| p.name.clone())
    };
    for booking in &bookings {
        let conversation_state: Option<ConversationState> = booking
            .state_json
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok());
        let job = conversation_state.as_ref().and_then(|s| s.job());
        let price = match &conversation_state {
            Some(ConversationState::Booked(b)) if b.booking.id == booking.id => b
                .booking
                .slot
                .quote
                .as_ref()
                .unwrap_or(&b.quote)
                .total
                .to_string(),
            Some(s) => current_quote(s).map(|q| q.total.to_string()).unwrap_or_default(),
            None => String::new(),
        };
        let start = booking.start.with_timezone(&tz);
        let end = booking.end.with_timezone(&tz);
        by_day
            .entry(start.date_naive())
            .or_default()
            .entry(crew_name(&booking.provider_id))
            .or_default()
            .push(ScheduleItem {
                window: format!("{}–{}", start.format("%-I:%M %P"), end.format("%-I:%M %P")),
                customer: job
                    .and_then(|j| j.customer_name.clone())
                    .unwrap_or_else(|| booking.customer_address.clone()),
                address: job.and_then(|j| j.address.clone()).unwrap_or_default(),
                price,
                href: format!("/owner/conversations/{}", booking.conversation_id.0),
                attention: booking_attention(booking, now),
            });
    }
    let days = by_day
        .into_iter()
        .map(|(day, crews)| DayView {
            label: if day == today {
                format!("Today, {}", day.format("%a %b %-d"))
            } else {
                day.format("%a %b %-d").to_string()
            },
            crews: crews
                .into_iter()
                .map(|(crew, bookings)| CrewView { crew, bookings })
                .collect(),
        })
        .collect();
    views::render(
        StatusCode::OK,
        &SchedulePage {
            nav,
            business: business.business.name.clone(),
            timezone: tz.name().to_string(),
            days,
        },
    )
}

#[derive(Deserialize, Default)]
pub(super) struct AlertParams {
    business: Option<String>,
    show: Option<String>,
}

pub(super) async fn alerts(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<AlertParams>,
) -> Response {
    let business = picked_business(&state, params.business.as_deref());
    let business_id = business.as_ref().map(|b| b.business.id.as_str());
    let nav = match nav(&state, &session, "alerts", business_id).await {
        Ok(nav) => nav,
        Err(response) => return response,
    };
    let open = params.show.as_deref() != Some("resolved");
    let alerts = match state.owner.console.console_alerts(business_id, open, 500).await {
        Ok(alerts) => alerts,
        Err(e) => return internal(e),
    };
    let alerts = alerts
        .into_iter()
        .map(|a| {
            let tz = business_or_first(&state, Some(&a.business_id))
                .map_or(chrono_tz::UTC, |b| b.business.timezone);
            AlertView {
                id: a.id,
                kind: a.kind.replace('_', " "),
                detail: a.detail,
                when: views::local_time(a.created_at, tz),
                customer: a.customer_name.unwrap_or_default(),
                tel: a
                    .customer_address
                    .as_deref()
                    .map(views::tel_href)
                    .unwrap_or_default(),
                address: a.customer_address.unwrap_or_default(),
                href: a.conversation_id.map(|c| format!("/owner/conversations/{}", c.0)),
                resolved: a.resolved_at.map(|t| views::local_time(t, tz)),
            }
        })
        .collect();
    views::render(StatusCode::OK, &AlertsPage { nav, open, alerts })
}

pub(super) async fn resolve_alert(State(state): State<AppState>, Path(raw): Path<String>) -> Response {
    let Some(id) = parse_id(&raw) else {
        return not_found().await;
    };
    match state
        .owner
        .console
        .resolve_alert(id, "console", state.owner.clock.now())
        .await
    {
        // Resolving twice (two tabs) lands on the same page.
        Ok(_) => Redirect::to("/owner/alerts").into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct JobParams {
    notice: Option<String>,
}

pub(super) async fn jobs(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<JobParams>,
) -> Response {
    let nav = match nav(&state, &session, "jobs", None).await {
        Ok(nav) => nav,
        Err(response) => return response,
    };
    // What `textdesk jobs` lists: pending, running, suspended and dead jobs,
    // and done ones whose text did not arrive.
    let statuses = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Suspended,
        JobStatus::Dead,
        JobStatus::Done,
    ];
    let mut jobs = match state.store.jobs(&statuses, 1_000).await {
        Ok(jobs) => jobs,
        Err(e) => return internal(e),
    };
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let deliveries = match state.store.job_text_deliveries(&ids).await {
        Ok(deliveries) => deliveries,
        Err(e) => return internal(e),
    };
    let undelivered: HashSet<i64> = deliveries
        .iter()
        .filter(|t| t.receipt.is_some_and(|r| r.is_failure()))
        .map(|t| t.job_id)
        .collect();
    jobs.retain(|j| j.status != JobStatus::Done || undelivered.contains(&j.id));
    let texts: HashMap<i64, String> = deliveries.into_iter().map(|t| (t.job_id, t.summary())).collect();
    let jobs = jobs
        .into_iter()
        .map(|j| {
            let tz = business_or_first(&state, Some(&j.business_id))
                .map_or(chrono_tz::UTC, |b| b.business.timezone);
            JobView {
                id: j.id,
                kind: j.kind.replace('_', " "),
                status: j.status.as_str(),
                recipient: j.recipient.clone(),
                due: views::local_time(j.run_at, tz),
                attempts: format!("{}/{}", j.attempts, j.max_attempts),
                last_error: j.last_error.clone().unwrap_or_default(),
                text: texts.get(&j.id).cloned().unwrap_or_default(),
                href: j.conversation_id.map(|c| format!("/owner/conversations/{}", c.0)),
                can_retry: j.status == JobStatus::Dead,
                can_cancel: matches!(j.status, JobStatus::Pending | JobStatus::Suspended),
            }
        })
        .collect();
    let notice = params.notice.as_deref().and_then(|n| match n {
        "retried" => Some("The job will run again now.".to_string()),
        "cancelled" => Some("The job is cancelled.".to_string()),
        "unchanged" => Some("That job had already moved on; nothing was changed.".to_string()),
        _ => None,
    });
    views::render(StatusCode::OK, &JobsPage { nav, jobs, notice })
}

fn after_job_change(change: JobChange, done: &str) -> Response {
    match change {
        JobChange::Changed => Redirect::to(&format!("/owner/jobs?notice={done}")).into_response(),
        JobChange::NotApplicable(_) => Redirect::to("/owner/jobs?notice=unchanged").into_response(),
        JobChange::NotFound => views::error_page(StatusCode::NOT_FOUND, "There is no such job."),
    }
}

pub(super) async fn retry_job(State(state): State<AppState>, Path(raw): Path<String>) -> Response {
    let Some(id) = parse_id(&raw) else {
        return not_found().await;
    };
    match state
        .owner
        .console
        .retry_dead_job(id, state.owner.clock.now())
        .await
    {
        Ok(change) => {
            if change == JobChange::Changed {
                tracing::info!(job = id, "console: the owner retried a dead job");
                // The runner picks it up on its next poll.
            }
            after_job_change(change, "retried")
        }
        Err(e) => internal(e),
    }
}

pub(super) async fn cancel_job(State(state): State<AppState>, Path(raw): Path<String>) -> Response {
    let Some(id) = parse_id(&raw) else {
        return not_found().await;
    };
    match state
        .owner
        .console
        .cancel_pending_job(id, state.owner.clock.now())
        .await
    {
        Ok(change) => {
            if change == JobChange::Changed {
                tracing::info!(job = id, "console: the owner cancelled a job");
            }
            after_job_change(change, "cancelled")
        }
        Err(e) => internal(e),
    }
}
