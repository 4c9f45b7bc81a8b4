//! The web chat port: a visitor's session (the token's hash, the visitor's
//! `web:` address) and the phone number they are proving theirs.
//!
//! A small port of its own, not part of `Store`: only the web chat's HTTP
//! handlers and the turn's verification step hold it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ConversationId, StoreError};
use crate::domain::phone::E164;

/// A code texted to a number, waiting to be typed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCode {
    pub phone: E164,
    /// `channel::webchat::hash_secret(address, code)`.
    pub code_hash: String,
    pub expires_at: DateTime<Utc>,
    /// Wrong codes typed for this code so far.
    pub attempts: i64,
}

/// One visitor's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// The token's hash: a secret of the session's own (never sent back
    /// to the browser), from which its codes are derived.
    pub secret: String,
    pub business_id: String,
    /// `web:<session id>`: the visitor's customer address.
    pub address: E164,
    pub created_at: DateTime<Utc>,
    pub code: Option<PendingCode>,
    /// Codes texted in this session, ever.
    pub codes_sent: i64,
    pub verified_phone: Option<E164>,
    /// The SMS conversation of the verified number at this business: the
    /// customer's texts, linked to this chat.
    pub linked_conversation: Option<ConversationId>,
}

#[async_trait]
pub trait WebChatStore: Send + Sync + 'static {
    /// Stores a new session under its token's hash.
    async fn create_web_session(
        &self,
        token_hash: &str,
        business_id: &str,
        address: &E164,
    ) -> Result<(), StoreError>;

    /// The session a token (by its hash) opens.
    async fn web_session(&self, token_hash: &str) -> Result<Option<WebSession>, StoreError>;

    /// The session of a visitor's address.
    async fn web_session_of(&self, address: &E164) -> Result<Option<WebSession>, StoreError>;

    /// The sessions whose verified number is linked to `conversation` (a
    /// phone's own conversation), oldest first: the console links them.
    async fn web_sessions_linked_to(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<WebSession>, StoreError>;

    /// Records a code texted to `phone` (replacing any earlier one, with
    /// its attempts reset) and counts it.
    async fn web_code_sent(&self, address: &E164, code: &PendingCode) -> Result<(), StoreError>;

    /// Counts one wrong code; returns the attempts so far (one statement,
    /// so two requests at once both count).
    async fn web_code_failed(&self, address: &E164) -> Result<i64, StoreError>;

    /// The code was right: the number is verified and linked, the code gone.
    async fn web_phone_verified(
        &self,
        address: &E164,
        phone: &E164,
        linked: ConversationId,
    ) -> Result<(), StoreError>;
}
