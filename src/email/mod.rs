//! Email to providers and the owner: SES v2, or `.eml` files in an outbox
//! folder when SES is not configured.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageHeader, RawMessage};
use chrono::{DateTime, Utc};

use crate::clock::Clock;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Email {
    pub to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// When the email was written: its `Date:`. Emails queued before this
    /// field existed have none and are dated when sent.
    #[serde(default)]
    pub date: Option<DateTime<Utc>>,
    /// Attach the conversation's photos when sent (the crew's booking
    /// email, the owner's hand-off). The job stores this flag, not the
    /// bytes: photos fetched after the job was planned still go along.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attach_photos: bool,
    /// Filled by the job runner just before sending.
    #[serde(skip)]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

impl Attachment {
    /// `photo-1.jpg` and so on, numbered from 1 in the order sent.
    pub fn photo(number: usize, content_type: &str, data: Vec<u8>) -> Self {
        let extension = match content_type {
            "image/jpeg" => "jpg",
            "image/png" => "png",
            "image/gif" => "gif",
            "image/webp" => "webp",
            "image/heic" => "heic",
            _ => "bin",
        };
        Self {
            filename: format!("photo-{number}.{extension}"),
            content_type: content_type.to_string(),
            data,
        }
    }
}

/// The header that names an email by its job's key: the `.eml` file's
/// `Message-ID`, and a header of its own on SES (which sets `Message-ID`
/// and `Date` itself), so a copy in any mailbox traces back to its job.
pub const ID_HEADER: &str = "X-Textdesk-Id";

/// A job's key as it appears in file names and message ids.
fn key_id(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A `Message-ID` for the job's key, on the sender's own domain.
pub fn message_id(key: &str, from: &str) -> String {
    let domain = from
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').trim())
        .filter(|d| {
            !d.is_empty()
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        })
        .unwrap_or("textdesk.local");
    format!("<{}@{domain}>", key_id(key))
}

/// A header value on one line; non-ASCII text as an RFC 2047 encoded word.
fn header_value(value: &str) -> String {
    let one_line: String = value
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    if one_line.is_ascii() {
        one_line
    } else {
        use base64::Engine;
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(one_line.as_bytes())
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmailError {
    /// Throttled, down, unreachable: worth retrying.
    #[error("email service unavailable: {0}")]
    Unavailable(String),
    /// Refused for good (bad address, unverified sender).
    #[error("email refused: {0}")]
    Rejected(String),
    /// The request went out but no answer came back: it may have been sent.
    #[error("no answer from the email service, it may have been sent: {0}")]
    Unknown(String),
}

#[async_trait]
pub trait EmailSender: Send + Sync + 'static {
    /// Sends one email, named by `key` (the job's dedupe key); returns the
    /// provider's message id.
    async fn send(&self, key: &str, email: &Email) -> Result<String, EmailError>;

    /// Whether sending the same key twice sends it once.
    fn idempotent(&self) -> bool {
        false
    }
}

pub struct SesEmail {
    client: aws_sdk_sesv2::Client,
    from: String,
    /// Dates an email that carries no date of its own.
    clock: Arc<dyn Clock>,
}

impl SesEmail {
    /// Credentials from the standard AWS chain, `AWS_REGION`, and
    /// `AWS_ENDPOINT_URL` when set (tests, local stand-ins).
    pub async fn from_env(from: String) -> Self {
        let config = aws_config::load_from_env().await;
        Self::new(aws_sdk_sesv2::Client::new(&config), from)
    }

    pub fn new(client: aws_sdk_sesv2::Client, from: String) -> Self {
        Self {
            client,
            from,
            clock: crate::clock::system(),
        }
    }

    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }
}

fn content(data: &str) -> Result<Content, EmailError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| EmailError::Rejected(e.to_string()))
}

#[async_trait]
impl EmailSender for SesEmail {
    #[tracing::instrument(name = "ses_send", skip_all, fields(recipients = email.to.len()))]
    async fn send(&self, key: &str, email: &Email) -> Result<String, EmailError> {
        let content = if email.attachments.is_empty() {
            EmailContent::builder().simple(self.simple(key, email)?).build()
        } else {
            // Attachments need raw MIME; it carries our headers itself.
            let raw = eml(
                &self.from,
                key,
                email,
                email.date.unwrap_or_else(|| self.clock.now()),
            );
            EmailContent::builder()
                .raw(
                    RawMessage::builder()
                        .data(aws_sdk_sesv2::primitives::Blob::new(raw.into_bytes()))
                        .build()
                        .map_err(|e| EmailError::Rejected(e.to_string()))?,
                )
                .build()
        };
        let result = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(email.to.clone()))
                    .build(),
            )
            .content(content)
            .send()
            .await;
        self.outcome(result)
    }
}

