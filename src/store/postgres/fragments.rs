//! The console's assistant settings on Postgres.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::config::fragments::Fragment;
use crate::store::{AssistantFragments, StoreError};

/// The first key of a business's settings lock ("te" in ASCII; the crew
/// locks use "td").
const FRAGMENTS_LOCK_SPACE: i32 = 0x7465;

#[async_trait]
impl AssistantFragments for PgStore {
    async fn assistant_fragments(&self) -> Result<HashMap<String, Vec<Fragment>>, StoreError> {
        let rows = sqlx::query(
            "SELECT business_id, key, value, updated_at, updated_by FROM assistant_fragments
             ORDER BY business_id, key",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out: HashMap<String, Vec<Fragment>> = HashMap::new();
        for row in rows {
            out.entry(row.try_get("business_id")?)
                .or_default()
                .push(Fragment {
                    key: row.try_get("key")?,
                    value: row.try_get("value")?,
                    updated_at: row.try_get("updated_at")?,
                    updated_by: row.try_get("updated_by")?,
                });
        }
        Ok(out)
    }

    async fn replace_assistant_fragments(
        &self,
        business_id: &str,
        fragments: &[Fragment],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        // Two saves at once (two instances): the second waits for the
        // first's delete, then replaces its rows whole; never a mix.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(FRAGMENTS_LOCK_SPACE)
            .bind(business_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM assistant_fragments WHERE business_id = $1")
            .bind(business_id)
            .execute(&mut *tx)
            .await?;
        for fragment in fragments {
            sqlx::query(
                "INSERT INTO assistant_fragments (business_id, key, value, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(business_id)
            .bind(&fragment.key)
            .bind(&fragment.value)
            .bind(fragment.updated_at)
            .bind(&fragment.updated_by)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
