//! The caption tokenisation of pycocoevalcap's `PTBTokenizer`, in Rust.
//!
//! pycocoevalcap runs Stanford CoreNLP 3.4.1's `PTBTokenizer` (Java) with
//! `-preserveLines -lowerCase` and then drops the punctuation tokens
//! `'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;` (compared after
//! lower-casing, so the lower-cased brackets `-lrb-` … stay, as they do in
//! pycocoevalcap). Mosaic does not run Java: this module reproduces the
//! lexer rules that matter for captions:
//!
//! * whitespace separates; SGML tags `<tag ...>` are one token (inner spaces
//!   become U+00A0, as CoreNLP writes them);
//! * words are runs of letters, digits and combining marks, joined across
//!   `-`, `/` and `&` between word characters, `.`, `,` and `:` between
//!   digits, `.` in letter-dot acronyms (`a.m.`, `U.S.`) and host names
//!   (`www.asterisk.org`), `'` inside words
//!   (`o'clock`); `#` and `@` prefixes stay on the word;
//! * a capital letter with a period (`Z.`, `H.` in `H.323`) and the common
//!   abbreviations (`Mr.`, `Dr.`, `St.`, `etc.`, `vs.`, ...) keep their
//!   period;
//! * clitics split off: `n't` (`can't` → `ca n't`), `'s 're 've 'll 'd 'm`,
//!   a final `'`, `cannot gonna gotta wanna gimme lemme 'tis 'twas`, `'n'`;
//! * brackets become `-LRB- -RRB- -LSB- -RSB- -LCB- -RCB-`; straight and
//!   curly quotes become `` `` '' ` ' ``; `—`/`–` become `--`, `…` and runs
//!   of periods `...`; runs of `!`/`?` are one token; `$ % + * = | < >` and
//!   the other ASCII symbols are tokens of their own;
//! * characters no rule matches (emoji, other symbols) are deleted, as
//!   CoreNLP's default `untokenizable=firstDelete` does.
//!
//! Checked against the Java tokenizer on 655 real sentences and captions
//! (`tests/parity.rs`): identical on all but one (`equals [=]`, where
//! CoreNLP keeps `=]` together).

/// The tokens pycocoevalcap removes after tokenizing.
pub const PUNCTUATIONS: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

const ABBREVIATIONS: [&str; 44] = [
    "Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Jr", "Sr", "Inc", "Co", "Corp", "Ltd", "vs", "etc",
    "Mt", "Ave", "Gen", "Gov", "Sen", "Rep", "Capt", "Lt", "Col", "Sgt", "Jan", "Feb", "Mar",
    "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec", "Rev", "Hon", "Messrs", "Mmes",
    "Bros", "Ft", "Blvd", "Rd",
];

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_mark(c)
}

fn is_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

fn is_space(c: char) -> bool {
    crate::text::py::is_space(c)
}

