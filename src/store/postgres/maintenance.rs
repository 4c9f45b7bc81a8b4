//! What a process does with a Postgres store as a whole.
//!
//! # Recovery on a shared database
//!
//! On SQLite one process serves the file, so at start whatever holds a
//! lease was interrupted and is freed at once. On Postgres other instances
//! may be serving the same database right now, so a starting instance
//! takes over only work whose holder is provably gone: work whose lease
//! has expired. A live lease is another instance's work in progress and is
//! left alone, however old the work.
//!
//! - A conversation whose `lease_until_ms` has passed is freed.
//! - A job `running` past its `locked_until_ms` is made `pending` again.
//! - A text left `sending` past its `send_lease_until_ms` (see
//!   [`PgStore::with_send_lease`]) is queued again. It keeps its attempt
//!   count, so the next claim makes it more than one and the dispatcher
//!   asks the channel (Twilio's message list) whether it went out before
//!   sending it again.
//!
//! Claims themselves judge leases the same way (an expired lease is free
//! to take), so nothing waits for a restart: recovery at start only makes
//! interrupted work visible at once.

use async_trait::async_trait;

use super::PgStore;
use crate::store::*;

#[async_trait]
impl Maintenance for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn recover_interrupted_work(&self) -> Result<Recovered, StoreError> {
        let now = self.now_ms();
        let leases_freed = sqlx::query(
            "UPDATE conversations SET lease_owner = NULL, lease_until_ms = NULL
             WHERE lease_owner IS NOT NULL AND (lease_until_ms IS NULL OR lease_until_ms < $1)",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let sends_requeued = sqlx::query(
            "UPDATE messages SET status = 'queued', send_lease_until_ms = NULL
             WHERE direction = 'outbound' AND status = 'sending'
               AND (send_lease_until_ms IS NULL OR send_lease_until_ms < $1)",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let jobs_requeued = sqlx::query(
            "UPDATE jobs SET status = 'pending', locked_until_ms = NULL
             WHERE status = 'running' AND (locked_until_ms IS NULL OR locked_until_ms < $1)",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(Recovered {
            leases_freed,
            sends_requeued,
            jobs_requeued,
        })
    }

    async fn adopt_legacy_rows(
        &self,
        business_id: &str,
        numbers: Option<&[String]>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let numbers: Option<Vec<String>> = numbers.map(|n| n.to_vec());
        // Conversations first (by the number they were written to, unless
        // this business answers every number), then what hangs off them.
        let adopted = sqlx::query(
            "UPDATE conversations SET business_id = $1
             WHERE business_id = 'default'
               AND ($2::text[] IS NULL OR business_number = ANY($2::text[]))",
        )
        .bind(business_id)
        .bind(&numbers)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for statement in [
            "UPDATE quotes SET business_id = $1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = $1)",
            "UPDATE bookings SET business_id = $1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = $1)",
            "UPDATE slot_holds SET business_id = $1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = $1)",
            "UPDATE alerts SET business_id = $1 WHERE business_id = 'default'
               AND conversation_id IN (SELECT id FROM conversations WHERE business_id = $1)",
            "UPDATE customers SET business_id = $1 WHERE business_id = 'default'
               AND id IN (SELECT customer_id FROM conversations WHERE business_id = $1)",
        ] {
            sqlx::query(statement).bind(business_id).execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE jobs SET business_id = $1 WHERE business_id = 'default'
               AND (conversation_id IN (SELECT id FROM conversations WHERE business_id = $1)
                    OR customer_id IN (SELECT id FROM customers WHERE business_id = $1)
                    OR ($2::text[] IS NULL AND conversation_id IS NULL AND customer_id IS NULL))",
        )
        .bind(business_id)
        .bind(&numbers)
        .execute(&mut *tx)
        .await?;
        if numbers.is_none() {
            // One business answers every number: whatever is left is its.
            for statement in [
                "UPDATE alerts SET business_id = $1 WHERE business_id = 'default'",
                "UPDATE customers SET business_id = $1 WHERE business_id = 'default'",
            ] {
                sqlx::query(statement).bind(business_id).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(adopted)
    }

    async fn businesses_with_conversations(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT business_id, COUNT(*) FROM conversations GROUP BY business_id ORDER BY 1")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(id, n)| (id, n.max(0) as u64)).collect())
    }
}
