//! Messages read as one JSON array: how both backends return a turn's
//! lists (its pending texts, its history) inside the single statement that
//! reads the turn, instead of one query, and one round trip, per list.

use chrono::{DateTime, Utc};

use super::{Direction, Message, MessageId, MessageKind, StoreError};

/// Messages from a JSON array of `[id, direction, kind, body, status,
/// channel_message_id, num_media, opt_out_keyword, created_at]` arrays
/// (SQLite's `json_array`, Postgres's `json_build_array`).
pub(crate) fn messages_from_json(json: &str) -> Result<Vec<Message>, StoreError> {
    type Columns = (
        i64,
        String,
        String,
        String,
        String,
        Option<String>,
        i64,
        Option<String>,
        String,
    );
    let rows: Vec<Columns> =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("messages: {e}")))?;
    rows.into_iter()
        .map(
            |(
                id,
                raw_direction,
                kind,
                body,
                status,
                channel_message_id,
                num_media,
                opt_out_keyword,
                created_at,
            )| {
                Ok(Message {
                    id: MessageId(id),
                    direction: match raw_direction.as_str() {
                        "inbound" => Direction::Inbound,
                        "outbound" => Direction::Outbound,
                        other => return Err(StoreError::Corrupt(format!("message direction `{other}`"))),
                    },
                    kind: MessageKind::parse(&kind),
                    body,
                    status,
                    channel_message_id,
                    num_media,
                    opt_out_keyword,
                    created_at: stored_time(&created_at)?,
                })
            },
        )
        .collect()
}

/// A time as the stores write it: RFC 3339 (how sqlx binds a `DateTime`
/// into SQLite, and how Postgres renders a `timestamptz` in JSON), or as
/// SQLite's own `datetime()` writes it, in UTC.
pub(crate) fn stored_time(raw: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(raw, "%F %T%.f").map(|t| t.and_utc()))
        .map_err(|_| StoreError::Corrupt(format!("a stored time `{raw}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_time_formats_and_a_bad_direction() {
        let sqlite = r#"[[1,"inbound","text","hi","pending",null,0,null,"2026-11-29T05:48:13.123456Z"]]"#;
        let postgres =
            r#"[[2,"outbound","reply","ok","sent","SM1",1,"STOP","2026-11-29T05:48:13.123456+00:00"]]"#;
        let a = messages_from_json(sqlite).unwrap();
        let b = messages_from_json(postgres).unwrap();
        assert_eq!(a[0].created_at, b[0].created_at);
        assert_eq!(b[0].direction, Direction::Outbound);
        assert_eq!(b[0].channel_message_id.as_deref(), Some("SM1"));
        assert_eq!(
            stored_time("2026-11-29 05:48:13").unwrap().to_rfc3339(),
            "2026-11-29T05:48:13+00:00"
        );
        assert!(
            messages_from_json(r#"[[3,"sideways","text","x","sent",null,0,null,"2026-11-29T05:48:13Z"]]"#)
                .is_err()
        );
        assert!(messages_from_json("[]").unwrap().is_empty());
    }
}