/// Tokenizes one line as CoreNLP's PTBTokenizer would (no lower-casing, no
/// punctuation removal).
pub fn ptb_tokens(line: &str) -> Vec<String> {
    let s: Vec<char> = line.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if is_space(c) {
            i += 1;
            continue;
        }
        // SGML tag.
        if c == '<' {
            if let Some(end) = sgml_end(&s, i) {
                let tag: String = s[i..=end]
                    .iter()
                    .map(|&ch| if is_space(ch) { '\u{a0}' } else { ch })
                    .collect();
                out.push(tag);
                i = end + 1;
                continue;
            }
        }
        // Capital initial with a period: "Z." / "H." (in "H.323").
        if c.is_ascii_uppercase()
            && s.get(i + 1) == Some(&'.')
            && !s.get(i + 2).is_some_and(|&n| n.is_alphabetic())
            && (i == 0 || !is_word_char(s[i - 1]))
        {
            out.push(format!("{c}."));
            i += 2;
            continue;
        }
        if is_word_char(c)
            || ((c == '#' || c == '@') && s.get(i + 1).is_some_and(|&n| is_word_char(n)))
            || (c == '\'' && starts_clitic_word(&s, i))
        {
            let end = word_end(&s, i);
            let word: String = s[i..end].iter().collect();
            let mut j = end;
            // A trailing period that belongs to the word.
            let mut w = word;
            if s.get(j) == Some(&'.')
                && s.get(j + 1).is_none_or(|&n| n != '.')
                && (is_acronym(&w) || ABBREVIATIONS.contains(&w.as_str()))
            {
                w.push('.');
                j += 1;
            }
            split_clitics(&w, &mut out);
            i = j;
            continue;
        }
        // Punctuation and symbols.
        match c {
            '.' => {
                let mut j = i;
                while j < s.len() && s[j] == '.' {
                    j += 1;
                }
                out.push(if j - i >= 2 { "...".into() } else { ".".into() });
                i = j;
            }
            '!' | '?' => {
                let mut j = i;
                while j < s.len() && (s[j] == '!' || s[j] == '?') {
                    j += 1;
                }
                out.push(s[i..j].iter().collect());
                i = j;
            }
            '-' | '—' | '–' => {
                let mut j = i;
                while j < s.len() && (s[j] == '-' || s[j] == '—' || s[j] == '–') {
                    j += 1;
                }
                let run: String = s[i..j].iter().collect();
                out.push(if run == "-" { "-".into() } else { "--".into() });
                i = j;
            }
            '…' => {
                out.push("...".into());
                i += 1;
            }
            '(' => push(&mut out, &mut i, "-LRB-"),
            ')' => push(&mut out, &mut i, "-RRB-"),
            '[' => push(&mut out, &mut i, "-LSB-"),
            ']' => push(&mut out, &mut i, "-RSB-"),
            '{' => push(&mut out, &mut i, "-LCB-"),
            '}' => push(&mut out, &mut i, "-RCB-"),
            '"' => {
                let open = i == 0 || is_space(s[i - 1]) || "([{".contains(s[i - 1]);
                push(&mut out, &mut i, if open { "``" } else { "''" });
            }
            '“' => push(&mut out, &mut i, "``"),
            '”' => push(&mut out, &mut i, "''"),
            '‘' => push(&mut out, &mut i, "`"),
            '’' => push(&mut out, &mut i, "'"),
            '\'' => {
                if s.get(i + 1) == Some(&'\'') {
                    out.push("''".into());
                    i += 2;
                } else {
                    let open = i == 0 || is_space(s[i - 1]);
                    push(&mut out, &mut i, if open { "`" } else { "'" });
                }
            }
            '`' => {
                if s.get(i + 1) == Some(&'`') {
                    out.push("``".into());
                    i += 2;
                } else {
                    push(&mut out, &mut i, "`");
                }
            }
            c if c.is_ascii_punctuation() => {
                out.push(c.to_string());
                i += 1;
            }
            // Untokenizable: deleted.
            _ => i += 1,
        }
    }
    out
}

fn push(out: &mut Vec<String>, i: &mut usize, t: &str) {
    out.push(t.to_string());
    *i += 1;
}

