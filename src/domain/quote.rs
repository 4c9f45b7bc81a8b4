//! The quote engine: a job description and the owner's pricing in, an
//! itemized price out. Pure and exact (rust_decimal; no floats touch money).
//!
//! Hours and crew never come from the model. They come from the owner's
//! tables: job-size tiers and per-item labour for junk removal; bedrooms,
//! bathrooms, square feet and clean type for maid services. Only `textdesk
//! quote` (the owner, checking the formula) may state hours and crew directly.
//!
//! # The order in which a price is built
//!
//! 1. **Base**: the delivery (trip) fee plus labour = hours × crew × hourly
//!    rate per person (junk); labour from the home's size, or a matching
//!    flat rate (maid).
//! 2. **Flat** modifiers (e.g. heavy item), each added once.
//! 3. **Per-unit and per-item** modifiers (stairs per flight, mattress
//!    disposal per item): amount × quantity.
//!    Steps 1–3 make the *subtotal*.
//! 4. **Percentage surcharges** (same-day, weekend), each a percentage of
//!    the subtotal. They add up; they do not compound.
//! 5. **Discounts**: percentages of (subtotal + surcharges), then fixed
//!    amounts. The price never goes below zero. A discount limited to some
//!    services (`services`, a maid service's clean types) is given only to
//!    a job of one of them.
//! 6. **Rounding** to the owner's rule (cent, dollar, five dollars).
//! 7. **Minimum charge**: the total is raised to it if below. Last, so the
//!    minimum is exact whatever the rounding.
//!
//! Every step that changes the price is a line of the breakdown.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::availability::ScheduleConfig;
use super::money::Money;

// ---------------------------------------------------------------------------
// The owner's pricing, from business.toml [pricing].

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// Days a quote stays valid.
    pub quote_valid_days: u32,
    pub minimum_charge: Money,
    pub rounding: Rounding,
    /// Said with every quote, e.g. "Final price confirmed on site."
    pub disclaimer: String,
    pub junk: JunkPricing,
    pub maid: MaidPricing,
    pub modifiers: Vec<ModifierDef>,
    pub discounts: Vec<DiscountDef>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    #[default]
    Cent,
    Dollar,
    FiveDollars,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JunkPricing {
    pub delivery_fee: Money,
    pub hourly_rate_per_person: Money,
    /// Labour is billed in steps of this many hours, rounded up.
    pub billing_increment_hours: Decimal,
    pub minimum_hours: Decimal,
    /// Crew when only items are named and none needs more.
    pub default_crew: u32,
    pub tiers: Vec<SizeTier>,
    pub items: Vec<ItemLabour>,
}

/// A job size the customer can recognize: "about half a truck".
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SizeTier {
    pub id: String,
    pub label: String,
    pub hours: Decimal,
    pub crew: u32,
}

/// Labour for one item, added to the job: "a piano takes 3 people 1 hour".
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ItemLabour {
    pub id: String,
    pub label: String,
    pub hours: Decimal,
    /// The smallest crew that can move it.
    #[serde(default)]
    pub crew: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MaidPricing {
    pub hourly_rate_per_person: Money,
    pub trip_fee: Money,
    pub crew: u32,
    pub billing_increment_hours: Decimal,
    /// Person-hours for any visit, before rooms.
    pub base_hours: Decimal,
    pub hours_per_bedroom: Decimal,
    pub hours_per_bathroom: Decimal,
    pub hours_per_1000_sqft: Decimal,
    pub clean_types: Vec<CleanType>,
    pub flat_rates: Vec<FlatRate>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CleanType {
    pub id: String,
    pub label: String,
    /// Scales the person-hours: a deep clean takes longer.
    pub multiplier: Decimal,
}

/// A fixed price for a home of this shape, instead of hourly labour.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlatRate {
    pub bedrooms: u32,
    pub bathrooms: Decimal,
    pub clean_type: String,
    pub price: Money,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(try_from = "RawPriceRule")]
pub struct ModifierDef {
    pub id: String,
    pub label: String,
    pub kind: ModifierKind,
    /// A surcharge that follows from the opening chosen (weekend, same day,
    /// after hours) rather than from the job: never asked as an extra,
    /// applied when the opening is known.
    pub applies: Option<DateRule>,
}

/// When a date-dependent modifier applies, judged on the chosen opening in
/// the business's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DateRule {
    /// The opening starts on a Saturday or Sunday.
    Weekend,
    /// The opening starts on the day the customer books it.
    SameDay,
    /// The opening starts at or after `[schedule] after_hours_from`.
    AfterHours,
}

impl ModifierDef {
    /// Whether this modifier is priced from the opening, not asked about.
    pub fn depends_on_date(&self) -> bool {
        self.applies.is_some()
    }
}

/// When a job would be done, as the business's clock and calendar read it:
/// what date-dependent modifiers are judged on. Built by the caller from the
/// chosen opening, so pricing stays pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpeningTime {
    /// The opening's start (the start of its arrival window), local time.
    pub local_start: NaiveDateTime,
    /// Today in the business's zone, when the customer is choosing.
    pub today: NaiveDate,
    /// `[schedule] after_hours_from`: openings starting at or after this
    /// time of day are after hours. `None`: nothing is.
    pub after_hours_from: Option<NaiveTime>,
}

