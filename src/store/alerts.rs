//! The owner's alerts port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{AlertKind, ConversationId, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub kind: AlertKind,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Alert {
    pub kind: AlertKind,
    pub conversation_id: Option<ConversationId>,
    pub detail: String,
    pub created_at: DateTime<Utc>,
}

/// What the owner is told: alerts stored for the owner to read.
#[async_trait]
pub trait OwnerAlerts: Send + Sync + 'static {
    async fn record_alert(
        &self,
        kind: &AlertKind,
        conversation: Option<ConversationId>,
        detail: &str,
    ) -> Result<(), StoreError>;

    async fn alerts(&self) -> Result<Vec<Alert>, StoreError>;
}