/// `<` `/`? letter ... `>` on one line, with no `<` inside.
fn sgml_end(s: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if s.get(j) == Some(&'/') {
        j += 1;
    }
    if !s.get(j).is_some_and(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    while j < s.len() {
        match s[j] {
            '>' => return Some(j),
            '<' | '\n' => return None,
            _ => j += 1,
        }
    }
    None
}

/// `'tis`, `'twas`, `'n'` and `'s`-like words that start with an apostrophe.
fn starts_clitic_word(s: &[char], i: usize) -> bool {
    let rest: String = s[i..].iter().take(6).collect::<String>().to_lowercase();
    (rest.starts_with("'tis") || rest.starts_with("'twas"))
        && !s
            .get(i + if rest.starts_with("'tis") { 4 } else { 5 })
            .is_some_and(|&c| is_word_char(c))
}

/// The end (exclusive) of the word starting at `i`.
fn word_end(s: &[char], i: usize) -> usize {
    let mut j = i + 1;
    while j < s.len() {
        let c = s[j];
        if is_word_char(c) {
            j += 1;
            continue;
        }
        let prev = s[j - 1];
        let next = s.get(j + 1).copied();
        let next_word = next.is_some_and(is_word_char);
        let ok = match c {
            '-' | '/' | '&' => is_word_char(prev) && next_word,
            '.' | ',' | ':' => {
                (prev.is_ascii_digit() && next.is_some_and(|n| n.is_ascii_digit()))
                    || (c == '.' && prev.is_alphanumeric() && next_word && is_host(s, i, j))
                    || (c == '.'
                        && prev.is_alphabetic()
                        && next.is_some_and(|n| n.is_alphabetic())
                        && acronym_continues(s, j))
            }
            '\'' => prev.is_alphabetic() && next.is_some_and(|n| n.is_alphabetic()),
            _ => false,
        };
        if ok {
            j += 1;
        } else {
            break;
        }
    }
    j
}

/// At a `.` inside `s[start..]`: the word is a host name (`www.x.org`,
/// `example.com`), which CoreNLP keeps whole.
fn is_host(s: &[char], start: usize, dot: usize) -> bool {
    let head: String = s[start..dot].iter().collect::<String>().to_lowercase();
    if head == "www" || head.starts_with("www.") {
        return true;
    }
    let tail: String = s[dot + 1..]
        .iter()
        .take_while(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    matches!(tail.as_str(), "com" | "org" | "net" | "edu" | "gov")
}

/// At a `.` between letters: part of a letter-dot acronym (`a.m`, `U.S`)
/// when the letters on both sides are single letters.
fn acronym_continues(s: &[char], dot: usize) -> bool {
    let single_before = dot >= 1 && (dot < 2 || !s[dot - 2].is_alphanumeric());
    let single_after = !s.get(dot + 2).is_some_and(|c| c.is_alphanumeric());
    single_before && single_after
}

/// `a.m`, `U.S`, `e.g` (single letters joined by periods).
fn is_acronym(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| p.chars().count() == 1 && p.chars().all(char::is_alphabetic))
}

fn split_clitics(w: &str, out: &mut Vec<String>) {
    let lower = w.to_lowercase();
    if lower.len() != w.len() {
        // Byte offsets below assume lower-casing kept the length.
        out.push(w.to_string());
        return;
    }
    let specials: [(&str, usize); 6] = [
        ("cannot", 3),
        ("gonna", 3),
        ("gotta", 3),
        ("wanna", 3),
        ("gimme", 3),
        ("lemme", 3),
    ];
    for (word, at) in specials {
        if lower == word {
            out.push(w[..at].to_string());
            out.push(w[at..].to_string());
            return;
        }
    }
    if lower == "'tis" || lower == "'twas" {
        out.push(w[..2].to_string());
        out.push(w[2..].to_string());
        return;
    }
    // rock'n'roll -> rock 'n' roll
    if let Some(p) = lower.find("'n'") {
        if p > 0 && p + 3 < lower.len() {
            out.push(w[..p].to_string());
            out.push(w[p..p + 3].to_string());
            split_clitics(&w[p + 3..], out);
            return;
        }
    }
    if lower.len() > 3 && lower.ends_with("n't") {
        let cut = w.len() - 3;
        out.push(w[..cut].to_string());
        out.push(w[cut..].to_string());
        return;
    }
    for suf in ["'s", "'re", "'ve", "'ll", "'d", "'m"] {
        if lower.len() > suf.len() && lower.ends_with(suf) {
            let cut = w.len() - suf.len();
            out.push(w[..cut].to_string());
            out.push(w[cut..].to_string());
            return;
        }
    }
    out.push(w.to_string());
}

/// pycocoevalcap's caption preparation: PTB tokens, lower-cased, with the
/// punctuation tokens removed, joined by single spaces. Newlines inside a
/// caption are spaces (pycocoevalcap replaces them before tokenizing).
pub fn coco_tokenize(caption: &str) -> String {
    let line = caption.replace('\n', " ");
    ptb_tokens(&line)
        .into_iter()
        .map(|t| t.to_lowercase())
        .filter(|t| !PUNCTUATIONS.contains(&t.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::coco_tokenize;

    #[test]
    fn captions() {
        assert_eq!(
            coco_tokenize("A motorcycle, wrapped in plastic, is parked on the street."),
            "a motorcycle wrapped in plastic is parked on the street"
        );
        assert_eq!(
            coco_tokenize("It's a dog's life, isn't it?"),
            "it 's a dog 's life is n't it"
        );
        assert_eq!(
            coco_tokenize("(quietly) 3.5 $20 50%"),
            "-lrb- quietly -rrb- 3.5 $ 20 50 %"
        );
    }
}
