//! The guardrail: every fact a text states must be one our code produced for
//! this conversation.
//!
//! [`check`] reads the whole reply as the customer will read it (see
//! [`prepare`]) against [`Facts`], built in one place ([`Facts::of`]) from the
//! conversation's state after the turn's tool calls:
//! - **amounts** in digits, words ("three hundred fifty dollars"), other
//!   scripts (`＄１９９`) or split across texts: a figure presented as the
//!   price must be the current quote's total; any other figure must be one
//!   the current quote states (a line, a unit price); a percentage must be a
//!   discount or surcharge the owner configured, in its role;
//! - **dates, weekdays and times**: those of the openings offered, of the
//!   booking (or the one cancelled or moved this turn), or the quote's
//!   "valid until" date; a weekday must match the date it names;
//! - **state claims** ("you're booked", "cancelled", "moved"): true of the
//!   state after the turn;
//! - **commitments** (waived fees, free extras, guarantees, arrival within
//!   minutes, a call-back at a time): never, unless the owner allowed the
//!   phrase in `[guardrail]`; the owner can add phrases of their own.
//!
//! Text the owner wrote (the business name, the greeting) is not checked:
//! it is the owner's own statement, not the model's.

mod amounts;
mod claims;
mod dates;
mod tokens;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::availability::ScheduleConfig;
use super::conversation::{Booking, ConversationState};
use super::money::amounts_in_text;
use super::quote::PricingConfig;
use super::quote::{DiscountKind, ModifierKind, Quote};
pub use claims::Pattern;
pub use tokens::prepare;

/// What kind of fact a text got wrong; also the owner alert's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// A figure presented as the price that is not the current total.
    Price,
    /// An amount the current quote does not state.
    Amount,
    /// A percentage the owner did not configure, or not in its role.
    Percent,
    /// A date (or "tomorrow") that is not an offered opening or the booking.
    Date,
    /// A weekday that does not fall on the date it names.
    Weekday,
    /// A time of day that is not one of the openings'.
    Time,
    /// "Booked", "cancelled", "moved" when the state says otherwise.
    StateClaim,
    /// A promise nobody configured.
    Commitment,
}

impl ViolationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::Price => "price",
            ViolationKind::Amount => "amount",
            ViolationKind::Percent => "percentage",
            ViolationKind::Date => "date",
            ViolationKind::Weekday => "weekday",
            ViolationKind::Time => "time",
            ViolationKind::StateClaim => "state claim",
            ViolationKind::Commitment => "commitment",
        }
    }
}

/// One fact the text states that our code did not produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The offending words, as the customer reads them.
    pub phrase: String,
    /// Why, in words the model and the owner can act on.
    pub reason: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} \"{}\": {}", self.kind.as_str(), self.phrase, self.reason)
    }
}

/// The violations as one line for an alert or the model.
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `[guardrail]` in business.toml: the promises the owner does make, and
/// phrases the owner never wants sent. In both lists `#` stands for any
/// number ("within # minutes").
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RawGuardrailConfig")]
pub struct GuardrailConfig {
    /// A built-in commitment inside one of these phrases is allowed:
    /// `["free estimates", "satisfaction guaranteed"]`.
    pub allowed_commitments: Vec<String>,
    /// Refused in any reply, on top of the built-in list.
    pub forbidden_phrases: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawGuardrailConfig {
    allowed_commitments: Vec<String>,
    forbidden_phrases: Vec<String>,
}

impl TryFrom<RawGuardrailConfig> for GuardrailConfig {
    type Error = String;

    fn try_from(raw: RawGuardrailConfig) -> Result<Self, String> {
        fn clean(key: &str, phrases: Vec<String>) -> Result<Vec<String>, String> {
            let mut out: Vec<String> = Vec::with_capacity(phrases.len());
            for phrase in phrases {
                let trimmed = phrase.trim();
                if !trimmed.chars().any(char::is_alphabetic) {
                    return Err(format!(
                        "{key}: \"{phrase}\" has no words; write the phrase as a customer would read it, \
                         like \"free estimates\""
                    ));
                }
                if trimmed.chars().count() > 80 {
                    return Err(format!("{key}: \"{trimmed}\" is longer than 80 characters"));
                }
                if out.iter().any(|p| p.eq_ignore_ascii_case(trimmed)) {
                    return Err(format!("{key}: \"{trimmed}\" is listed twice"));
                }
                out.push(trimmed.to_string());
            }
            Ok(out)
        }
        let allowed = clean("allowed_commitments", raw.allowed_commitments)?;
        let forbidden = clean("forbidden_phrases", raw.forbidden_phrases)?;
        if let Some(both) = allowed
            .iter()
            .find(|a| forbidden.iter().any(|f| f.eq_ignore_ascii_case(a)))
        {
            return Err(format!(
                "\"{both}\" is both an allowed commitment and a forbidden phrase; keep it in one list"
            ));
        }
        Ok(GuardrailConfig {
            allowed_commitments: allowed,
            forbidden_phrases: forbidden,
        })
    }
}

/// An opening the text may name: its local date and times of day.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownOpening {
    pub date: NaiveDate,
    pub times: Vec<NaiveTime>,
}