impl DateRule {
    pub fn holds(self, at: &OpeningTime) -> bool {
        match self {
            DateRule::Weekend => matches!(at.local_start.weekday(), Weekday::Sat | Weekday::Sun),
            DateRule::SameDay => at.local_start.date() == at.today,
            DateRule::AfterHours => at
                .after_hours_from
                .is_some_and(|from| at.local_start.time() >= from),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModifierKind {
    /// Added once: "heavy item".
    Flat { amount: Money },
    /// Amount × quantity of a unit: "per flight of stairs".
    PerUnit { amount: Money, unit: String },
    /// Amount × number of items: "mattress disposal".
    PerItem { amount: Money },
    /// A percentage of the subtotal: "same-day", "weekend".
    Percent { percent: Decimal },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(try_from = "RawPriceRule")]
pub struct DiscountDef {
    pub id: String,
    pub label: String,
    pub kind: DiscountKind,
    /// A yes-or-no question that decides this discount ("Is this your first
    /// clean with us?"), asked by the guided flow.
    pub question: Option<String>,
    /// The services (a maid service's clean type ids) the discount is for;
    /// empty: every job. A job of another service is never asked about it
    /// and never gets it.
    pub services: Vec<String>,
}

impl DiscountDef {
    /// Whether the discount is for a job of this service (`None`: a job
    /// with no service, such as a junk removal).
    pub fn applies_to(&self, service: Option<&str>) -> bool {
        self.services.is_empty() || service.is_some_and(|s| self.services.iter().any(|x| x == s))
    }

    /// Its label, and the services it is for when it is limited to some:
    /// "New-customer deep clean, for a deep clean only".
    pub fn described(&self, pricing: &PricingConfig) -> String {
        if self.services.is_empty() {
            return self.label.clone();
        }
        let names: Vec<&str> = self
            .services
            .iter()
            .map(|id| {
                pricing
                    .maid
                    .clean_types
                    .iter()
                    .find(|c| &c.id == id)
                    .map_or(id.as_str(), |c| c.label.as_str())
            })
            .collect();
        format!("{}, for a {} only", self.label, names.join(" or "))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DiscountKind {
    Percent { percent: Decimal },
    Amount { amount: Money },
}

/// A modifier or discount as written in business.toml. serde cannot both
/// flatten a tagged enum and refuse unknown keys, so the file is read into
/// this strict shape and then checked for the fields its `kind` needs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriceRule {
    id: String,
    label: String,
    kind: String,
    amount: Option<Money>,
    percent: Option<Decimal>,
    unit: Option<String>,
    applies: Option<DateRule>,
    question: Option<String>,
    services: Option<Vec<String>>,
}

impl RawPriceRule {
    fn amount(&self) -> Result<Money, String> {
        match (self.amount, &self.percent) {
            (Some(a), None) => Ok(a),
            (None, _) => Err(format!("`{}`: kind `{}` needs `amount`", self.id, self.kind)),
            (Some(_), Some(_)) => Err(format!("`{}`: give `amount` or `percent`, not both", self.id)),
        }
    }

    fn percent(&self) -> Result<Decimal, String> {
        match (self.percent, &self.amount) {
            (Some(p), None) => Ok(p),
            (None, _) => Err(format!("`{}`: kind `percent` needs `percent`", self.id)),
            (Some(_), Some(_)) => Err(format!("`{}`: give `amount` or `percent`, not both", self.id)),
        }
    }
}

impl TryFrom<RawPriceRule> for ModifierDef {
    type Error = String;
    fn try_from(raw: RawPriceRule) -> Result<Self, String> {
        if raw.unit.is_some() && raw.kind != "per_unit" {
            return Err(format!("`{}`: `unit` only applies to kind `per_unit`", raw.id));
        }
        if raw.question.is_some() {
            return Err(format!("`{}`: `question` belongs to discounts", raw.id));
        }
        if raw.services.is_some() {
            return Err(format!("`{}`: `services` belongs to discounts", raw.id));
        }
        let kind = match raw.kind.as_str() {
            "flat" => ModifierKind::Flat {
                amount: raw.amount()?,
            },
            "per_unit" => ModifierKind::PerUnit {
                amount: raw.amount()?,
                unit: raw.unit.clone().unwrap_or_else(|| "unit(s)".into()),
            },
            "per_item" => ModifierKind::PerItem {
                amount: raw.amount()?,
            },
            "percent" => ModifierKind::Percent {
                percent: raw.percent()?,
            },
            other => {
                return Err(format!(
                    "`{}`: unknown kind `{other}`, expected one of `flat`, `per_unit`, `per_item`, `percent`",
                    raw.id
                ));
            }
        };
        Ok(ModifierDef {
            id: raw.id,
            label: raw.label,
            kind,
            applies: raw.applies,
        })
    }
}

impl TryFrom<RawPriceRule> for DiscountDef {
    type Error = String;
    fn try_from(raw: RawPriceRule) -> Result<Self, String> {
        if raw.unit.is_some() {
            return Err(format!("`{}`: discounts take no `unit`", raw.id));
        }
        if raw.applies.is_some() {
            return Err(format!("`{}`: `applies` belongs to modifiers", raw.id));
        }
        let kind = match raw.kind.as_str() {
            "percent" => DiscountKind::Percent {
                percent: raw.percent()?,
            },
            "amount" => DiscountKind::Amount {
                amount: raw.amount()?,
            },
            other => {
                return Err(format!(
                    "`{}`: unknown kind `{other}`, expected `percent` or `amount`",
                    raw.id
                ));
            }
        };
        Ok(DiscountDef {
            id: raw.id,
            label: raw.label,
            kind,
            question: raw.question,
            services: raw.services.unwrap_or_default(),
        })
    }
}

fn dec(s: &str) -> Decimal {
    s.parse().expect("literal decimal")
}

impl Default for PricingConfig {
    fn default() -> Self {
        Self {
            quote_valid_days: 7,
            minimum_charge: Money::ZERO,
            rounding: Rounding::Cent,
            disclaimer: "Final price confirmed on site.".into(),
            junk: JunkPricing::default(),
            maid: MaidPricing::default(),
            modifiers: Vec::new(),
            discounts: Vec::new(),
        }
    }
}

impl Default for JunkPricing {
    /// The business's formula: $150 delivery plus $50 per hour per person.
    fn default() -> Self {
        let tier = |id: &str, label: &str, hours: &str, crew| SizeTier {
            id: id.into(),
            label: label.into(),
            hours: dec(hours),
            crew,
        };
        Self {
            delivery_fee: Money::dollars(150),
            hourly_rate_per_person: Money::dollars(50),
            billing_increment_hours: dec("0.5"),
            minimum_hours: dec("1"),
            default_crew: 2,
            tiers: vec![
                tier("few_items", "a few items", "1", 2),
                tier("quarter_truck", "about a quarter truck", "1.5", 2),
                tier("half_truck", "about half a truck", "2", 2),
                tier("full_truck", "a full truck or more", "3", 3),
            ],
            items: Vec::new(),
        }
    }
}

impl Default for MaidPricing {
    fn default() -> Self {
        let clean = |id: &str, label: &str, m: &str| CleanType {
            id: id.into(),
            label: label.into(),
            multiplier: dec(m),
        };
        Self {
            hourly_rate_per_person: Money::dollars(40),
            trip_fee: Money::ZERO,
            crew: 2,
            billing_increment_hours: dec("0.5"),
            base_hours: dec("1"),
            hours_per_bedroom: dec("0.75"),
            hours_per_bathroom: dec("0.75"),
            hours_per_1000_sqft: dec("0.5"),
            clean_types: vec![
                clean("standard", "standard clean", "1"),
                clean("deep", "deep clean", "1.5"),
                clean("move_out", "move-out clean", "1.75"),
            ],
            flat_rates: Vec::new(),
        }
    }
}

impl PricingConfig {
    /// Checks what serde cannot: ids unique, referenced ids known, and every
    /// amount, percentage, number of hours and crew size within a range
    /// stated in its message, so that no accepted catalog can price below
    /// zero or overflow a quote's arithmetic or its expiry date.
    pub fn validate(&self) -> Result<(), CatalogError> {
        fn unique<'a>(key: &'static str, ids: impl Iterator<Item = &'a str>) -> Result<(), CatalogError> {
            let mut seen = std::collections::HashSet::new();
            for id in ids {
                if !seen.insert(id) {
                    return Err(CatalogError {
                        key,
                        id: Some(id.to_string()),
                        message: format!("id `{id}` is used twice"),
                    });
                }
            }
            Ok(())
        }
        let fail = |key: &'static str, id: &str, message: String| {
            Err(CatalogError {
                key,
                id: Some(id.to_string()),
                message,
            })
        };
        unique(
            "pricing.junk.tiers",
            self.junk.tiers.iter().map(|t| t.id.as_str()),
        )?;
        unique(
            "pricing.junk.items",
            self.junk.items.iter().map(|t| t.id.as_str()),
        )?;
        unique("pricing.modifiers", self.modifiers.iter().map(|t| t.id.as_str()))?;
        unique("pricing.discounts", self.discounts.iter().map(|t| t.id.as_str()))?;
        unique(
            "pricing.maid.clean_types",
            self.maid.clean_types.iter().map(|t| t.id.as_str()),
        )?;
        for d in &self.discounts {
            if let Some(unknown) = d
                .services
                .iter()
                .find(|s| !self.maid.clean_types.iter().any(|c| &c.id == *s))
            {
                let known: Vec<&str> = self.maid.clean_types.iter().map(|c| c.id.as_str()).collect();
                return fail(
                    "pricing.discounts",
                    &d.id,
                    format!(
                        "`{}`: `services` names unknown service `{unknown}`; the services are the clean types: {}",
                        d.id,
                        known.join(", ")
                    ),
                );
            }
        }
        for rate in &self.maid.flat_rates {
            if !self.maid.clean_types.iter().any(|c| c.id == rate.clean_type) {
                return fail(
                    "pricing.maid.flat_rates",
                    &rate.clean_type,
                    format!("names unknown clean type `{}`", rate.clean_type),
                );
            }
        }
        // Bounds: nothing below zero (a negative rate once quoted "-$200"
        // of labour), nothing so large that a quote's arithmetic or its
        // expiry date could overflow. Each message states the range.
        let max_money = Money::dollars(MAX_CONFIG_DOLLARS);
        let out_of_range = |key: &'static str, id: Option<&str>, expected: String| {
            Err(CatalogError {
                key,
                id: id.map(str::to_string),
                message: match id {
                    Some(id) => format!("`{id}`: {expected}"),
                    None => expected,
                },
            })
        };
        let money = |key: &'static str, id: Option<&str>, value: Money| {
            if value.is_negative() || value > max_money {
                return out_of_range(
                    key,
                    id,
                    format!("expected an amount from $0 to {max_money}, got {value}"),
                );
            }
            Ok(())
        };
        let number =
            |key: &'static str, id: Option<&str>, value: Decimal, above_zero: bool, max: i64, what: &str| {
                let low_ok = if above_zero {
                    value > Decimal::ZERO
                } else {
                    !value.is_sign_negative() || value.is_zero()
                };
                if !low_ok || value > Decimal::from(max) {
                    let from = if above_zero { "above 0" } else { "from 0" };
                    return out_of_range(
                        key,
                        id,
                        format!("expected {what} {from} up to {max}, got {}", value.normalize()),
                    );
                }
                Ok(())
            };
        let whole = |key: &'static str, id: Option<&str>, value: u32, min: u32, max: u32, what: &str| {
            if !(min..=max).contains(&value) {
                return out_of_range(
                    key,
                    id,
                    format!("expected {what} from {min} to {max}, got {value}"),
                );
            }
            Ok(())
        };
        let percent = |key: &'static str, id: &str, value: Decimal| {
            number(key, Some(id), value, false, 100, "a percentage")
        };
        let hours = "a number of hours";
        let crew = "a crew size";
        let max_crew = MAX_CREW as u32;
        whole(
            "pricing.quote_valid_days",
            None,
            self.quote_valid_days,
            1,
            365,
            "a number of days",
        )?;
        money("pricing.minimum_charge", None, self.minimum_charge)?;
        let junk = &self.junk;
        money("pricing.junk.delivery_fee", None, junk.delivery_fee)?;
        money(
            "pricing.junk.hourly_rate_per_person",
            None,
            junk.hourly_rate_per_person,
        )?;
        number(
            "pricing.junk.billing_increment_hours",
            None,
            junk.billing_increment_hours,
            true,
            MAX_JOB_HOURS,
            hours,
        )?;
        number(
            "pricing.junk.minimum_hours",
            None,
            junk.minimum_hours,
            false,
            MAX_JOB_HOURS,
            hours,
        )?;
        whole(
            "pricing.junk.default_crew",
            None,
            junk.default_crew,
            1,
            max_crew,
            crew,
        )?;
        for tier in &junk.tiers {
            let id = Some(tier.id.as_str());
            number("pricing.junk.tiers", id, tier.hours, true, MAX_JOB_HOURS, hours)?;
            whole("pricing.junk.tiers", id, tier.crew, 1, max_crew, crew)?;
        }
        for item in &junk.items {
            let id = Some(item.id.as_str());
            number("pricing.junk.items", id, item.hours, false, MAX_JOB_HOURS, hours)?;
            if let Some(c) = item.crew {
                whole("pricing.junk.items", id, c, 1, max_crew, crew)?;
            }
        }
        let maid = &self.maid;
        money(
            "pricing.maid.hourly_rate_per_person",
            None,
            maid.hourly_rate_per_person,
        )?;
        money("pricing.maid.trip_fee", None, maid.trip_fee)?;
        whole("pricing.maid.crew", None, maid.crew, 1, max_crew, crew)?;
        for (key, value, above_zero) in [
            (
                "pricing.maid.billing_increment_hours",
                maid.billing_increment_hours,
                true,
            ),
            // Above zero, so every visit takes time and is scheduled as such.
            ("pricing.maid.base_hours", maid.base_hours, true),
            ("pricing.maid.hours_per_bedroom", maid.hours_per_bedroom, false),
            ("pricing.maid.hours_per_bathroom", maid.hours_per_bathroom, false),
            (
                "pricing.maid.hours_per_1000_sqft",
                maid.hours_per_1000_sqft,
                false,
            ),
        ] {
            number(key, None, value, above_zero, MAX_JOB_HOURS, hours)?;
        }
        for clean in &maid.clean_types {
            number(
                "pricing.maid.clean_types",
                Some(&clean.id),
                clean.multiplier,
                true,
                10,
                "a multiplier",
            )?;
        }
        for rate in &maid.flat_rates {
            let id = Some(rate.clean_type.as_str());
            money("pricing.maid.flat_rates", id, rate.price)?;
            whole(
                "pricing.maid.flat_rates",
                id,
                rate.bedrooms,
                0,
                MAX_ROOMS,
                "a number of bedrooms",
            )?;
            number(
                "pricing.maid.flat_rates",
                id,
                rate.bathrooms,
                false,
                i64::from(MAX_ROOMS),
                "a number of bathrooms",
            )?;
        }
        for m in &self.modifiers {
            let id = Some(m.id.as_str());
            match &m.kind {
                ModifierKind::Flat { amount }
                | ModifierKind::PerUnit { amount, .. }
                | ModifierKind::PerItem { amount } => {
                    money("pricing.modifiers", id, *amount).map_err(|mut e| {
                        if amount.is_negative() {
                            e.message
                                .push_str("; modifiers add to the price, [[pricing.discounts]] take away");
                        }
                        e
                    })?
                }
                ModifierKind::Percent { percent: p } => percent("pricing.modifiers", &m.id, *p)?,
            }
        }
        for d in &self.discounts {
            match &d.kind {
                DiscountKind::Percent { percent: p } => percent("pricing.discounts", &d.id, *p)?,
                DiscountKind::Amount { amount } => money("pricing.discounts", Some(&d.id), *amount)?,
            }
        }
        Ok(())
    }
}

