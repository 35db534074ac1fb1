//! The Porter stemmer exactly as NLTK writes it (`nltk.stem.porter.PorterStemmer`
//! in its default `NLTK_EXTENSIONS` mode), which is what rouge-score calls.
//!
//! NLTK's extensions over Porter (1980): a table of irregular forms
//! (`skies` → `sky`, `dying` → `die`, ...), words of one or two letters left
//! alone, `ies`/`ied` on four-letter words → `ie`, `y` → `i` only after a
//! consonant that is not the first letter, a second `alli` rule, `fulli` →
//! `ful`, `logi` → `log`, and a two-letter `vc` stem counting as CVC.
//! Checked word for word against NLTK 3.10 (`tests/parity.rs`).

/// Stems one word (lower-cased first, as NLTK does).
pub fn stem(word: &str) -> String {
    let lower = word.to_lowercase();
    if let Some(s) = irregular(&lower) {
        return s.to_string();
    }
    // NLTK checks the length of the word as given (before lower-casing).
    if word.chars().count() <= 2 {
        return lower;
    }
    let mut w: Vec<char> = lower.chars().collect();
    w = step1a(w);
    w = step1b(w);
    w = step1c(w);
    w = step2(w);
    w = step3(w);
    w = step4(w);
    w = step5a(w);
    w = step5b(w);
    w.into_iter().collect()
}

