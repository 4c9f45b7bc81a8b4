//! `ModelUsage`: what each turn's model requests cost, in tokens, kept
//! with the conversation so the console can show a conversation's cost.
//!
//! A port of its own (not a column of the turn's commit) so each backend
//! writes it in one small method. It is recorded when the turn's model
//! calls end, before the turn commits: tokens spent by a turn that then
//! crashes are counted, and a turn run again spent them again, so it adds
//! a row of its own.

use async_trait::async_trait;

use super::{ConversationId, MessageId, StoreError};

/// Tokens, by how Anthropic bills them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Input neither read from nor written to the cache.
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
}

impl TokenCounts {
    pub fn total_input(&self) -> u64 {
        self.input + self.cache_read + self.cache_write
    }
}

/// One turn's model requests and their summed tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnUsage {
    pub conversation: ConversationId,
    /// The newest customer text the turn answers.
    pub through: MessageId,
    pub model_calls: u32,
    pub tokens: TokenCounts,
}

/// A conversation's usage so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    /// Turns that called the model.
    pub turns: u64,
    pub model_calls: u64,
    pub tokens: TokenCounts,
}

/// Reads of the turns' model usage. It is written by the turn's commit
/// (`ConversationStore::finish_turn`, from `ModelCalls`), not here.
#[async_trait]
pub trait ModelUsage: Send + Sync + 'static {
    /// Every turn's usage in `conversation`, summed (zero if none).
    async fn conversation_usage(&self, conversation: ConversationId) -> Result<UsageTotals, StoreError>;

    /// Each turn's usage in `conversation`, oldest first.
    async fn turn_usages(&self, conversation: ConversationId) -> Result<Vec<TurnUsage>, StoreError>;
}