/// The largest price, fee or minimum a catalog may state, in dollars.
const MAX_CONFIG_DOLLARS: i64 = 100_000;
/// The most hours a catalog may give a job, a tier or an increment.
const MAX_JOB_HOURS: i64 = 24;

/// A mistake in the owner's catalog that parsing alone cannot see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CatalogError {
    /// Where in business.toml, e.g. `pricing.modifiers`.
    pub key: &'static str,
    /// The offending id, to point at its line.
    pub id: Option<String>,
    pub message: String,
}

// ---------------------------------------------------------------------------
// What is being priced.

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Selected {
    pub id: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    Junk(JunkJob),
    Maid(MaidJob),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JunkJob {
    pub tier: Option<String>,
    pub items: Vec<Selected>,
    /// Owner-stated labour (`textdesk quote --hours --crew`); never the model's.
    pub labour: Option<Labour>,
    pub modifiers: Vec<Selected>,
    pub discounts: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MaidJob {
    pub bedrooms: u32,
    pub bathrooms: Decimal,
    pub square_feet: Option<u32>,
    pub clean_type: String,
    pub labour: Option<Labour>,
    pub modifiers: Vec<Selected>,
    pub discounts: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Labour {
    pub hours: Decimal,
    pub crew: i64,
}

// ---------------------------------------------------------------------------
// The result.

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuoteLine {
    pub label: String,
    pub amount: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quote {
    pub id: String,
    pub lines: Vec<QuoteLine>,
    pub total: Money,
    /// Hours on site, and the crew for them: what scheduling books.
    pub hours: Decimal,
    pub crew: u32,
    pub assumptions: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Unit prices the breakdown states (e.g. the hourly rate), which a
    /// reply may quote too.
    pub unit_prices: Vec<Money>,
    /// The job this prices, so the same job can be priced again for an
    /// opening (a weekend rate). Absent on quotes stored before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSpec>,
}

impl Quote {
    /// Every amount this quote states: the total, each line, unit prices.
    pub fn stated_amounts(&self) -> impl Iterator<Item = Money> + '_ {
        std::iter::once(self.total)
            .chain(self.lines.iter().map(|l| l.amount))
            .chain(self.lines.iter().map(|l| Money::new(l.amount.amount().abs())))
            .chain(self.unit_prices.iter().copied())
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// The breakdown as lines of text, for the model and the owner.
    pub fn breakdown(&self) -> String {
        let mut out: Vec<String> = self
            .lines
            .iter()
            .map(|l| format!("{}: {}", l.label, l.amount))
            .collect();
        out.push(format!("Total: {}", self.total));
        out.join("\n")
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QuoteError {
    #[error("unknown {what} `{id}`; known: {known}")]
    Unknown {
        what: &'static str,
        id: String,
        known: String,
    },
    #[error("hours must be more than zero")]
    NonPositiveHours,
    #[error("crew must be at least one person")]
    NonPositiveCrew,
    #[error("quantity of `{0}` must be at least 1")]
    ZeroQuantity(String),
    #[error("not enough to price: {0}")]
    Incomplete(&'static str),
    #[error("this business does not price {0} jobs")]
    WrongKind(&'static str),
    #[error("`{0}` is listed twice")]
    Repeated(String),
    #[error("{0} is larger than any real job")]
    TooLarge(&'static str),
}

/// Bounds on every number a job description carries, far above real jobs
/// and far below where decimal arithmetic could overflow.
const MAX_HOURS: i64 = 1_000;
const MAX_CREW: i64 = 100;
const MAX_QUANTITY: u32 = 1_000;
const MAX_ROOMS: u32 = 100;
const MAX_SQUARE_FEET: u32 = 1_000_000;

fn check_bounds(job: &JobSpec) -> Result<(), QuoteError> {
    let (labour, modifiers, discounts, items) = match job {
        JobSpec::Junk(j) => (j.labour, &j.modifiers, &j.discounts, Some(&j.items)),
        JobSpec::Maid(m) => {
            if m.bedrooms > MAX_ROOMS || m.bathrooms > Decimal::from(MAX_ROOMS) {
                return Err(QuoteError::TooLarge("the number of rooms"));
            }
            if m.square_feet.is_some_and(|s| s > MAX_SQUARE_FEET) {
                return Err(QuoteError::TooLarge("the square footage"));
            }
            (m.labour, &m.modifiers, &m.discounts, None)
        }
    };
    if let Some(l) = labour {
        if l.hours > Decimal::from(MAX_HOURS) {
            return Err(QuoteError::TooLarge("the number of hours"));
        }
        if l.crew > MAX_CREW {
            return Err(QuoteError::TooLarge("the crew"));
        }
    }
    for list in [Some(modifiers), items].into_iter().flatten() {
        let mut seen = std::collections::HashSet::new();
        for s in list {
            if s.quantity > MAX_QUANTITY {
                return Err(QuoteError::TooLarge("a quantity"));
            }
            if !seen.insert(&s.id) {
                return Err(QuoteError::Repeated(s.id.clone()));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for d in discounts {
        if !seen.insert(d) {
            return Err(QuoteError::Repeated(d.clone()));
        }
    }
    Ok(())
}

fn unknown<'a>(what: &'static str, id: &str, known: impl Iterator<Item = &'a str>) -> QuoteError {
    QuoteError::Unknown {
        what,
        id: id.to_string(),
        known: known.collect::<Vec<_>>().join(", "),
    }
}

fn round_up_to(value: Decimal, step: Decimal) -> Decimal {
    (value / step).ceil() * step
}

fn hours_text(hours: Decimal) -> String {
    let h = hours.normalize();
    if h == Decimal::ONE {
        "1 hour".into()
    } else {
        format!("{h} hours")
    }
}

/// "1 person", "3 people".
fn count(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Builds the quote. `id` and `now` come from the caller so this stays pure.
pub fn price(
    config: &PricingConfig,
    job: &JobSpec,
    id: String,
    now: DateTime<Utc>,
) -> Result<Quote, QuoteError> {
    check_bounds(job)?;
    let mut lines = Vec::new();
    let mut unit_prices = Vec::new();
    let mut assumptions = Vec::new();
    let (hours, crew, modifiers, discounts) = match job {
        JobSpec::Junk(job) => {
            let (hours, crew) = junk_labour(&config.junk, job, &mut assumptions)?;
            let rate = config.junk.hourly_rate_per_person;
            lines.push(QuoteLine {
                label: "Delivery".into(),
                amount: config.junk.delivery_fee,
            });
            lines.push(QuoteLine {
                label: format!(
                    "Labour: {} x {} at {rate}/hour each",
                    count(crew, "person", "people"),
                    hours_text(hours)
                ),
                amount: Money::new(rate.amount() * hours * Decimal::from(crew)),
            });
            unit_prices.push(rate);
            (hours, crew, &job.modifiers, &job.discounts)
        }
        JobSpec::Maid(job) => {
            let (hours, crew, flat) = maid_labour(&config.maid, job, &mut assumptions)?;
            if !config.maid.trip_fee.amount().is_zero() {
                lines.push(QuoteLine {
                    label: "Trip fee".into(),
                    amount: config.maid.trip_fee,
                });
            }
            match flat {
                Some((label, amount)) => lines.push(QuoteLine { label, amount }),
                None => {
                    let rate = config.maid.hourly_rate_per_person;
                    lines.push(QuoteLine {
                        label: format!(
                            "Cleaning: {} x {} at {rate}/hour each",
                            count(crew, "cleaner", "cleaners"),
                            hours_text(hours)
                        ),
                        amount: Money::new(rate.amount() * hours * Decimal::from(crew)),
                    });
                    unit_prices.push(rate);
                }
            }
            (hours, crew, &job.modifiers, &job.discounts)
        }
    };

    // Steps 2 and 3: flat, then per-unit and per-item.
    let mut percents = Vec::new();
    let mut flats = Vec::new();
    let mut counted = Vec::new();
    for selected in modifiers {
        let def = config
            .modifiers
            .iter()
            .find(|m| m.id == selected.id)
            .ok_or_else(|| {
                unknown(
                    "modifier",
                    &selected.id,
                    config.modifiers.iter().map(|m| m.id.as_str()),
                )
            })?;
        if selected.quantity == 0 {
            return Err(QuoteError::ZeroQuantity(selected.id.clone()));
        }
        let q = Decimal::from(selected.quantity);
        match &def.kind {
            ModifierKind::Flat { amount } => flats.push(QuoteLine {
                label: def.label.clone(),
                amount: *amount,
            }),
            ModifierKind::PerUnit { amount, unit } => {
                unit_prices.push(*amount);
                counted.push(QuoteLine {
                    label: format!("{}: {} {unit} x {amount}", def.label, selected.quantity),
                    amount: Money::new(amount.amount() * q),
                });
            }
            ModifierKind::PerItem { amount } => {
                unit_prices.push(*amount);
                counted.push(QuoteLine {
                    label: format!("{}: {} x {amount}", def.label, selected.quantity),
                    amount: Money::new(amount.amount() * q),
                });
            }
            ModifierKind::Percent { percent } => percents.push((def.label.clone(), *percent)),
        }
    }
    lines.extend(flats);
    lines.extend(counted);
    let subtotal: Money = lines.iter().map(|l| l.amount).sum();

    // Step 4: surcharges on the subtotal, additive.
    let mut running = subtotal;
    for (label, percent) in percents {
        let amount = Money::new(subtotal.amount() * percent / Decimal::ONE_HUNDRED);
        running = running + amount;
        lines.push(QuoteLine {
            label: format!("{label} ({}%)", percent.normalize()),
            amount,
        });
    }

    // Step 5: discounts, percentages first, never below zero; a discount
    // for other services than the job's is not given.
    let service = match job {
        JobSpec::Junk(_) => None,
        JobSpec::Maid(m) => Some(m.clean_type.as_str()),
    };
    let mut percent_discounts = Vec::new();
    let mut amount_discounts = Vec::new();
    for id in discounts {
        let def = config
            .discounts
            .iter()
            .find(|d| &d.id == id)
            .ok_or_else(|| unknown("discount", id, config.discounts.iter().map(|d| d.id.as_str())))?;
        if !def.applies_to(service) {
            continue;
        }
        match &def.kind {
            DiscountKind::Percent { percent } => percent_discounts.push((def.label.clone(), *percent)),
            DiscountKind::Amount { amount } => amount_discounts.push((def.label.clone(), *amount)),
        }
    }
    let before_discounts = running;
    for (label, percent) in percent_discounts {
        let amount = Money::new(before_discounts.amount() * percent / Decimal::ONE_HUNDRED).min(running);
        running = running - amount;
        lines.push(QuoteLine {
            label: format!("{label} ({}% off)", percent.normalize()),
            amount: -amount,
        });
    }
    for (label, amount) in amount_discounts {
        let amount = amount.min(running);
        running = running - amount;
        lines.push(QuoteLine {
            label,
            amount: -amount,
        });
    }

    // Step 6: rounding.
    let step = match config.rounding {
        Rounding::Cent => dec("0.01"),
        Rounding::Dollar => Decimal::ONE,
        Rounding::FiveDollars => Decimal::from(5),
    };
    let rounded = Money::new(
        (running.amount() / step).round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero) * step,
    );
    if rounded != running {
        lines.push(QuoteLine {
            label: "Rounding".into(),
            amount: rounded - running,
        });
        running = rounded;
    }

    // Step 7: the minimum charge.
    if running < config.minimum_charge {
        lines.push(QuoteLine {
            label: format!("Minimum charge is {}", config.minimum_charge),
            amount: config.minimum_charge - running,
        });
        unit_prices.push(config.minimum_charge);
        running = config.minimum_charge;
    }

    if !config.disclaimer.trim().is_empty() {
        assumptions.push(config.disclaimer.trim().to_string());
    }
    Ok(Quote {
        id,
        lines,
        total: running,
        hours,
        crew,
        assumptions,
        created_at: now,
        // Validation bounds the days; saturating keeps an unvalidated
        // catalog from panicking here.
        expires_at: now
            .checked_add_signed(Duration::days(i64::from(config.quote_valid_days)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
        unit_prices,
        job: Some(job.clone()),
    })
}

impl JobSpec {
    fn modifiers_mut(&mut self) -> &mut Vec<Selected> {
        match self {
            JobSpec::Junk(j) => &mut j.modifiers,
            JobSpec::Maid(m) => &mut m.modifiers,
        }
    }
}

/// The job with its date-dependent modifiers set by the opening: each one
/// whose rule holds is added once, and any other (chosen before a date was
/// known) is dropped. Other modifiers are kept as they are.
pub fn for_opening(config: &PricingConfig, job: &JobSpec, at: &OpeningTime) -> JobSpec {
    let mut job = job.clone();
    let modifiers = job.modifiers_mut();
    modifiers.retain(|s| {
        config
            .modifiers
            .iter()
            .find(|m| m.id == s.id)
            .is_none_or(|m| !m.depends_on_date())
    });
    modifiers.extend(
        config
            .modifiers
            .iter()
            .filter(|m| m.applies.is_some_and(|rule| rule.holds(at)))
            .map(|m| Selected {
                id: m.id.clone(),
                quantity: 1,
            }),
    );
    job
}

/// The labels of the date-dependent modifiers that apply at `at`, in
/// catalog order: how an offer names a different price ("weekend service").
pub fn date_surcharges<'a>(config: &'a PricingConfig, at: &OpeningTime) -> Vec<&'a str> {
    config
        .modifiers
        .iter()
        .filter(|m| m.applies.is_some_and(|rule| rule.holds(at)))
        .map(|m| m.label.as_str())
        .collect()
}

/// Date-dependent modifiers the schedule can never charge, each as a
/// sentence for `check-config`: a weekend surcharge while closed on
/// weekends, an after-hours one with no after-hours openings, a same-day
/// one when bookings need a day's notice. Warnings, not errors: the owner
/// may be about to change the hours.
pub fn date_surcharge_warnings(config: &PricingConfig, schedule: &ScheduleConfig) -> Vec<String> {
    use super::availability::DayHours;
    let open_days: Vec<(NaiveTime, NaiveTime)> = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ]
    .into_iter()
    .filter_map(|d| match schedule.hours.on(d) {
        DayHours::Open { open, close } => Some((open, close)),
        DayHours::Closed => None,
    })
    .collect();
    // A catalog written before `applies` existed asks its weekend rate as an
    // extra, before any date is known: say how to price it from the opening.
    let unmarked = config
        .modifiers
        .iter()
        .filter(|m| m.applies.is_none())
        .filter_map(|m| {
            let words = format!("{} {}", m.id, m.label)
                .to_lowercase()
                .replace(['_', '-'], " ");
            let rule = if words.contains("weekend") {
                "weekend"
            } else if words.contains("same day") {
                "same_day"
            } else if words.contains("after hours") || words.contains("evening") {
                "after_hours"
            } else {
                return None;
            };
            Some(format!(
                "`{}` ({}) reads like a date surcharge but has no `applies`: it is asked as an extra \
             before any date is known; add `applies = \"{rule}\"` to charge it from the opening chosen.",
                m.id, m.label
            ))
        });
    let unmarked: Vec<String> = unmarked.collect();
    config
        .modifiers
        .iter()
        .filter_map(|m| {
            let why = match m.applies? {
                DateRule::Weekend
                    if schedule.hours.on(Weekday::Sat) == DayHours::Closed
                        && schedule.hours.on(Weekday::Sun) == DayHours::Closed =>
                {
                    "applies on weekends, but [schedule.hours] is closed on Saturday and Sunday".to_string()
                }
                DateRule::AfterHours => match schedule.after_hours_from {
                    None => "applies after hours, but [schedule] sets no `after_hours_from`".to_string(),
                    Some(from) if open_days.iter().all(|(_, close)| *close <= from) => format!(
                        "applies from {} on, but every open day closes by then",
                        from.format("%H:%M")
                    ),
                    Some(_) => return None,
                },
                DateRule::SameDay if schedule.min_notice_hours >= 24 => format!(
                    "applies to same-day bookings, but [schedule] min_notice_hours = {} leaves none",
                    schedule.min_notice_hours
                ),
                _ => return None,
            };
            Some(format!("`{}` ({}) {why}: it is never charged.", m.id, m.label))
        })
        .chain(unmarked)
        .collect()
}

/// `quote` priced again for an opening: the same job, with the surcharges
/// that opening carries (weekend, same day, after hours). It keeps the
/// quote's validity, and its id is the quote's with the surcharges named,
/// so pricing the same opening twice gives the same quote. `None` when the
/// opening changes nothing, or the quote does not carry its job.
pub fn price_for_opening(
    config: &PricingConfig,
    quote: &Quote,
    at: &OpeningTime,
) -> Result<Option<Quote>, QuoteError> {
    let Some(job) = &quote.job else {
        return Ok(None);
    };
    let priced_job = for_opening(config, job, at);
    if &priced_job == job {
        return Ok(None);
    }
    let applied: Vec<&str> = config
        .modifiers
        .iter()
        .filter(|m| m.applies.is_some_and(|rule| rule.holds(at)))
        .map(|m| m.id.as_str())
        .collect();
    let id = if applied.is_empty() {
        format!("{}-plain", quote.id)
    } else {
        format!("{}-{}", quote.id, applied.join("-"))
    };
    let mut priced = price(config, &priced_job, id, quote.created_at)?;
    priced.expires_at = quote.expires_at;
    Ok(Some(priced))
}

fn check_labour(labour: Labour) -> Result<(Decimal, u32), QuoteError> {
    if labour.hours <= Decimal::ZERO {
        return Err(QuoteError::NonPositiveHours);
    }
    if labour.crew <= 0 {
        return Err(QuoteError::NonPositiveCrew);
    }
    let crew = u32::try_from(labour.crew).map_err(|_| QuoteError::NonPositiveCrew)?;
    Ok((labour.hours, crew))
}

fn junk_labour(
    p: &JunkPricing,
    job: &JunkJob,
    assumptions: &mut Vec<String>,
) -> Result<(Decimal, u32), QuoteError> {
    if let Some(labour) = job.labour {
        let (hours, crew) = check_labour(labour)?;
        // Stated hours are billed like computed ones.
        let hours = round_up_to(hours.max(p.minimum_hours), p.billing_increment_hours);
        assumptions.push(format!(
            "Based on {} for {}.",
            count(crew, "person", "people"),
            hours_text(hours)
        ));
        return Ok((hours, crew));
    }
    let mut hours = Decimal::ZERO;
    let mut crew = 0u32;
    let mut described = Vec::new();
    if let Some(tier_id) = &job.tier {
        let tier = p
            .tiers
            .iter()
            .find(|t| &t.id == tier_id)
            .ok_or_else(|| unknown("job size", tier_id, p.tiers.iter().map(|t| t.id.as_str())))?;
        hours += tier.hours;
        crew = tier.crew;
        described.push(tier.label.clone());
    }
    for selected in &job.items {
        let item = p
            .items
            .iter()
            .find(|i| i.id == selected.id)
            .ok_or_else(|| unknown("item", &selected.id, p.items.iter().map(|i| i.id.as_str())))?;
        if selected.quantity == 0 {
            return Err(QuoteError::ZeroQuantity(selected.id.clone()));
        }
        hours += item.hours * Decimal::from(selected.quantity);
        crew = crew.max(item.crew.unwrap_or(0));
        described.push(if selected.quantity == 1 {
            item.label.clone()
        } else {
            format!("{} x {}", selected.quantity, item.label)
        });
    }
    if described.is_empty() {
        return Err(QuoteError::Incomplete("a job size or at least one item"));
    }
    if crew == 0 {
        crew = p.default_crew;
    }
    let hours = round_up_to(hours.max(p.minimum_hours), p.billing_increment_hours);
    assumptions.push(format!(
        "Based on {} ({}, about {}).",
        described.join(", "),
        count(crew, "person", "people"),
        hours_text(hours)
    ));
    Ok((hours, crew))
}

type MaidLabour = (Decimal, u32, Option<(String, Money)>);

fn maid_labour(
    p: &MaidPricing,
    job: &MaidJob,
    assumptions: &mut Vec<String>,
) -> Result<MaidLabour, QuoteError> {
    let clean = p
        .clean_types
        .iter()
        .find(|c| c.id == job.clean_type)
        .ok_or_else(|| {
            unknown(
                "clean type",
                &job.clean_type,
                p.clean_types.iter().map(|c| c.id.as_str()),
            )
        })?;
    if job.bedrooms == 0 && job.bathrooms.is_zero() && job.square_feet.is_none() && job.labour.is_none() {
        return Err(QuoteError::Incomplete("bedrooms, bathrooms or square feet"));
    }
    if job.bathrooms.is_sign_negative() {
        return Err(QuoteError::Incomplete("a bathroom count of zero or more"));
    }
    let baths = job.bathrooms.normalize();
    let home = format!(
        "{} {}, {} {}{}, {}",
        job.bedrooms,
        if job.bedrooms == 1 { "bedroom" } else { "bedrooms" },
        baths,
        if baths == Decimal::ONE {
            "bathroom"
        } else {
            "bathrooms"
        },
        job.square_feet
            .map(|s| format!(", about {s} sq ft"))
            .unwrap_or_default(),
        clean.label
    );
    if let Some(labour) = job.labour {
        let (hours, crew) = check_labour(labour)?;
        let hours = round_up_to(hours, p.billing_increment_hours);
        assumptions.push(format!(
            "Based on {home}: {} for {}.",
            count(crew, "cleaner", "cleaners"),
            hours_text(hours)
        ));
        return Ok((hours, crew, None));
    }
    let person_hours = (p.base_hours
        + p.hours_per_bedroom * Decimal::from(job.bedrooms)
        + p.hours_per_bathroom * job.bathrooms
        + p.hours_per_1000_sqft * Decimal::from(job.square_feet.unwrap_or(0)) / Decimal::from(1000))
        * clean.multiplier;
    let crew = p.crew;
    let hours = round_up_to(person_hours / Decimal::from(crew), p.billing_increment_hours);
    assumptions.push(format!(
        "Based on {home} ({}, about {}).",
        count(crew, "cleaner", "cleaners"),
        hours_text(hours)
    ));
    let flat = p
        .flat_rates
        .iter()
        .find(|r| {
            r.bedrooms == job.bedrooms && r.bathrooms == job.bathrooms && r.clean_type == job.clean_type
        })
        .map(|r| {
            (
                format!(
                    "{} for {} bed / {} bath (flat rate)",
                    capitalize(&clean.label),
                    r.bedrooms,
                    r.bathrooms.normalize()
                ),
                r.price,
            )
        });
    Ok((hours, crew, flat))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Decimal hours for display and scheduling, as minutes.
pub fn hours_to_minutes(hours: Decimal) -> i64 {
    (hours * Decimal::from(60)).round().to_i64().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 18, 0, 0).unwrap()
    }

    fn money(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn catalog() -> PricingConfig {
        let mut c = PricingConfig::default();
        c.junk.items = vec![
            ItemLabour {
                id: "couch".into(),
                label: "couch".into(),
                hours: dec("0.5"),
                crew: None,
            },
            ItemLabour {
                id: "piano".into(),
                label: "piano".into(),
                hours: dec("1"),
                crew: Some(3),
            },
        ];
        let m = |id: &str, kind| ModifierDef {
            id: id.into(),
            label: id.replace('_', " "),
            kind,
            applies: None,
        };
        c.modifiers = vec![
            m("heavy_item", ModifierKind::Flat { amount: money("75") }),
            m(
                "stairs",
                ModifierKind::PerUnit {
                    amount: money("25"),
                    unit: "flight(s)".into(),
                },
            ),
            m("mattress", ModifierKind::PerItem { amount: money("30") }),
            m("same_day", ModifierKind::Percent { percent: dec("20") }),
            m("weekend", ModifierKind::Percent { percent: dec("10") }),
        ];
        c.discounts = vec![
            DiscountDef {
                id: "senior".into(),
                label: "Senior discount".into(),
                kind: DiscountKind::Percent { percent: dec("10") },
                question: None,
                services: Vec::new(),
            },
            DiscountDef {
                id: "coupon".into(),
                label: "Coupon".into(),
                kind: DiscountKind::Amount { amount: money("20") },
                question: None,
                services: Vec::new(),
            },
        ];
        c
    }

    fn explicit(hours: &str, crew: i64) -> JobSpec {
        JobSpec::Junk(JunkJob {
            labour: Some(Labour {
                hours: dec(hours),
                crew,
            }),
            ..JunkJob::default()
        })
    }

    fn with(job: JobSpec, modifiers: &[(&str, u32)], discounts: &[&str]) -> JobSpec {
        match job {
            JobSpec::Junk(mut j) => {
                j.modifiers = modifiers
                    .iter()
                    .map(|(id, q)| Selected {
                        id: id.to_string(),
                        quantity: *q,
                    })
                    .collect();
                j.discounts = discounts.iter().map(|d| d.to_string()).collect();
                JobSpec::Junk(j)
            }
            other => other,
        }
    }

    fn total(config: &PricingConfig, job: &JobSpec) -> Money {
        price(config, job, "q".into(), now()).unwrap().total
    }

    #[test]
    fn the_formula_table() {
        let c = catalog();
        let cases = [
            // 2 people for 3 hours: $150 + 2 x 3 x $50 = $450.
            ("3", 2, "450"),
            ("1", 1, "200"),
            ("1", 2, "250"),
            ("2", 2, "350"),
            ("2.5", 3, "525"),
            // Stated hours are raised to the 1-hour minimum: 150 + 2 x 50.
            ("0.5", 2, "250"),
            // ...and rounded up to the half-hour increment: 150 + 1.5 x 50.
            ("1.2", 1, "225"),
            ("8", 4, "1750"),
        ];
        for (hours, crew, expected) in cases {
            assert_eq!(
                total(&c, &explicit(hours, crew)),
                money(expected),
                "{hours} h x {crew}"
            );
        }
        let q = price(&c, &explicit("3", 2), "q1".into(), now()).unwrap();
        assert_eq!(
            q.lines[0],
            QuoteLine {
                label: "Delivery".into(),
                amount: money("150")
            }
        );
        assert_eq!(q.lines[1].amount, money("300"));
        assert_eq!(q.lines[1].label, "Labour: 2 people x 3 hours at $50/hour each");
    }

    #[test]
    fn modifiers_stack_in_the_documented_order() {
        let c = catalog();
        // Subtotal: 450 + 75 (flat) + 2 x 25 (stairs) + 1 x 30 (mattress) = 605.
        // Surcharges on the subtotal, additive: 20% + 10% of 605 = 121 + 60.50.
        // Percent discount on 786.50: 10% = 78.65 -> 707.85; then coupon 20 -> 687.85.
        let job = with(
            explicit("3", 2),
            &[
                ("weekend", 1),
                ("stairs", 2),
                ("same_day", 1),
                ("mattress", 1),
                ("heavy_item", 1),
            ],
            &["coupon", "senior"],
        );
        let q = price(&c, &job, "q".into(), now()).unwrap();
        let labels: Vec<(&str, Money)> = q.lines.iter().map(|l| (l.label.as_str(), l.amount)).collect();
        assert_eq!(
            labels,
            vec![
                ("Delivery", money("150")),
                ("Labour: 2 people x 3 hours at $50/hour each", money("300")),
                ("heavy item", money("75")),
                ("stairs: 2 flight(s) x $25", money("50")),
                ("mattress: 1 x $30", money("30")),
                ("weekend (10%)", money("60.50")),
                ("same day (20%)", money("121")),
                ("Senior discount (10% off)", money("-78.65")),
                ("Coupon", money("-20")),
            ]
        );
        assert_eq!(q.total, money("687.85"));
        let sum: Money = q.lines.iter().map(|l| l.amount).sum();
        assert_eq!(sum, q.total, "the breakdown adds up to the total");
    }

    #[test]
    fn minimum_charge_and_rounding() {
        let mut c = catalog();
        c.minimum_charge = money("250");
        let q = price(&c, &explicit("1", 1), "q".into(), now()).unwrap();
        assert_eq!(q.total, money("250"));
        assert_eq!(q.lines.last().unwrap().label, "Minimum charge is $250");
        assert_eq!(q.lines.last().unwrap().amount, money("50"));

        // Rounding to cents: 3 x 1 x 33.333 -> 99.999 per line rounds per line.
        c.minimum_charge = Money::ZERO;
        c.junk.hourly_rate_per_person = money("33.33");
        c.junk.delivery_fee = Money::ZERO;
        // Quarter hours, so 1.25 hours is billed as stated.
        c.junk.billing_increment_hours = dec("0.25");
        assert_eq!(total(&c, &explicit("1.5", 1)), money("50.00")); // 49.995 -> 50.00
        c.rounding = Rounding::Dollar;
        assert_eq!(total(&c, &explicit("1.25", 1)), money("42")); // 41.66 -> 42
        c.rounding = Rounding::FiveDollars;
        assert_eq!(total(&c, &explicit("1.25", 1)), money("40")); // 41.66 -> 40
        let q = price(&c, &explicit("1.25", 1), "q".into(), now()).unwrap();
        assert_eq!(q.lines.last().unwrap().label, "Rounding");
        let sum: Money = q.lines.iter().map(|l| l.amount).sum();
        assert_eq!(sum, q.total);
        // The minimum applies after rounding, so it is exact.
        c.minimum_charge = money("41.50");
        assert_eq!(total(&c, &explicit("1.25", 1)), money("41.50"));
    }

    #[test]
    fn rejects_bad_labour_and_unknown_entries() {
        let c = catalog();
        let err = |job: &JobSpec| price(&c, job, "q".into(), now()).unwrap_err();
        assert_eq!(err(&explicit("0", 2)), QuoteError::NonPositiveHours);
        assert_eq!(err(&explicit("-1", 2)), QuoteError::NonPositiveHours);
        assert_eq!(err(&explicit("2", 0)), QuoteError::NonPositiveCrew);
        assert_eq!(err(&explicit("2", -3)), QuoteError::NonPositiveCrew);
        let unknown = err(&with(explicit("2", 2), &[("gold_plating", 1)], &[]));
        assert!(matches!(&unknown, QuoteError::Unknown { what: "modifier", id, .. } if id == "gold_plating"));
        assert!(
            unknown.to_string().contains("heavy_item, stairs, mattress"),
            "{unknown}"
        );
        assert!(matches!(
            err(&with(explicit("2", 2), &[], &["friends"])),
            QuoteError::Unknown { what: "discount", .. }
        ));
        assert_eq!(
            err(&with(explicit("2", 2), &[("stairs", 0)], &[])),
            QuoteError::ZeroQuantity("stairs".into())
        );
        // A discount or modifier counts once, however often it is asked for.
        assert_eq!(
            err(&with(explicit("2", 2), &[], &["senior", "senior"])),
            QuoteError::Repeated("senior".into())
        );
        assert_eq!(
            err(&with(explicit("2", 2), &[("stairs", 1), ("stairs", 2)], &[])),
            QuoteError::Repeated("stairs".into())
        );
        // Absurd sizes are refused, never overflowed.
        assert!(matches!(
            err(&explicit("40000000000000000000000000000", 2)),
            QuoteError::TooLarge(_)
        ));
        assert!(matches!(err(&explicit("2", 1_000_000)), QuoteError::TooLarge(_)));
        let huge_maid = JobSpec::Maid(MaidJob {
            bedrooms: 1,
            bathrooms: dec("30000000000000000000000000000"),
            clean_type: "standard".into(),
            ..MaidJob::default()
        });
        assert!(matches!(err(&huge_maid), QuoteError::TooLarge(_)));
        assert!(matches!(
            err(&JobSpec::Junk(JunkJob::default())),
            QuoteError::Incomplete(_)
        ));
        let tier = JobSpec::Junk(JunkJob {
            tier: Some("two_trucks".into()),
            ..JunkJob::default()
        });
        assert!(matches!(err(&tier), QuoteError::Unknown { what: "job size", .. }));
    }

    #[test]
    fn tiers_and_items_set_hours_and_crew() {
        let c = catalog();
        let half = JobSpec::Junk(JunkJob {
            tier: Some("half_truck".into()),
            ..JunkJob::default()
        });
        let q = price(&c, &half, "q".into(), now()).unwrap();
        assert_eq!((q.hours, q.crew, q.total), (dec("2"), 2, money("350")));
        assert!(
            q.assumptions[0].contains("about half a truck"),
            "{:?}",
            q.assumptions
        );
        assert!(q.assumptions.iter().any(|a| a.contains("confirmed on site")));

        // A piano needs three people; items add their labour to the tier's.
        let piano = JobSpec::Junk(JunkJob {
            tier: Some("few_items".into()),
            items: vec![Selected {
                id: "piano".into(),
                quantity: 1,
            }],
            ..JunkJob::default()
        });
        let q = price(&c, &piano, "q".into(), now()).unwrap();
        assert_eq!((q.hours, q.crew), (dec("2"), 3));
        assert_eq!(q.total, money("450"));

        // Items alone: 3 couches = 1.5 h, default crew of 2; billed in half hours.
        let couches = JobSpec::Junk(JunkJob {
            items: vec![Selected {
                id: "couch".into(),
                quantity: 3,
            }],
            ..JunkJob::default()
        });
        let q = price(&c, &couches, "q".into(), now()).unwrap();
        assert_eq!((q.hours, q.crew, q.total), (dec("1.5"), 2, money("300")));
        // One couch is below the minimum hours: billed as one hour.
        let one = JobSpec::Junk(JunkJob {
            items: vec![Selected {
                id: "couch".into(),
                quantity: 1,
            }],
            ..JunkJob::default()
        });
        assert_eq!(price(&c, &one, "q".into(), now()).unwrap().hours, dec("1"));
    }

    /// `textdesk quote --hours 0.1 --crew 1` once billed 0.1 hours to
    /// "1 people".
    #[test]
    fn stated_labour_is_billed_like_computed_labour_and_counted_in_words() {
        let c = catalog();
        let q = price(&c, &explicit("0.1", 1), "q".into(), now()).unwrap();
        assert_eq!(q.hours, dec("1"));
        assert_eq!(q.lines[1].label, "Labour: 1 person x 1 hour at $50/hour each");
        assert_eq!(q.total, money("200"));
        assert_eq!(q.assumptions[0], "Based on 1 person for 1 hour.");
        let maid = JobSpec::Maid(MaidJob {
            bedrooms: 1,
            clean_type: "standard".into(),
            labour: Some(Labour {
                hours: dec("1.2"),
                crew: 1,
            }),
            ..MaidJob::default()
        });
        let q = price(&c, &maid, "q".into(), now()).unwrap();
        assert_eq!(q.hours, dec("1.5"));
        assert_eq!(
            q.lines[0].label,
            "Cleaning: 1 cleaner x 1.5 hours at $40/hour each"
        );
        assert!(
            q.assumptions[0].ends_with(": 1 cleaner for 1.5 hours."),
            "{:?}",
            q.assumptions
        );
    }

    #[test]
    fn a_discount_for_some_services_is_given_only_to_those() {
        let mut c = catalog();
        c.discounts = vec![DiscountDef {
            id: "first_deep".into(),
            label: "First deep clean".into(),
            kind: DiscountKind::Percent { percent: dec("10") },
            question: None,
            services: vec!["deep".into()],
        }];
        c.validate().unwrap();
        let job = |clean: &str| {
            JobSpec::Maid(MaidJob {
                bedrooms: 3,
                bathrooms: dec("2"),
                square_feet: Some(1800),
                clean_type: clean.into(),
                discounts: vec!["first_deep".into()],
                ..MaidJob::default()
            })
        };
        // Deep: $360 (see maid_profile), 10% off -> $324.
        let deep = price(&c, &job("deep"), "q".into(), now()).unwrap();
        assert_eq!(deep.total, money("324"));
        assert!(deep.lines.iter().any(|l| l.label == "First deep clean (10% off)"));
        // Standard: $240, and no discount line.
        let standard = price(&c, &job("standard"), "q".into(), now()).unwrap();
        assert_eq!(standard.total, money("240"));
        assert!(
            standard.lines.iter().all(|l| !l.amount.is_negative()),
            "{:?}",
            standard.lines
        );
        // A junk job has no service: not given either.
        let junk = with(explicit("2", 2), &[], &["first_deep"]);
        let plain = with(explicit("2", 2), &[], &[]);
        assert_eq!(
            price(&c, &junk, "q".into(), now()).unwrap().total,
            price(&c, &plain, "q".into(), now()).unwrap().total
        );
        // An unknown service is refused, naming the known ones.
        c.discounts[0].services = vec!["deap".into()];
        let e = c.validate().unwrap_err();
        assert_eq!(
            (e.key, e.id.as_deref()),
            ("pricing.discounts", Some("first_deep"))
        );
        assert!(e.message.contains("unknown service `deap`"), "{}", e.message);
        assert!(e.message.contains("standard, deep, move_out"), "{}", e.message);
    }

    #[test]
    fn maid_profile() {
        let mut c = catalog();
        let job = |bed, bath: &str, sqft, clean: &str| {
            JobSpec::Maid(MaidJob {
                bedrooms: bed,
                bathrooms: dec(bath),
                square_feet: sqft,
                clean_type: clean.into(),
                ..MaidJob::default()
            })
        };
        // (1 + 3 x 0.75 + 2 x 0.75 + 1.8 x 0.5) = 5.65 person-hours, 2 cleaners
        // -> 2.825 h on site -> billed 3 h -> 2 x 3 x $40 = $240.
        let q = price(&c, &job(3, "2", Some(1800), "standard"), "q".into(), now()).unwrap();
        assert_eq!((q.hours, q.crew, q.total), (dec("3"), 2, money("240")));
        // Deep clean x 1.5 = 8.475 person-hours -> 4.2375 -> 4.5 h -> $360.
        let deep = price(&c, &job(3, "2", Some(1800), "deep"), "q".into(), now()).unwrap();
        assert_eq!(deep.total, money("360"));
        assert!(deep.assumptions[0].contains("3 bedrooms, 2 bathrooms, about 1800 sq ft, deep clean"));
        let one = price(&c, &job(1, "1.0", None, "standard"), "q".into(), now()).unwrap();
        assert!(
            one.assumptions[0].starts_with("Based on 1 bedroom, 1 bathroom, "),
            "{:?}",
            one.assumptions
        );
        let half = price(&c, &job(1, "1.5", None, "standard"), "q".into(), now()).unwrap();
        assert!(
            half.assumptions[0].starts_with("Based on 1 bedroom, 1.5 bathrooms, "),
            "{:?}",
            half.assumptions
        );
        // A flat rate wins when the home matches it.
        c.maid.flat_rates = vec![FlatRate {
            bedrooms: 2,
            bathrooms: dec("1"),
            clean_type: "standard".into(),
            price: money("129"),
        }];
        let flat = price(&c, &job(2, "1", None, "standard"), "q".into(), now()).unwrap();
        assert_eq!(flat.total, money("129"));
        assert_eq!(
            flat.lines[0].label,
            "Standard clean for 2 bed / 1 bath (flat rate)"
        );
        assert!(matches!(
            price(&c, &job(2, "1", None, "sparkly"), "q".into(), now()).unwrap_err(),
            QuoteError::Unknown {
                what: "clean type",
                ..
            }
        ));
        assert!(matches!(
            price(&c, &job(0, "0", None, "standard"), "q".into(), now()).unwrap_err(),
            QuoteError::Incomplete(_)
        ));
    }

    #[test]
    fn a_quote_expires() {
        let q = price(&catalog(), &explicit("2", 2), "q".into(), now()).unwrap();
        assert_eq!(q.expires_at, now() + Duration::days(7));
        assert!(!q.is_expired(now() + Duration::days(6)));
        assert!(q.is_expired(now() + Duration::days(7)));
    }

    #[test]
    fn shipped_default_catalog_is_valid() {
        assert_eq!(PricingConfig::default().validate(), Ok(()));
        let mut c = catalog();
        c.modifiers.push(c.modifiers[0].clone());
        let err = c.validate().unwrap_err();
        assert_eq!(
            (err.key, err.id.as_deref()),
            ("pricing.modifiers", Some("heavy_item"))
        );
    }

    /// The catalog with its surcharges priced by date, and one after hours.
    fn dated_catalog() -> PricingConfig {
        let mut c = catalog();
        for m in &mut c.modifiers {
            m.applies = match m.id.as_str() {
                "same_day" => Some(DateRule::SameDay),
                "weekend" => Some(DateRule::Weekend),
                _ => None,
            };
        }
        c.modifiers.push(ModifierDef {
            id: "evening".into(),
            label: "Evening service".into(),
            kind: ModifierKind::Flat { amount: money("40") },
            applies: Some(DateRule::AfterHours),
        });
        c
    }

    fn half_truck() -> JobSpec {
        JobSpec::Junk(JunkJob {
            tier: Some("half_truck".into()),
            ..JunkJob::default()
        })
    }

    /// Today is Friday 2026-12-04; after hours starts at 17:00.
    fn opening(y: i32, m: u32, d: u32, h: u32) -> OpeningTime {
        OpeningTime {
            local_start: NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(h, 0, 0)
                .unwrap(),
            today: NaiveDate::from_ymd_opt(2026, 12, 4).unwrap(),
            after_hours_from: NaiveTime::from_hms_opt(17, 0, 0),
        }
    }

    fn total_at(at: OpeningTime) -> (String, Option<String>) {
        let c = dated_catalog();
        let quote = price(&c, &half_truck(), "Q1".into(), now()).unwrap();
        assert_eq!(quote.total.to_string(), "$350");
        match price_for_opening(&c, &quote, &at).unwrap() {
            Some(q) => (q.total.to_string(), Some(q.id)),
            None => (quote.total.to_string(), None),
        }
    }

    #[test]
    fn surcharges_that_depend_on_the_date_are_priced_from_the_opening() {
        // A weekday opening, not today, in hours: the quote stands.
        assert_eq!(total_at(opening(2026, 12, 8, 9)), ("$350".into(), None));
        // Saturday: 10% on the $350 subtotal.
        assert_eq!(
            total_at(opening(2026, 12, 5, 9)),
            ("$385".into(), Some("Q1-weekend".into()))
        );
        // Sunday too.
        assert_eq!(total_at(opening(2026, 12, 6, 9)).0, "$385");
        // Today: 20%.
        assert_eq!(
            total_at(opening(2026, 12, 4, 9)),
            ("$420".into(), Some("Q1-same_day".into()))
        );
        // From 17:00: a flat $40; at 16:00 not yet.
        assert_eq!(total_at(opening(2026, 12, 8, 17)).0, "$390");
        assert_eq!(total_at(opening(2026, 12, 8, 16)).0, "$350");
        // Saturday evening: weekend 10% of the $390 subtotal, on top.
        assert_eq!(total_at(opening(2026, 12, 5, 18)).0, "$429");
    }

    #[test]
    fn a_date_surcharge_chosen_before_the_date_was_known_follows_the_opening() {
        let c = dated_catalog();
        // A weekend surcharge picked as an extra, then a Tuesday opening.
        let job = with(half_truck(), &[("weekend", 1), ("stairs", 1)], &[]);
        let quote = price(&c, &job, "Q2".into(), now()).unwrap();
        assert_eq!(quote.total.to_string(), "$412.50");
        let tuesday = price_for_opening(&c, &quote, &opening(2026, 12, 8, 9))
            .unwrap()
            .unwrap();
        assert_eq!(tuesday.total.to_string(), "$375");
        assert_eq!(tuesday.id, "Q2-plain");
        assert_eq!(
            tuesday.expires_at, quote.expires_at,
            "it is the same quote's price"
        );
        // Priced for a Saturday, it is charged once, not twice.
        let saturday = for_opening(&c, &job, &opening(2026, 12, 5, 9));
        assert_eq!(total(&c, &saturday).to_string(), "$412.50");
        // Without after_hours_from, nothing is after hours.
        let mut late = opening(2026, 12, 8, 20);
        late.after_hours_from = None;
        assert_eq!(total_at(late).0, "$350");
    }

    #[test]
    fn a_quote_stored_before_it_kept_its_job_is_not_repriced() {
        let c = dated_catalog();
        let mut quote = price(&c, &half_truck(), "Q3".into(), now()).unwrap();
        quote.job = None;
        assert_eq!(price_for_opening(&c, &quote, &opening(2026, 12, 5, 9)), Ok(None));
    }

    #[test]
    fn check_config_warns_of_surcharges_the_schedule_never_charges() {
        use crate::domain::availability::DayHours;
        let c = dated_catalog();
        let mut schedule = ScheduleConfig {
            after_hours_from: NaiveTime::from_hms_opt(17, 0, 0),
            ..ScheduleConfig::default()
        };
        // Open Saturdays, closing at 17:00 everywhere: only the evening one.
        assert_eq!(
            date_surcharge_warnings(&c, &schedule),
            vec![
                "`evening` (Evening service) applies from 17:00 on, but every open day \
                 closes by then: it is never charged."
            ]
        );
        schedule.hours.sat = DayHours::Closed;
        schedule.hours.fri = DayHours::Open {
            open: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            close: NaiveTime::from_hms_opt(20, 0, 0).unwrap(),
        };
        schedule.min_notice_hours = 24;
        assert_eq!(
            date_surcharge_warnings(&c, &schedule),
            vec![
                "`same_day` (same day) applies to same-day bookings, but [schedule] \
                 min_notice_hours = 24 leaves none: it is never charged.",
                "`weekend` (weekend) applies on weekends, but [schedule.hours] is closed \
                 on Saturday and Sunday: it is never charged.",
            ]
        );
        schedule.after_hours_from = None;
        assert!(
            date_surcharge_warnings(&c, &schedule)
                .last()
                .unwrap()
                .contains("sets no `after_hours_from`")
        );
        // A catalog from before `applies`: its weekend rate would be asked
        // as an extra. Open every day, so only that warning stands.
        let mut old = c.clone();
        old.modifiers.retain(|m| m.id == "weekend");
        old.modifiers[0].applies = None;
        let open_all_week = ScheduleConfig::default();
        assert_eq!(
            date_surcharge_warnings(&old, &open_all_week),
            vec![
                "`weekend` (weekend) reads like a date surcharge but has no `applies`: it is asked as \
                 an extra before any date is known; add `applies = \"weekend\"` to charge it from the \
                 opening chosen."
            ]
        );
    }

    fn any_modifiers() -> impl Strategy<Value = Vec<(usize, u32)>> {
        proptest::collection::vec((0usize..5, 1u32..5), 0..5)
    }

    fn build(hours_quarters: u32, crew: i64, mods: &[(usize, u32)], discounts: &[usize]) -> JobSpec {
        let ids = ["heavy_item", "stairs", "mattress", "same_day", "weekend"];
        let mut seen = std::collections::HashSet::new();
        JobSpec::Junk(JunkJob {
            labour: Some(Labour {
                hours: Decimal::from(hours_quarters) / Decimal::from(4),
                crew,
            }),
            modifiers: mods
                .iter()
                .filter(|(i, _)| seen.insert(*i))
                .map(|(i, q)| Selected {
                    id: ids[*i].into(),
                    quantity: *q,
                })
                .collect(),
            discounts: discounts
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|i| ["senior", "coupon"][*i].to_string())
                .collect(),
            ..JunkJob::default()
        })
    }

    proptest! {
        #[test]
        fn price_never_decreases_as_hours_or_crew_grow(
            quarters in 1u32..80,
            extra_quarters in 0u32..40,
            crew in 1i64..6,
            extra_crew in 0i64..4,
            mods in any_modifiers(),
            discounts in proptest::collection::vec(0usize..2, 0..2),
            rounding in 0usize..3,
            minimum in 0i64..600,
        ) {
            let mut c = catalog();
            c.rounding = [Rounding::Cent, Rounding::Dollar, Rounding::FiveDollars][rounding];
            c.minimum_charge = Money::dollars(minimum);
            let base = total(&c, &build(quarters, crew, &mods, &discounts));
            let more_hours = total(&c, &build(quarters + extra_quarters, crew, &mods, &discounts));
            let more_crew = total(&c, &build(quarters, crew + extra_crew, &mods, &discounts));
            prop_assert!(more_hours >= base, "{more_hours:?} < {base:?}");
            prop_assert!(more_crew >= base, "{more_crew:?} < {base:?}");
        }

        #[test]
        fn price_is_never_negative_and_the_breakdown_adds_up(
            quarters in 1u32..80,
            crew in 1i64..6,
            mods in any_modifiers(),
            discounts in proptest::collection::vec(0usize..2, 0..3),
            coupon in 0i64..2000,
            rounding in 0usize..3,
        ) {
            let mut c = catalog();
            c.rounding = [Rounding::Cent, Rounding::Dollar, Rounding::FiveDollars][rounding];
            c.discounts[1].kind = DiscountKind::Amount { amount: Money::dollars(coupon) };
            let q = price(&c, &build(quarters, crew, &mods, &discounts), "q".into(), now()).unwrap();
            prop_assert!(!q.total.is_negative());
            let sum: Money = q.lines.iter().map(|l| l.amount).sum();
            prop_assert_eq!(sum, q.total);
        }
    }
}