/// Which state claims are true after this turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrueClaims {
    /// A booking stands ("you're booked", "confirmed", "all set").
    pub booked: bool,
    /// The booking is cancelled ("cancelled").
    pub cancelled: bool,
    /// The booking moved this turn ("moved", "rescheduled").
    pub moved: bool,
}

/// Everything a reply may state, from the conversation after this turn.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The state after the turn, for reasons.
    pub state: &'static str,
    /// The current quote's total: the only figure that may be "the price".
    pub total: Option<Decimal>,
    /// Other figures the current quote states (lines, unit prices).
    pub line_amounts: Vec<Decimal>,
    /// Words of the current quote's line labels ("delivery").
    pub line_words: Vec<String>,
    /// Totals of openings on offer that carry their own price (a weekend
    /// rate): each may be stated, as the price of that opening.
    pub opening_totals: Vec<Decimal>,
    pub openings: Vec<KnownOpening>,
    /// Dates that are facts without an opening: the quote's "valid until",
    /// the owner's closed dates and dates in the owner's `current_info`.
    pub other_dates: Vec<NaiveDate>,
    pub claims: TrueClaims,
    pub discount_percents: Vec<Decimal>,
    pub surcharge_percents: Vec<Decimal>,
    pub allowed_commitments: Vec<Pattern>,
    pub forbidden_phrases: Vec<Pattern>,
    /// Words a reply may quote verbatim, prepared: not checked. The owner's
    /// (business name, greeting) and the customer's own (their name and
    /// address): "Thanks, Tuesday Weld!" states no weekday.
    pub verbatim: Vec<String>,
    /// The business's local date now, for "tomorrow" and dates without a year.
    pub today: NaiveDate,
}

fn booking_of(state: &ConversationState) -> Option<&Booking> {
    state.standing_booking()
}

/// What the owner configured that bears on what a reply may say: the
/// guardrail's view of the business, handed in so the domain does not read
/// the configuration (`BusinessConfig::guardrail_terms` builds it).
#[derive(Debug, Clone)]
pub struct OwnerTerms<'a> {
    pub name: &'a str,
    pub greeting: String,
    pub timezone: chrono_tz::Tz,
    pub pricing: &'a PricingConfig,
    pub schedule: &'a ScheduleConfig,
    /// The owner's own words to the model (current info, extra rules): a
    /// date the owner wrote there may be repeated.
    pub owner_said: Vec<&'a str>,
    pub rules: &'a GuardrailConfig,
}

