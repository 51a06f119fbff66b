//! The session name derived from the first user message (PROTOCOL.md §6.4), cut on character
//! boundaries instead of bytes (§10 item 26).
//!
//! Pure text in, text out; the table calls it from
//! [`SessionTable::name_if_empty`](super::SessionTable::name_if_empty).

/// Names longer than this many bytes are shortened.
pub const MAX_NAME_BYTES: usize = 50;

/// A shortened name keeps at most this many bytes before the `...` suffix.
pub const CUT_NAME_BYTES: usize = 47;

/// The name given to empty input.
pub const DEFAULT_NAME: &str = "New Chat";

/// The session name for a first message `content` (PROTOCOL.md §6.4, §10 item 26).
///
/// 1. Trim the content. If it contains a line break (CR or LF), take the part before the first
///    one; otherwise take everything up to and including the first `.`, `?` or `!`; otherwise
///    the whole text. Trim.
/// 2. If the result is longer than [`MAX_NAME_BYTES`] bytes: keep its longest prefix of at most
///    [`CUT_NAME_BYTES`] bytes that ends on a character boundary; if that piece contains a space
///    (U+0020) at a byte position > 0, cut at the last such space and trim; append `...`.
/// 3. An empty result gives [`DEFAULT_NAME`].
///
/// The result is never empty and never longer than 50 bytes, and it is always valid UTF-8
/// (no character is split).
pub fn session_name(content: &str) -> String {
    let text = content.trim();
    let first = match text.find(['\r', '\n']) {
        Some(line_end) => &text[..line_end],
        None => match text.find(['.', '?', '!']) {
            // The three terminators are one byte each, so `end + 1` is a char boundary.
            Some(end) => &text[..=end],
            None => text,
        },
    };
    let first = first.trim();
    if first.is_empty() {
        return DEFAULT_NAME.to_owned();
    }
    if first.len() <= MAX_NAME_BYTES {
        return first.to_owned();
    }
    let mut piece = &first[..floor_char_boundary(first, CUT_NAME_BYTES)];
    if let Some(space) = piece.rfind(' ').filter(|&at| at > 0) {
        piece = piece[..space].trim();
    }
    let mut name = String::with_capacity(piece.len() + 3);
    name.push_str(piece);
    name.push_str("...");
    name
}

/// The largest `i <= max` such that `s[..i]` ends on a character boundary.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    // A UTF-8 character is at most 4 bytes, so this loop runs at most 3 times; index 0 is
    // always a boundary, so it terminates.
    (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_wins_over_sentence_end() {
        assert_eq!(session_name("Hello there. More\nsecond line"), "Hello there. More");
        assert_eq!(session_name("one\r\ntwo"), "one");
        assert_eq!(session_name("  padded line  \n next"), "padded line");
    }

    #[test]
    fn first_sentence_includes_its_terminator() {
        assert_eq!(session_name("How are you? I am fine."), "How are you?");
        assert_eq!(session_name("Stop! Now."), "Stop!");
        assert_eq!(session_name("Version 1.2 is out"), "Version 1.");
    }

    #[test]
    fn whole_text_when_no_break_or_terminator() {
        assert_eq!(session_name("  just words  "), "just words");
    }

    #[test]
    fn empty_gives_default() {
        assert_eq!(session_name(""), DEFAULT_NAME);
        assert_eq!(session_name("   \n  "), DEFAULT_NAME);
        assert_eq!(session_name("\u{3000}"), DEFAULT_NAME);
    }

    #[test]
    fn exactly_fifty_bytes_is_kept() {
        let text = "a".repeat(50);
        assert_eq!(session_name(&text), text);
    }

    #[test]
    fn long_text_cut_at_last_space() {
        let text = "The quick brown fox jumps over the lazy dog and keeps running far away";
        let name = session_name(text);
        // First 47 bytes: "The quick brown fox jumps over the lazy dog and"; last space at 43.
        assert_eq!(name, "The quick brown fox jumps over the lazy dog...");
        assert!(name.len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn long_text_without_space_cut_at_47_bytes() {
        let text = "x".repeat(60);
        assert_eq!(session_name(&text), format!("{}...", "x".repeat(47)));
    }

    #[test]
    fn space_beyond_the_cut_is_ignored() {
        // The only space sits after byte 47, so the piece has none and is kept whole.
        let text = format!("{} tail", "y".repeat(55));
        assert_eq!(session_name(&text), format!("{}...", "y".repeat(47)));
    }

    #[test]
    fn cjk_is_cut_on_a_char_boundary() {
        // Each CJK character is 3 bytes: 20 of them = 60 bytes, 15 = 45 bytes, 16 = 48 > 47.
        let text = "漢".repeat(20);
        let name = session_name(&text);
        assert_eq!(name, format!("{}...", "漢".repeat(15)));
        assert_eq!(name.len(), 48);
    }

    #[test]
    fn emoji_is_cut_on_a_char_boundary() {
        // "ab" then 4-byte emoji: 2 + 11*4 = 46 bytes fit, the 12th would end at 50 > 47.
        let text = format!("ab{}", "😀".repeat(20));
        let name = session_name(&text);
        assert_eq!(name, format!("ab{}...", "😀".repeat(11)));
        assert!(name.len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn multibyte_at_the_cut_with_an_earlier_space() {
        // 45 ASCII bytes with a space, then a 4-byte emoji straddling byte 47.
        let text = format!("{} {}😀😀", "a".repeat(20), "b".repeat(24));
        let name = session_name(&text);
        assert_eq!(name, format!("{}...", "a".repeat(20)));
    }

    #[test]
    fn cut_then_trim_drops_whitespace_before_the_space() {
        let text = format!("{}\t {}", "c".repeat(10), "d".repeat(60));
        assert_eq!(session_name(&text), format!("{}...", "c".repeat(10)));
    }

    #[test]
    fn names_are_bounded_for_any_mix() {
        for text in ["é".repeat(40), "👩‍👩‍👧".repeat(10), format!("a{}", "ß".repeat(30))]
        {
            let name = session_name(&text);
            assert!(name.len() <= MAX_NAME_BYTES, "{name:?}");
            assert!(!name.is_empty());
        }
    }
}
