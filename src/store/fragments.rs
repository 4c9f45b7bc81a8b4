//! The owner console's assistant settings port: fragments per business,
//! laid over `business.toml` by `config::directory` (never read per turn).

use std::collections::HashMap;

use async_trait::async_trait;

use super::StoreError;
use crate::config::fragments::Fragment;

#[async_trait]
pub trait AssistantFragments: Send + Sync {
    /// Every business's fragments, by business id, each sorted by key.
    async fn assistant_fragments(&self) -> Result<HashMap<String, Vec<Fragment>>, StoreError>;

    /// Makes `fragments` the whole of `business_id`'s console settings, in
    /// one transaction.
    async fn replace_assistant_fragments(
        &self,
        business_id: &str,
        fragments: &[Fragment],
    ) -> Result<(), StoreError>;
}
