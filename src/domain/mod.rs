//! The pure core: no IO, no clocks read, no network. Everything here is a
//! function of its arguments and is unit-tested as such.

pub mod approval;
pub mod availability;
pub mod business_kind;
pub mod conversation;
pub mod delivery;
pub mod guardrail;
pub mod guided;
pub mod keywords;
pub mod money;
pub mod number_words;
pub mod phone;
pub mod quiet_hours;
pub mod quote;
pub mod reminders;
pub mod sms_text;
pub mod when;
