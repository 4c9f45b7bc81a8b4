//! The console's assistant settings on SQLite.

use std::collections::HashMap;

use super::*;
use crate::config::fragments::Fragment;

#[async_trait]
impl AssistantFragments for SqliteStore {
    async fn assistant_fragments(&self) -> Result<HashMap<String, Vec<Fragment>>, StoreError> {
        let rows = sqlx::query(
            "SELECT business_id, key, value, updated_at, updated_by FROM assistant_fragments
             ORDER BY business_id, key",
        )
        .fetch_all(&self.reader)
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
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM assistant_fragments WHERE business_id = ?1")
            .bind(business_id)
            .execute(&mut *tx)
            .await?;
        for fragment in fragments {
            sqlx::query(
                "INSERT INTO assistant_fragments (business_id, key, value, updated_at, updated_by)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
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