impl SesEmail {
    fn simple(&self, key: &str, email: &Email) -> Result<Message, EmailError> {
        Ok(Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .html(content(&email.html)?)
                    .text(content(&email.text)?)
                    .build(),
            )
            .headers(
                MessageHeader::builder()
                    .name(ID_HEADER)
                    .value(message_id(key, &self.from))
                    .build()
                    .map_err(|e| EmailError::Rejected(e.to_string()))?,
            )
            .build())
    }

    fn outcome(
        &self,
        result: Result<
            aws_sdk_sesv2::operation::send_email::SendEmailOutput,
            aws_sdk_sesv2::error::SdkError<aws_sdk_sesv2::operation::send_email::SendEmailError>,
        >,
    ) -> Result<String, EmailError> {
        match result {
            Ok(out) => Ok(out.message_id().unwrap_or_default().to_string()),
            Err(e @ aws_sdk_sesv2::error::SdkError::TimeoutError(_)) => Err(EmailError::Unknown(
                aws_sdk_sesv2::error::DisplayErrorContext(&e).to_string(),
            )),
            Err(e) => {
                use aws_sdk_sesv2::error::ProvideErrorMetadata;
                let service = e.as_service_error();
                let code = service.and_then(|s| s.code()).unwrap_or("").to_string();
                let message = aws_sdk_sesv2::error::DisplayErrorContext(&e).to_string();
                let retryable = service.is_none()
                    || matches!(
                        code.as_str(),
                        "TooManyRequestsException"
                            | "LimitExceededException"
                            | "InternalFailure"
                            | "ServiceUnavailable"
                            | "Throttling"
                    );
                if retryable {
                    Err(EmailError::Unavailable(message))
                } else {
                    Err(EmailError::Rejected(message))
                }
            }
        }
    }
}

/// The embedded default: each email becomes a `.eml` file in a folder.
pub struct OutboxEmail {
    pub dir: PathBuf,
    pub from: String,
    /// Dates an email that carries no date of its own.
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl EmailSender for OutboxEmail {
    async fn send(&self, key: &str, email: &Email) -> Result<String, EmailError> {
        // The file is named by the job's key: writing it twice is a no-op.
        let id = key_id(key);
        let eml = eml(
            &self.from,
            key,
            email,
            email.date.unwrap_or_else(|| self.clock.now()),
        );
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| EmailError::Unavailable(format!("outbox {}: {e}", self.dir.display())))?;
        let path = self.dir.join(format!("{id}.eml"));
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(id);
        }
        // Written whole under a temporary name, then linked into place: a
        // reader (or a crash) never sees half an email, and linking fails
        // if the name exists, so writing it twice is still a no-op.
        let unavailable =
            |e: std::io::Error| EmailError::Unavailable(format!("outbox {}: {e}", path.display()));
        let partial = self
            .dir
            .join(format!(".{id}.{}.partial", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&partial, eml.as_bytes())
            .await
            .map_err(unavailable)?;
        let linked = tokio::fs::hard_link(&partial, &path).await;
        let _ = tokio::fs::remove_file(&partial).await;
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(id),
            Err(e) => return Err(unavailable(e)),
        }
        tracing::info!(path = %path.display(), "email written to the outbox (SES not configured)");
        Ok(id)
    }

    fn idempotent(&self) -> bool {
        true
    }
}

/// An email as an RFC 5322 message: multipart/alternative, text then HTML;
/// with attachments, that inside a multipart/mixed with the files after it.
fn eml(from: &str, key: &str, email: &Email, date: DateTime<Utc>) -> String {
    let plain = alternative_eml(from, key, email, date);
    if email.attachments.is_empty() {
        return plain;
    }
    // The headers stay on top; the alternative part moves inside.
    let (headers, body) = plain.split_once("\r\n\r\n").unwrap_or((&plain, ""));
    let (headers, alternative_type) = headers
        .rsplit_once("\r\nContent-Type: ")
        .unwrap_or((headers, "text/plain"));
    let mixed = format!("textdesk-mixed-{}", key_id(key));
    let mut out = format!(
        "{headers}\r\nContent-Type: multipart/mixed; boundary=\"{mixed}\"\r\n\r\n\
         --{mixed}\r\nContent-Type: {alternative_type}\r\n\r\n{body}"
    );
    for attachment in &email.attachments {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&attachment.data);
        let filename = header_value(&attachment.filename).replace('"', "");
        out.push_str(&format!(
            "--{mixed}\r\nContent-Type: {content_type}; name=\"{filename}\"\r\n\
             Content-Disposition: attachment; filename=\"{filename}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n",
            content_type = header_value(&attachment.content_type),
        ));
        // RFC 2045: encoded lines of at most 76 characters.
        for line in encoded.as_bytes().chunks(76) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("--{mixed}--\r\n"));
    out
}

fn alternative_eml(from: &str, key: &str, email: &Email, date: DateTime<Utc>) -> String {
    let boundary = format!("textdesk-{}", key_id(key));
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: {id}\r\n\
         {ID_HEADER}: {id}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n\
         --{boundary}\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n--{boundary}--\r\n",
        from = header_value(from),
        to = header_value(&email.to.join(", ")),
        subject = header_value(&email.subject),
        date = date.to_rfc2822(),
        id = message_id(key, from),
        text = email.text,
        html = email.html,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_on_the_senders_domain() {
        assert_eq!(
            message_id("email:td1:New booking:1", "desk@rosecityjunk.example"),
            "<email_td1_New_booking_1@rosecityjunk.example>"
        );
        assert_eq!(
            message_id("k", "Rose City <desk@rosecityjunk.example>"),
            "<k@rosecityjunk.example>"
        );
        assert_eq!(message_id("k", "nobody"), "<k@textdesk.local>");
    }

    #[test]
    fn headers_stay_on_one_line_and_ascii() {
        assert_eq!(header_value("a\r\nBcc: x@y"), "a  Bcc: x@y");
        assert_eq!(header_value("Café"), "=?UTF-8?B?Q2Fmw6k=?=");
    }
}
