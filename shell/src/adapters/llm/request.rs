//! What the providers read from a [`ChatRequest`] beyond its whole conversation: the current
//! user text, which Dify sends as its `query` and the echo and simulated providers stream back.
//! Pure, so it is compiled under madsim too (the simulator's provider uses it).

use crate::engine::llm::{ChatRequest, Role};

/// The text of the request's last user line (the message being answered), if it has one.
pub fn last_user_text(request: &ChatRequest) -> Option<&str> {
    request.messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::llm::ChatMessage;

    fn line(role: Role, content: &str) -> ChatMessage {
        ChatMessage { role, content: content.to_owned(), images: Vec::new() }
    }

    #[test]
    fn the_last_user_line_wins_over_later_assistant_lines() {
        let request = ChatRequest {
            messages: vec![
                line(Role::User, "first"),
                line(Role::Assistant, "reply"),
                line(Role::User, "second"),
                line(Role::Assistant, "late"),
            ],
            user_key: "k".into(),
            conversation_id: None,
        };
        assert_eq!(last_user_text(&request), Some("second"));
    }

    #[test]
    fn a_request_without_a_user_line_has_none() {
        let request = ChatRequest {
            messages: vec![line(Role::System, "be brief"), line(Role::Assistant, "hi")],
            user_key: "k".into(),
            conversation_id: None,
        };
        assert_eq!(last_user_text(&request), None);
    }
}