fn irregular(w: &str) -> Option<&'static str> {
    Some(match w {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "innings" | "inning" => "inning",
        "outings" | "outing" => "outing",
        "cannings" | "canning" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// NLTK `_is_consonant`.
fn is_consonant(w: &[char], mut i: usize) -> bool {
    if is_vowel(w[i]) {
        return false;
    }
    if w[i] == 'y' {
        let mut negate = false;
        while i > 0 && w[i] == 'y' {
            negate = !negate;
            i -= 1;
        }
        // NLTK: (word[i] not in vowels) != negate
        return is_vowel(w[i]) == negate;
    }
    true
}

/// NLTK `_consonant_flags` (used by the measure and the vowel test).
fn consonant_flags(w: &[char]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let f = if is_vowel(c) {
            false
        } else if c == 'y' {
            if i == 0 { true } else { !flags[i - 1] }
        } else {
            true
        };
        flags.push(f);
    }
    flags
}

/// The number of `vc` sequences (Porter's m).
fn measure(stem: &[char]) -> usize {
    let f = consonant_flags(stem);
    f.windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(stem: &[char]) -> bool {
    !consonant_flags(stem).iter().all(|&c| c)
}

fn ends_double_consonant(w: &[char]) -> bool {
    w.len() >= 2 && w[w.len() - 1] == w[w.len() - 2] && is_consonant(w, w.len() - 1)
}

fn ends_cvc(w: &[char]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], 'w' | 'x' | 'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

fn ends_with(w: &[char], suffix: &str) -> bool {
    let s: Vec<char> = suffix.chars().collect();
    w.len() >= s.len() && w[w.len() - s.len()..] == s[..]
}

fn replace_suffix(w: &[char], suffix: &str, repl: &str) -> Vec<char> {
    let n = suffix.chars().count();
    let mut out = w[..w.len() - n].to_vec();
    out.extend(repl.chars());
    out
}

/// A rule's condition on the stem left after removing the suffix.
type Cond<'a> = Option<&'a dyn Fn(&[char]) -> bool>;

/// NLTK `_apply_rule_list` for plain-suffix rules (`*d` handled by callers).
fn apply_rules(w: Vec<char>, rules: &[(&str, &str, Cond)]) -> Vec<char> {
    for (suffix, repl, cond) in rules {
        if ends_with(&w, suffix) {
            let stem = replace_suffix(&w, suffix, "");
            if cond.is_none_or(|c| c(&stem)) {
                let mut out = stem;
                out.extend(repl.chars());
                return out;
            }
            return w;
        }
    }
    w
}

fn positive(stem: &[char]) -> bool {
    measure(stem) > 0
}

fn step1a(w: Vec<char>) -> Vec<char> {
    if ends_with(&w, "ies") && w.len() == 4 {
        return replace_suffix(&w, "ies", "ie");
    }
    apply_rules(
        w,
        &[
            ("sses", "ss", None),
            ("ies", "i", None),
            ("ss", "ss", None),
            ("s", "", None),
        ],
    )
}

fn step1b(w: Vec<char>) -> Vec<char> {
    if ends_with(&w, "ied") {
        return if w.len() == 4 {
            replace_suffix(&w, "ied", "ie")
        } else {
            replace_suffix(&w, "ied", "i")
        };
    }
    if ends_with(&w, "eed") {
        let stem = replace_suffix(&w, "eed", "");
        return if measure(&stem) > 0 {
            let mut s = stem;
            s.extend("ee".chars());
            s
        } else {
            w
        };
    }
    let mut inter = None;
    for suffix in ["ed", "ing"] {
        if ends_with(&w, suffix) {
            let s = replace_suffix(&w, suffix, "");
            if contains_vowel(&s) {
                inter = Some(s);
                break;
            }
        }
    }
    let Some(stem) = inter else {
        return w;
    };
    // Rules on the intermediate stem, in NLTK's order.
    for (suffix, repl) in [("at", "ate"), ("bl", "ble"), ("iz", "ize")] {
        if ends_with(&stem, suffix) {
            let mut s = replace_suffix(&stem, suffix, "");
            s.extend(repl.chars());
            return s;
        }
    }
    let last = *stem.last().expect("stem has a vowel");
    if ends_double_consonant(&stem) {
        // ("*d", last letter, last not in l s z)
        let base = stem[..stem.len() - 2].to_vec();
        if !matches!(last, 'l' | 's' | 'z') {
            let mut s = base;
            s.push(last);
            return s;
        }
        return stem;
    }
    // ("", "e", m == 1 and cvc)
    if measure(&stem) == 1 && ends_cvc(&stem) {
        let mut s = stem;
        s.push('e');
        return s;
    }
    stem
}

fn step1c(w: Vec<char>) -> Vec<char> {
    let cond = |stem: &[char]| stem.len() > 1 && is_consonant(stem, stem.len() - 1);
    apply_rules(w, &[("y", "i", Some(&cond))])
}

fn step2(w: Vec<char>) -> Vec<char> {
    if ends_with(&w, "alli") && positive(&replace_suffix(&w, "alli", "")) {
        return step2(replace_suffix(&w, "alli", "al"));
    }
    let p: &dyn Fn(&[char]) -> bool = &positive;
    let word = w.clone();
    let logi = move |_: &[char]| positive(&word[..word.len() - 3]);
    let rules: [(&str, &str, Cond); 22] = [
        ("ational", "ate", Some(p)),
        ("tional", "tion", Some(p)),
        ("enci", "ence", Some(p)),
        ("anci", "ance", Some(p)),
        ("izer", "ize", Some(p)),
        ("bli", "ble", Some(p)),
        ("alli", "al", Some(p)),
        ("entli", "ent", Some(p)),
        ("eli", "e", Some(p)),
        ("ousli", "ous", Some(p)),
        ("ization", "ize", Some(p)),
        ("ation", "ate", Some(p)),
        ("ator", "ate", Some(p)),
        ("alism", "al", Some(p)),
        ("iveness", "ive", Some(p)),
        ("fulness", "ful", Some(p)),
        ("ousness", "ous", Some(p)),
        ("aliti", "al", Some(p)),
        ("iviti", "ive", Some(p)),
        ("biliti", "ble", Some(p)),
        ("fulli", "ful", Some(p)),
        ("logi", "log", Some(&logi)),
    ];
    apply_rules(w, &rules)
}

fn step3(w: Vec<char>) -> Vec<char> {
    let p: &dyn Fn(&[char]) -> bool = &positive;
    apply_rules(
        w,
        &[
            ("icate", "ic", Some(p)),
            ("ative", "", Some(p)),
            ("alize", "al", Some(p)),
            ("iciti", "ic", Some(p)),
            ("ical", "ic", Some(p)),
            ("ful", "", Some(p)),
            ("ness", "", Some(p)),
        ],
    )
}

fn step4(w: Vec<char>) -> Vec<char> {
    let m1: &dyn Fn(&[char]) -> bool = &|s: &[char]| measure(s) > 1;
    let ion = |s: &[char]| measure(s) > 1 && matches!(s.last(), Some('s' | 't'));
    apply_rules(
        w,
        &[
            ("al", "", Some(m1)),
            ("ance", "", Some(m1)),
            ("ence", "", Some(m1)),
            ("er", "", Some(m1)),
            ("ic", "", Some(m1)),
            ("able", "", Some(m1)),
            ("ible", "", Some(m1)),
            ("ant", "", Some(m1)),
            ("ement", "", Some(m1)),
            ("ment", "", Some(m1)),
            ("ent", "", Some(m1)),
            ("ion", "", Some(&ion)),
            ("ou", "", Some(m1)),
            ("ism", "", Some(m1)),
            ("ate", "", Some(m1)),
            ("iti", "", Some(m1)),
            ("ous", "", Some(m1)),
            ("ive", "", Some(m1)),
            ("ize", "", Some(m1)),
        ],
    )
}

fn step5a(w: Vec<char>) -> Vec<char> {
    if ends_with(&w, "e") {
        let stem = replace_suffix(&w, "e", "");
        let m = measure(&stem);
        if m > 1 || (m == 1 && !ends_cvc(&stem)) {
            return stem;
        }
    }
    w
}

fn step5b(w: Vec<char>) -> Vec<char> {
    let m = measure(&w[..w.len().saturating_sub(1)]);
    let cond = move |_: &[char]| m > 1;
    apply_rules(w, &[("ll", "l", Some(&cond))])
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn classic_words() {
        for (w, s) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("motoring", "motor"),
            ("hopping", "hop"),
            ("relational", "relat"),
            ("generalization", "gener"),
            ("skies", "sky"),
            ("controll", "control"),
        ] {
            assert_eq!(stem(w), s, "{w}");
        }
    }
}
