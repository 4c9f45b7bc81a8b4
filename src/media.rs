//! Media a customer sends (MMS photos now; any channel whose provider hosts
//! the files behind the account's credentials): which files are fetched, and
//! the bounded fetch itself.
//!
//! A media URL comes from a webhook, so in effect from whoever can make
//! Twilio deliver a message: only URLs under the provider's API base are
//! ever requested, the size limit holds whatever the server claims, and the
//! redirect to the provider's CDN is followed a bounded number of times.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::store::{InboundMedia, MediaStatus};

/// At most this many files of one message are recorded (Twilio's own limit).
pub const MAX_MEDIA_PER_MESSAGE: usize = 10;

/// A file is read up to this many bytes and no further.
pub const MAX_MEDIA_BYTES: usize = 5 * 1024 * 1024;

/// Twilio answers a media URL with a redirect to its CDN; one or two hops
/// is normal, more is not.
pub const MAX_REDIRECTS: usize = 3;

/// The image types the Messages API accepts as image blocks.
pub const MODEL_IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// The bare media type of a `Content-Type` value, lowercased.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

pub fn is_image(content_type: &str) -> bool {
    media_type(content_type).starts_with("image/")
}

/// Whether `url` is under `base`: same scheme, host and port, and a path
/// that continues the base's path at a segment boundary. A prefix test on
/// the text would admit `https://api.twilio.com.example.net/`.
pub fn is_under(url: &str, base: &Url) -> bool {
    let Ok(url) = Url::parse(url) else {
        return false;
    };
    if url.scheme() != base.scheme()
        || url.host_str() != base.host_str()
        || url.port_or_known_default() != base.port_or_known_default()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    let base_path = base.path().trim_end_matches('/');
    url.path()
        .strip_prefix(base_path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What becomes of one file a webhook named.
pub fn plan(url: &str, content_type: &str, api_base: &Url) -> InboundMedia {
    let status = if !is_image(content_type) {
        MediaStatus::NotFetched
    } else if !is_under(url, api_base) {
        MediaStatus::Refused
    } else {
        MediaStatus::Pending
    };
    InboundMedia {
        url: url.to_string(),
        content_type: media_type(content_type),
        status,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// More than [`MAX_MEDIA_BYTES`]: stopped, never retried.
    #[error("the file is larger than {MAX_MEDIA_BYTES} bytes")]
    TooLarge,
    /// Not under the provider's API base: never requested.
    #[error("the URL is not the provider's")]
    Refused,
    /// The provider refused for good (404, 401, ...).
    #[error("media refused: {0}")]
    Rejected(String),
    /// Down, throttled, cut off: worth another attempt.
    #[error("media unavailable: {0}")]
    Unavailable(String),
}

/// Fetches media files with the account's credentials (HTTP Basic auth).
pub struct MediaFetcher {
    http: reqwest::Client,
    api_base: Url,
    account_sid: String,
    auth_token: SecretString,
}

impl MediaFetcher {
    pub fn new(api_base: Url, account_sid: String, auth_token: SecretString, timeout: Duration) -> Self {
        // reqwest drops the Authorization header when a redirect leaves the
        // host, so the CDN (which signs its own URLs) never sees the token.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            http,
            api_base,
            account_sid,
            auth_token,
        }
    }

    pub fn api_base(&self) -> &Url {
        &self.api_base
    }

    /// The file's bytes, at most [`MAX_MEDIA_BYTES`] of them.
    pub async fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        if !is_under(url, &self.api_base) {
            return Err(FetchError::Refused);
        }
        let mut response = self
            .http
            .get(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .send()
            .await
            .map_err(|e| {
                // A redirect loop does not heal by itself; a timeout may.
                if e.is_redirect() {
                    FetchError::Rejected(format!("more than {MAX_REDIRECTS} redirects"))
                } else {
                    FetchError::Unavailable(e.without_url().to_string())
                }
            })?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(FetchError::Unavailable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(FetchError::Rejected(format!("HTTP {status}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_MEDIA_BYTES as u64)
        {
            return Err(FetchError::TooLarge);
        }
        // The declared length may be absent or false: count what arrives.
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Unavailable(e.without_url().to_string()))?
        {
            if bytes.len() + chunk.len() > MAX_MEDIA_BYTES {
                return Err(FetchError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_urls_under_the_api_base_are_fetched() {
        let base = Url::parse("https://api.twilio.com").unwrap();
        let ok = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1";
        assert!(is_under(ok, &base));
        for bad in [
            "https://api.twilio.com.evil.example/2010-04-01/Media/ME1",
            "http://api.twilio.com/2010-04-01/Media/ME1",
            "https://api.twilio.com:8443/2010-04-01/Media/ME1",
            "https://user@api.twilio.com/2010-04-01/Media/ME1",
            "https://evil.example/?https://api.twilio.com/",
            "https://169.254.169.254/latest/meta-data/",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!is_under(bad, &base), "{bad}");
        }
        let with_path = Url::parse("http://127.0.0.1:4000/twilio/").unwrap();
        assert!(is_under("http://127.0.0.1:4000/twilio/Media/1", &with_path));
        assert!(!is_under("http://127.0.0.1:4000/twilio-evil/Media/1", &with_path));
    }

    #[test]
    fn images_are_fetched_other_types_recorded_foreign_urls_refused() {
        let base = Url::parse("https://api.twilio.com").unwrap();
        let url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1";
        assert_eq!(plan(url, "image/jpeg", &base).status, MediaStatus::Pending);
        assert_eq!(plan(url, "Image/PNG; x=y", &base).content_type, "image/png");
        assert_eq!(plan(url, "video/mp4", &base).status, MediaStatus::NotFetched);
        assert_eq!(
            plan("https://evil.example/a.jpg", "image/jpeg", &base).status,
            MediaStatus::Refused
        );
    }
}
