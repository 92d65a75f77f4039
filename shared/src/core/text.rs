//! Text cut to a byte budget without splitting a UTF-8 character.

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Most characters of an input an error message shows back.
const SHOWN_CHARS: usize = 64;

/// `text` as an error message shows it: quoted, cut to its first [`SHOWN_CHARS`] characters
/// and saying how long it was (a 200 KB parameter is not echoed back whole).
pub(crate) fn shown(text: &str) -> String {
    match first_chars(text, SHOWN_CHARS) {
        Some(start) => format!("{start:?}… ({} characters)", text.chars().count()),
        None => format!("{text:?}"),
    }
}

/// `text` cut to its first `max` characters, saying how long it was; whole when it fits.
pub(crate) fn cut(text: &str, max: usize) -> String {
    match first_chars(text, max) {
        Some(start) => format!("{start}… ({} characters)", text.chars().count()),
        None => text.to_string(),
    }
}

/// The first `max` characters of `text`, when it has more.
fn first_chars(text: &str, max: usize) -> Option<&str> {
    text.char_indices().nth(max).map(|(at, _)| &text[..at])
}

/// `bytes` in MiB (or KiB below one MiB), for messages about limits.
pub(crate) fn mib(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(truncate_utf8("short", 4096), "short");
        assert_eq!(truncate_utf8("版本", 4), "版");
        assert_eq!(truncate_utf8("版本", 6), "版本");
        assert_eq!(truncate_utf8("版本", 2), "");
    }
}
