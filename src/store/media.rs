//! The media port: customers' photos and other files.

use async_trait::async_trait;

use super::{ConversationId, MessageId, StoreError};

/// The job kind that fetches one pending media file (payload: `media_id`).
/// Enqueued by `record_inbound` in the text's own transaction.
pub const FETCH_MEDIA: &str = "fetch_media";

/// Attempts a media fetch gets before it is given up (and the owner told).
pub const FETCH_MEDIA_ATTEMPTS: u32 = 5;

/// One file attached to an inbound message, and what is to be done with it
/// (decided at the edge, where the provider's base URL is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMedia {
    pub url: String,
    pub content_type: String,
    pub status: MediaStatus,
}

/// Where a media file stands. Only `Pending` files are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStatus {
    /// An image waiting for its `fetch_media` job.
    Pending,
    Fetched,
    /// Stopped at the size limit: never retried.
    TooLarge,
    /// Every attempt failed.
    Failed,
    /// Not an image: recorded, never fetched.
    NotFetched,
    /// The URL is not the provider's: recorded, never fetched.
    Refused,
}

impl MediaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaStatus::Pending => "pending",
            MediaStatus::Fetched => "fetched",
            MediaStatus::TooLarge => "too_large",
            MediaStatus::Failed => "failed",
            MediaStatus::NotFetched => "not_fetched",
            MediaStatus::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => MediaStatus::Pending,
            "fetched" => MediaStatus::Fetched,
            "too_large" => MediaStatus::TooLarge,
            "failed" => MediaStatus::Failed,
            "not_fetched" => MediaStatus::NotFetched,
            "refused" => MediaStatus::Refused,
            _ => return None,
        })
    }
}

/// A stored media file, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaItem {
    pub id: i64,
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub position: i64,
    pub url: String,
    pub content_type: String,
    pub status: MediaStatus,
    pub size: Option<i64>,
    pub last_error: Option<String>,
}

/// How a fetch ended, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaFetch {
    Fetched(Vec<u8>),
    TooLarge,
    Refused,
    Failed(String),
}

/// An image of a conversation: in a turn's history (for the model) or
/// attached to an email. `data` is absent while the image is not fetched,
/// or when it was left out to bound the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub message_id: MessageId,
    pub position: i64,
    pub content_type: String,
    pub status: MediaStatus,
    pub data: Option<Vec<u8>>,
}

/// Customers' photos and other files: what to fetch, what came of it, and
/// the images a turn or an email carries.
#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    /// Every media file of a message, in the order the channel listed them.
    async fn message_media(&self, id: MessageId) -> Result<Vec<MediaItem>, StoreError>;

    async fn media_item(&self, id: i64) -> Result<Option<MediaItem>, StoreError>;

    /// Records how a fetch ended; a file no longer pending is left as it is,
    /// so a rerun job cannot overwrite a result.
    async fn record_media_fetch(&self, id: i64, fetch: &MediaFetch) -> Result<(), StoreError>;

    /// The conversation's fetched images with their bytes, and those still
    /// pending without, oldest first; at most `limit` (the newest ones).
    async fn conversation_photos(
        &self,
        id: ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredImage>, StoreError>;
}
