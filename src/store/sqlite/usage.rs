//! Turns' model usage on SQLite.

use super::*;
use crate::store::usage::*;

fn turn_usage_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<TurnUsage, StoreError> {
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

/// A count as SQLite's INTEGER; a count past i64 is saturated, never wrapped.
pub(super) fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl ModelUsage for SqliteStore {
    async fn conversation_usage(&self, conversation: ConversationId) -> Result<UsageTotals, StoreError> {
        let mut totals = UsageTotals::default();
        for turn in self.turn_usages(conversation).await? {
            totals.turns += 1;
            totals.model_calls += u64::from(turn.model_calls);
            totals.tokens.input += turn.tokens.input;
            totals.tokens.cache_read += turn.tokens.cache_read;
            totals.tokens.cache_write += turn.tokens.cache_write;
            totals.tokens.output += turn.tokens.output;
        }
        Ok(totals)
    }

    async fn turn_usages(&self, conversation: ConversationId) -> Result<Vec<TurnUsage>, StoreError> {
        let rows = sqlx::query(
            "SELECT conversation_id, through_message_id, model_calls, input_tokens, cache_read_tokens,
                    cache_write_tokens, output_tokens
               FROM turn_usage WHERE conversation_id = ?1 ORDER BY id",
        )
        .bind(conversation.0)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(turn_usage_from_row).collect()
    }
}