impl Facts {
    /// The facts of a turn that started in `before` and ends in `after`;
    /// `quotes` are all of the conversation's quotes, this turn's included.
    pub fn of<'a>(
        business: &OwnerTerms<'_>,
        before: &ConversationState,
        after: &ConversationState,
        quotes: impl IntoIterator<Item = &'a Quote>,
        now: DateTime<Utc>,
    ) -> Facts {
        let tz = business.timezone;
        // In a state without a quote of its own, the latest quote is what
        // the customer was last told; in INTAKE the job changed (or was never
        // priced) and no figure is current.
        let latest = quotes.into_iter().max_by_key(|q| q.created_at);
        let current = match after {
            ConversationState::Intake(_) => None,
            ConversationState::Quoted(_)
            | ConversationState::Scheduling(_)
            | ConversationState::Booked(_)
            | ConversationState::OptedOut(_) => after.quote(),
            ConversationState::HandedOff(_)
            | ConversationState::Cancelled(_)
            | ConversationState::Closed(_) => latest,
        };
        let mut line_amounts = Vec::new();
        let mut other_dates = Vec::new();
        if let Some(q) = current {
            line_amounts.extend(q.stated_amounts().map(|m| m.amount()));
            // Figures written into the quote's own wording ("2 x $25",
            // "Minimum charge is $150") are the quote's too.
            for text in q
                .lines
                .iter()
                .map(|l| l.label.as_str())
                .chain(q.assumptions.iter().map(String::as_str))
            {
                line_amounts.extend(amounts_in_text(text));
            }
            other_dates.push(q.expires_at.with_timezone(&tz).date_naive());
        }

        let mut openings = Vec::new();
        let mut add_slot = |slot: &super::conversation::OfferedSlot| {
            let start = slot.start.with_timezone(&tz);
            let mut times = vec![start.time()];
            times.extend(dates::times_in_label(&slot.label));
            openings.push(KnownOpening {
                date: start.date_naive(),
                times,
            });
        };
        let mut opening_totals = Vec::new();
        if let ConversationState::Scheduling(s) = after {
            s.offered.iter().for_each(&mut add_slot);
            opening_totals.extend(
                s.offered
                    .iter()
                    .filter_map(|o| o.quote.as_ref())
                    .map(|q| q.total.amount()),
            );
        }
        let booked_after = booking_of(after);
        let booked_before = booking_of(before);
        for booking in booked_after.into_iter().chain(booked_before) {
            add_slot(&booking.slot);
        }

        let moved = match (booked_before, after) {
            (Some(old), ConversationState::Booked(b)) => old.slot != b.booking.slot,
            _ => false,
        };
        let claims = TrueClaims {
            booked: booked_after.is_some(),
            cancelled: matches!(after, ConversationState::Cancelled(_)),
            moved,
        };

        let pricing = business.pricing;
        let discount_percents = pricing
            .discounts
            .iter()
            .filter_map(|d| match d.kind {
                DiscountKind::Percent { percent } => Some(percent),
                DiscountKind::Amount { .. } => None,
            })
            .collect();
        let surcharge_percents = pricing
            .modifiers
            .iter()
            .filter_map(|m| match m.kind {
                ModifierKind::Percent { percent } => Some(percent),
                _ => None,
            })
            .collect();
        let today = now.with_timezone(&tz).date_naive();
        other_dates.extend(business.schedule.closed_dates.iter().copied());
        for owner_said in &business.owner_said {
            other_dates.extend(dates::dates_in(owner_said, today));
        }
        let guardrail = business.rules;
        let mut verbatim = vec![prepare(business.name)];
        verbatim.push(prepare(&business.greeting));
        for job in [after.job(), before.job()].into_iter().flatten() {
            verbatim.extend(job.customer_name.iter().chain(&job.address).map(|t| prepare(t)));
        }
        verbatim.retain(|t| !t.trim().is_empty());
        Facts {
            state: after.name(),
            total: current.map(|q| q.total.amount()),
            line_amounts,
            line_words: current.map(amounts::line_words).unwrap_or_default(),
            opening_totals,
            openings,
            other_dates,
            claims,
            discount_percents,
            surcharge_percents,
            allowed_commitments: guardrail
                .allowed_commitments
                .iter()
                .map(|p| Pattern::new(p))
                .collect(),
            forbidden_phrases: guardrail
                .forbidden_phrases
                .iter()
                .map(|p| Pattern::new(p))
                .collect(),
            verbatim,
            today,
        }
    }
}

/// Every fact `text` states that `facts` do not support. Reads the text
/// whole, as the customer will read it: check the reply before it is split
/// into texts, and again as it will be sent.
pub fn check(text: &str, facts: &Facts) -> Vec<Violation> {
    let mut prepared = prepare(text);
    blank_verbatim(&mut prepared, &facts.verbatim);
    let tokens = tokens::tokenize(&prepared);
    let mut violations = Vec::new();
    amounts::check(&prepared, &tokens, facts, &mut violations);
    dates::check(&prepared, &tokens, facts, &mut violations);
    claims::check(&prepared, &tokens, facts, &mut violations);
    // "8-10am" is two times in one phrase: report it once.
    let mut seen = Vec::with_capacity(violations.len());
    violations.retain(|v| {
        let key = (v.kind, v.phrase.clone());
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
    violations
}

/// Replaces words quoted verbatim with spaces, so they are not read as
/// claims: a business called "Free Haul", a greeting with its hours, a
/// customer called Eve Sunday.
fn blank_verbatim(prepared: &mut String, verbatim: &[String]) {
    for owner in verbatim {
        while let Some(at) = prepared.find(owner.as_str()) {
            let blank = " ".repeat(owner.len());
            prepared.replace_range(at..at + owner.len(), &blank);
        }
    }
}

/// The words around a span, for a violation's phrase.
fn excerpt(prepared: &str, start: usize, end: usize) -> String {
    let from = prepared[..start]
        .char_indices()
        .rev()
        .filter(|&(_, c)| c.is_whitespace())
        .nth(2)
        .map_or(0, |(i, _)| i + 1);
    let to = prepared[end..]
        .char_indices()
        .filter(|&(_, c)| c.is_whitespace())
        .nth(1)
        .map_or(prepared.len(), |(i, _)| end + i);
    prepared[from..to]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
