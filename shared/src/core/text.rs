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
