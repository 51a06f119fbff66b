//! The conversation sent to the model (PROTOCOL.md §10 item 1): the session's stored messages in
//! order — `user` as user, `ai` as assistant, admin lines as user lines marked as coming from the
//! administrator — trimmed from the oldest end to the configured message and byte budgets. The
//! current message is always kept, even when it alone exceeds the byte budget.

use std::sync::Arc;

use super::llm::{ChatMessage, Role};
use super::store::StoredMessage;

/// Prefix of admin lines, so the model can tell them from the user's.
pub const ADMIN_PREFIX: &str = "[Administrator] ";

/// Builds the request messages from stored messages (oldest first, ending with the current one).
pub fn conversation(
    stored: &[Arc<StoredMessage>],
    max_messages: usize,
    max_bytes: usize,
) -> Vec<ChatMessage> {
    let mut picked: Vec<ChatMessage> = Vec::new();
    let mut bytes = 0usize;
    for msg in stored.iter().rev() {
        let Some(line) = to_chat(msg) else { continue };
        let size = line.content.len();
        let first = picked.is_empty();
        if !first && (picked.len() >= max_messages.max(1) || bytes + size > max_bytes) {
            break;
        }
        bytes += size;
        picked.push(line);
    }
    picked.reverse();
    // Providers expect the conversation to start with the user.
    while picked.len() > 1 && picked[0].role == Role::Assistant {
        picked.remove(0);
    }
    picked
}

/// Whether a stored message goes to the model: only messages with text (a file message has
/// none). The history read sizes its fetch with the same rule.
pub(crate) fn sent_to_model(msg: &StoredMessage) -> bool {
    !msg.content.is_empty()
}

fn to_chat(msg: &StoredMessage) -> Option<ChatMessage> {
    if !sent_to_model(msg) {
        return None;
    }
    let (role, content) = match msg.sender.as_str() {
        "ai" => (Role::Assistant, msg.content.clone()),
        "admin" => (Role::User, format!("{ADMIN_PREFIX}{}", msg.content)),
        _ => (Role::User, msg.content.clone()),
    };
    Some(ChatMessage { role, content, images: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatbox_core::protocol::Sender;
    use chatbox_core::UnixMillis;

    fn msg(sender: &str, content: &str) -> Arc<StoredMessage> {
        let sender = Sender::from_wire(sender).expect("a known sender");
        Arc::new(StoredMessage {
            id: content.to_string(),
            ..StoredMessage::new(content, UnixMillis(0), sender)
        })
    }

    #[test]
    fn maps_roles_in_order() {
        let stored =
            [msg("user", "hi"), msg("ai", "hello"), msg("admin", "I am here"), msg("user", "q")];
        let c = conversation(&stored, 50, 10_000);
        let roles: Vec<Role> = c.iter().map(|m| m.role).collect();
        assert_eq!(roles, vec![Role::User, Role::Assistant, Role::User, Role::User]);
        assert_eq!(c[2].content, "[Administrator] I am here");
        assert_eq!(c[3].content, "q");
    }

    #[test]
    fn trims_oldest_first_and_keeps_the_current_message() {
        let stored = [msg("user", "aaaa"), msg("ai", "bbbb"), msg("user", "cccc")];
        let c = conversation(&stored, 2, 10_000);
        assert_eq!(c.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), vec!["cccc"]);
        let c = conversation(&stored, 50, 8);
        assert_eq!(c.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), vec!["cccc"]);
        let huge = [msg("user", &"x".repeat(100))];
        assert_eq!(conversation(&huge, 50, 8).len(), 1);
    }
}
