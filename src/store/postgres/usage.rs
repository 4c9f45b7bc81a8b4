//! Turns' model usage on Postgres (`migrations/postgres/0002_turn_usage.sql`).

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::store::usage::*;
use crate::store::{ConversationId, MessageId, StoreError};

fn turn_usage_from_row(row: &sqlx::postgres::PgRow) -> Result<TurnUsage, StoreError> {
    let count = |column: &str| -> Result<u64, StoreError> {
        let n: i64 = row.try_get(column)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("turn_usage.{column} = {n}")))
    };
    Ok(TurnUsage {
        conversation: ConversationId(row.try_get("conversation_id")?),
        through: MessageId(row.try_get("through_message_id")?),
        model_calls: u32::try_from(count("model_calls")?)
            .map_err(|_| StoreError::Corrupt("turn_usage.model_calls".into()))?,
        tokens: TokenCounts {
            input: count("input_tokens")?,
            cache_read: count("cache_read_tokens")?,
            cache_write: count("cache_write_tokens")?,
            output: count("output_tokens")?,
        },
    })
}

/// A count as BIGINT; a count past i64 is saturated, never wrapped.
pub(super) fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl ModelUsage for PgStore {
    async fn conversation_usage(&self, conversation: ConversationId) -> Result<UsageTotals, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS turns,
                    COALESCE(SUM(model_calls), 0)::BIGINT AS model_calls,
                    COALESCE(SUM(input_tokens), 0)::BIGINT AS input_tokens,
                    COALESCE(SUM(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
                    COALESCE(SUM(cache_write_tokens), 0)::BIGINT AS cache_write_tokens,
                    COALESCE(SUM(output_tokens), 0)::BIGINT AS output_tokens
               FROM turn_usage WHERE conversation_id = $1",
        )
        .bind(conversation.0)
        .fetch_one(self.pool())
        .await?;
        let count = |column: &str| -> Result<u64, StoreError> {
            let n: i64 = row.try_get(column)?;
            u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("turn_usage sum {column} = {n}")))
        };
        Ok(UsageTotals {
            turns: count("turns")?,
            model_calls: count("model_calls")?,
            tokens: TokenCounts {
                input: count("input_tokens")?,
                cache_read: count("cache_read_tokens")?,
                cache_write: count("cache_write_tokens")?,
                output: count("output_tokens")?,
            },
        })
    }

    async fn turn_usages(&self, conversation: ConversationId) -> Result<Vec<TurnUsage>, StoreError> {
        let rows = sqlx::query(
            "SELECT conversation_id, through_message_id, model_calls, input_tokens, cache_read_tokens,
                    cache_write_tokens, output_tokens
               FROM turn_usage WHERE conversation_id = $1 ORDER BY id",
        )
        .bind(conversation.0)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(turn_usage_from_row).collect()
    }
}
