//! Python string semantics the reference libraries rely on.
//!
//! Python's `str.isspace()` (and so `str.split()`, `str.strip()` and the
//! regex `\s`) is Unicode `White_Space` plus the four information
//! separators U+001C–U+001F, which Rust's `char::is_whitespace` leaves out.

/// Python's `str.isspace()` for one character.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` (no argument): runs of whitespace separate, no
/// empty pieces.
pub fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|p| !p.is_empty())
}

/// Python's `str.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Python's `str.rstrip()`.
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

/// `re.sub(r"\s\s+", " ", s)`: every run of two or more whitespace
/// characters becomes one space; a single whitespace character is kept as is.
pub fn collapse_multiple_spaces(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if is_space(chars[i]) {
            let mut j = i;
            while j < chars.len() && is_space(chars[j]) {
                j += 1;
            }
            if j - i >= 2 {
                out.push(' ');
            } else {
                out.push(chars[i]);
            }
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace() {
        assert!(is_space('\u{1c}') && is_space('\u{a0}') && !is_space('\u{200b}'));
        assert_eq!(
            split_whitespace(" a\u{1f}b  c ").collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(collapse_multiple_spaces("a  b\tc \t d"), "a b\tc d");
    }
}
