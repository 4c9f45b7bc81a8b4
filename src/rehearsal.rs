//! The console's "Try it": one sample customer text answered by the real
//! engine (Claude when configured, else the guided flow) on draft settings,
//! in a scratch conversation that sends nothing and books nothing.
//!
//! The turn runs exactly as a customer's would (keywords, responder, the
//! guardrail and its fallback, the booking confirmation), but on a
//! throwaway SQLite database with textdesk's own calendar and a channel
//! that delivers nowhere: no text reaches a provider, and no booking,
//! hold, calendar event, job or email touches the real business. The
//! scratch database is deleted when the rehearsal ends. Openings it offers
//! are computed without the real calendar's bookings.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::anthropic::AnthropicClient;
use crate::calendar::LocalCalendar;
use crate::channel::console::ConsoleChannel;
use crate::channel::{ChannelPort, Channels, Content, SendError};
use crate::clock::Clock;
use crate::config::business::BusinessConfig;
use crate::config::settings::AnthropicSettings;
use crate::domain::phone::E164;
use crate::jobs::dispatch::Dispatcher;
use crate::jobs::turns::{Engine, TurnResult};
use crate::scheduling::Scheduler;
use crate::store::sqlite::SqliteStore;
use crate::store::{Direction, Recorded, Store, StoreError};

/// Numbers the rehearsing customer may text from (the 555-01xx range is
/// fictional). More than two, so one always differs from both the owner's
/// phone and the business's: the owner's own texts are never answered.
const SAMPLE_CUSTOMERS: [&str; 3] = ["+15035550187", "+15035550188", "+15035550189"];
/// The business number when the business has none configured.
const SAMPLE_BUSINESS: &str = "+15035550100";

#[derive(Debug, thiserror::Error)]
pub enum RehearsalError {
    #[error("cannot make the scratch conversation: {0}")]
    Scratch(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the sample text is empty")]
    Empty,
}

/// What the rehearsal answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rehearsal {
    /// Each text the customer would have received, in order (none: the
    /// engine stays silent, e.g. for STOP).
    pub replies: Vec<String>,
    /// The conversation's state after the turn, by name.
    pub state: &'static str,
}

/// What a rehearsal needs beside the business: the same model client and
/// settings as real turns.
#[derive(Clone)]
pub struct Rehearsals {
    pub anthropic: Option<(Arc<AnthropicClient>, AnthropicSettings)>,
    pub lease: std::time::Duration,
    pub clock: Arc<dyn Clock>,
}

/// A channel that accepts every text and delivers none.
struct Nowhere;

#[async_trait]
impl ChannelPort for Nowhere {
    async fn send(&self, _from: &E164, _to: &E164, _content: Content<'_>) -> Result<String, SendError> {
        Ok(format!("REHEARSAL{}", uuid::Uuid::new_v4().simple()))
    }
}

/// The scratch database's folder, removed with everything in it.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(error = %e, dir = %self.0.display(), "could not remove a Try-it scratch database");
        }
    }
}

/// The first sample number that is neither the owner's phone nor the
/// business's.
fn sample_customer(owner: Option<&E164>, business: &E164) -> Result<E164, RehearsalError> {
    SAMPLE_CUSTOMERS
        .iter()
        .filter_map(|number| E164::parse(number).ok())
        .find(|number| Some(number) != owner && number != business)
        .ok_or(RehearsalError::Empty)
}

impl Rehearsals {
    /// Answers `sample` as the first text of a new customer of `business`.
    pub async fn run(&self, business: &BusinessConfig, sample: &str) -> Result<Rehearsal, RehearsalError> {
        let sample = sample.trim();
        if sample.is_empty() {
            return Err(RehearsalError::Empty);
        }
        let dir =
            ScratchDir(std::env::temp_dir().join(format!("textdesk-try-{}", uuid::Uuid::new_v4().simple())));
        std::fs::create_dir_all(&dir.0)?;
        let url = format!("sqlite://{}", dir.0.join("scratch.db").display());
        let sqlite = Arc::new(SqliteStore::connect_with_clock(&url, self.clock.clone()).await?);
        let store: Arc<dyn Store> = sqlite.clone();
        let scheduler = Arc::new(Scheduler::new(store.clone(), Arc::new(LocalCalendar)));
        let dispatcher = Arc::new(Dispatcher {
            store: store.clone(),
            channels: Channels::only(Arc::new(Nowhere)),
            clock: self.clock.clone(),
        });
        let mut business = business.clone();
        // The owner wants to read the reply now, not a note that it would
        // wait for the morning.
        business.quiet_hours.replies_allowed = true;
        let engine = Engine {
            parts: Arc::new(crate::app::engine_parts(
                store.clone(),
                dispatcher,
                scheduler,
                self.anthropic.clone(),
                self.lease,
                self.clock.clone(),
            )),
            business: Arc::new(business),
        };
        let to = match &engine.business.business.phone {
            Some(phone) => phone.clone(),
            None => E164::parse(SAMPLE_BUSINESS).map_err(|_| RehearsalError::Empty)?,
        };
        let customer = sample_customer(engine.business.business.owner_phone.as_ref(), &to)?;
        let text = ConsoleChannel::inbound(&engine.business.business.id, &customer, &to, sample.to_string());
        let (Recorded::New(conversation, _) | Recorded::Duplicate(conversation, _)) =
            store.record_inbound(&text).await?;
        let result = engine.run_turn(conversation).await?;
        let replies = match result {
            TurnResult::Replied(_) => store
                .messages(conversation)
                .await?
                .into_iter()
                .filter(|m| m.direction == Direction::Outbound)
                .map(|m| m.body)
                .collect(),
            _ => Vec::new(),
        };
        let state = store.turn_input(conversation, 1).await?.state.name();
        drop(engine);
        sqlite.writer_pool().close().await;
        sqlite.reader_pool().close().await;
        Ok(Rehearsal { replies, state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_customer_is_never_the_owner_nor_the_business() {
        let first = E164::parse(SAMPLE_CUSTOMERS[0]).unwrap();
        let second = E164::parse(SAMPLE_CUSTOMERS[1]).unwrap();
        let chosen = sample_customer(Some(&first), &second).unwrap();
        assert_ne!(chosen, first);
        assert_ne!(chosen, second);
    }
}
