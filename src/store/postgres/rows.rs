//! Row decoding shared by the Postgres ports written together (the
//! conversation, outbox, job and alert ports, and maintenance).

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::domain::phone::E164;
use crate::store::{Direction, Message, MessageId, MessageKind, StoreError};

/// The columns [`message_from_row`] reads, in a SELECT list.
pub(super) const MESSAGE_COLUMNS: &str =
    "id, direction, kind, body, status, channel_message_id, num_media, opt_out_keyword, created_at";

pub(super) fn direction(raw: &str) -> Result<Direction, StoreError> {
    match raw {
        "inbound" => Ok(Direction::Inbound),
        "outbound" => Ok(Direction::Outbound),
        other => Err(StoreError::Corrupt(format!("message direction `{other}`"))),
    }
}

pub(super) fn parse_phone(raw: &str) -> Result<E164, StoreError> {
    E164::parse_address(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// An instant stored as epoch milliseconds.
pub(super) fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

pub(super) fn message_from_row(row: &PgRow) -> Result<Message, StoreError> {
    Ok(Message {
        id: MessageId(row.try_get("id")?),
        direction: direction(row.try_get("direction")?)?,
        kind: MessageKind::parse(row.try_get("kind")?),
        body: row.try_get("body")?,
        status: row.try_get("status")?,
        channel_message_id: row.try_get("channel_message_id")?,
        num_media: row.try_get::<i32, _>("num_media")? as i64,
        opt_out_keyword: row.try_get("opt_out_keyword")?,
        created_at: row.try_get("created_at")?,
    })
}

/// JSON for a JSONB parameter (bound as text, cast with `::jsonb`).
pub(super) fn json_text<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("{what} does not serialize: {e}")))
}
