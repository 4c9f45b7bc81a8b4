//! The owner's alerts port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ConversationId, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Alert {
    pub kind: String,
    pub conversation_id: Option<ConversationId>,
    pub detail: String,
    pub created_at: DateTime<Utc>,
}

/// What the owner is told: alerts stored for the owner to read.
#[async_trait]
pub trait OwnerAlerts: Send + Sync + 'static {
    async fn record_alert(
        &self,
        kind: &str,
        conversation: Option<ConversationId>,
        detail: &str,
    ) -> Result<(), StoreError>;

    async fn alerts(&self) -> Result<Vec<Alert>, StoreError>;
}
