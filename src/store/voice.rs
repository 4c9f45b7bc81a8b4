//! The calls port: what a phone call needs beyond a text turn.

use async_trait::async_trait;

use super::{MessageId, StoreError};

/// Calls run on the conversation ports (a caller's words are inbound
/// messages, the spoken replies outbound ones); this adds what only speech
/// needs.
#[async_trait]
pub trait CallRecords: Send + Sync + 'static {
    /// Cuts a spoken reply to what the caller heard before interrupting
    /// (`heard`, Twilio's `utteranceUntilInterrupt`), so the conversation's
    /// history is what was said. Only an outbound message changes; returns
    /// whether one did.
    async fn cut_spoken_reply(&self, id: MessageId, heard: &str) -> Result<bool, StoreError>;
}
