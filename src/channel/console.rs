//! The terminal channel: `textdesk chat` types the customer's texts, and
//! every message is printed instead of sent (also `serve`'s stand-in when
//! no provider is configured).

use std::borrow::Cow;

use async_trait::async_trait;

use super::{ChannelPort, Content, SendError};
use crate::domain::phone::E164;
use crate::store::InboundMessage;

pub struct ConsoleChannel {
    /// Prefix for each printed text, e.g. the business name in `chat`.
    pub label: Option<String>,
}

impl ConsoleChannel {
    /// A line typed in `chat` as the message the store keeps: from the
    /// rehearsing "customer" to the business's number, under an id of its
    /// own so it never collides with a provider's.
    pub fn inbound(business_id: &str, from: &E164, to: &E164, line: String) -> InboundMessage {
        InboundMessage {
            business_id: business_id.to_string(),
            channel_message_id: format!("CHAT{}", uuid::Uuid::new_v4().simple()),
            from: from.clone(),
            to: to.clone(),
            body: line,
            media: Vec::new(),
            params: serde_json::json!({"Source": "textdesk chat"}),
            opt_out_keyword: None,
            profile_name: None,
        }
    }
}

/// What the terminal shows for a message. It has no templates: a template
/// is shown by its id and the variables WhatsApp would fill in.
fn printed(content: Content<'_>) -> Cow<'_, str> {
    match content {
        Content::Text(body) => Cow::Borrowed(body),
        Content::Template { id, variables } => Cow::Owned(format!("[template {id}] {variables}")),
    }
}

#[async_trait]
impl ChannelPort for ConsoleChannel {
    async fn send(&self, _from: &E164, to: &E164, content: Content<'_>) -> Result<String, SendError> {
        let body = printed(content);
        let sid = format!("CONSOLE{}", uuid::Uuid::new_v4().simple());
        match &self.label {
            Some(label) => println!("{label}: {body}\n"),
            None => {
                println!("--- SMS to {} ---\n{body}\n---", to.masked());
                tracing::info!(to = %to.masked(), %sid, "text printed to console (no provider configured)");
            }
        }
        Ok(sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_line_is_a_message_to_the_business_with_its_own_id() {
        let customer = E164::parse("+15035551234").unwrap();
        let business = E164::parse("+15035550142").unwrap();
        let first = ConsoleChannel::inbound("haul", &customer, &business, "hi".into());
        let second = ConsoleChannel::inbound("haul", &customer, &business, "hi".into());
        assert_eq!(first.business_id, "haul");
        assert_eq!(first.to, business);
        assert_eq!(first.body, "hi");
        assert!(first.channel_message_id.starts_with("CHAT"));
        assert_ne!(first.channel_message_id, second.channel_message_id);
    }

    #[test]
    fn templates_are_shown_as_what_would_be_delivered() {
        assert_eq!(printed(Content::Text("See you at 9")), "See you at 9");
        assert_eq!(
            printed(Content::Template {
                id: "HX1",
                variables: r#"{"1":"Haul"}"#
            }),
            r#"[template HX1] {"1":"Haul"}"#
        );
    }
}
