//! WordNet 3.0 database files (`data.noun`, `data.verb`, `data.adj`,
//! `data.adv`; the `wordnet` asset, Debian `wordnet-base`): synsets with
//! their words, lexicographer file (supersense), pointers and gloss.
//!
//! The format is the one `wndb(5WN)` documents: one synset per line,
//! `offset lex_filenum ss_type w_cnt (word lex_id)… p_cnt (ptr)… [frames] |
//! gloss`, with `w_cnt` and `lex_id` in hexadecimal and the licence as
//! lines that start with two spaces. No crate reads it (NLTK's reader is
//! Python), so this one does, checking every field.

use std::path::Path;

use crate::error::{Error, Result};

/// The 45 lexicographer files of WordNet 3.0 (`lexnames(5WN)`), by number.
pub const LEXNAMES: [&str; 45] = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
];

/// A synset's part of speech (`ss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pos {
    /// `n`.
    Noun,
    /// `v`.
    Verb,
    /// `a`.
    Adjective,
    /// `s`: an adjective satellite.
    AdjectiveSatellite,
    /// `r`.
    Adverb,
}

impl Pos {
    fn parse(s: &str) -> Option<Pos> {
        Some(match s {
            "n" => Pos::Noun,
            "v" => Pos::Verb,
            "a" => Pos::Adjective,
            "s" => Pos::AdjectiveSatellite,
            "r" => Pos::Adverb,
            _ => return None,
        })
    }

    /// The data file holding this part of speech (`data.noun`, …).
    pub fn data_file(self) -> &'static str {
        match self {
            Pos::Noun => "data.noun",
            Pos::Verb => "data.verb",
            Pos::Adjective | Pos::AdjectiveSatellite => "data.adj",
            Pos::Adverb => "data.adv",
        }
    }
}

/// A pointer to another synset (hypernym `@`, hyponym `~`, antonym `!`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    /// The pointer symbol as written (`@`, `~`, `@i`, `#m`, …).
    pub symbol: String,
    /// Byte offset of the target synset in its data file.
    pub offset: u32,
    /// The target's part of speech.
    pub pos: Pos,
    /// Source word number (0 = the whole synset; a lexical pointer otherwise).
    pub source: u8,
    /// Target word number (0 = the whole synset).
    pub target: u8,
}

/// One synset of a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synset {
    /// Byte offset of the line in its data file (the synset's id).
    pub offset: u32,
    /// Lexicographer file number (an index into [`LEXNAMES`]).
    pub lex_filenum: u8,
    /// Part of speech.
    pub pos: Pos,
    /// The synset's words as written (underscores for spaces; adjectives
    /// may carry a syntactic marker such as `(a)`).
    pub words: Vec<String>,
    /// Pointers to other synsets.
    pub pointers: Vec<Pointer>,
    /// The gloss: definition, then `; "examples"`.
    pub gloss: String,
}

impl Synset {
    /// The lexicographer file (supersense), e.g. `noun.animal`.
    pub fn lexname(&self) -> &'static str {
        LEXNAMES[self.lex_filenum as usize]
    }

    /// The `i`-th word as text: spaces for underscores, no adjective marker.
    pub fn lemma(&self, i: usize) -> Option<String> {
        let w = self.words.get(i)?;
        let w = match w.find('(') {
            Some(k) if w.ends_with(')') => &w[..k],
            _ => w.as_str(),
        };
        Some(w.replace('_', " "))
    }

    /// The definition: the gloss before its first quoted example.
    pub fn definition(&self) -> &str {
        let g = self.gloss.as_str();
        let cut = g.find("; \"").or_else(|| g.find('"')).unwrap_or(g.len());
        g[..cut].trim().trim_end_matches(';').trim()
    }

    /// Hypernym targets (`@` and instance hypernyms `@i`).
    pub fn hypernyms(&self) -> impl Iterator<Item = &Pointer> {
        self.pointers
            .iter()
            .filter(|p| p.symbol == "@" || p.symbol == "@i")
    }
}

/// Parses one line of a data file; `None` for the licence header.
pub fn parse_data_line(line: &str, name: &str, line_no: usize) -> Result<Option<Synset>> {
    if line.starts_with("  ") || line.trim().is_empty() {
        return Ok(None);
    }
    let err = |m: String| Error::decode(name, "WordNet data", format!("line {line_no}: {m}"));
    let (fields, gloss) = match line.split_once(" | ") {
        Some((f, g)) => (f, g.trim_end()),
        None => (line.trim_end().trim_end_matches('|'), ""),
    };
    let mut it = fields.split_ascii_whitespace();
    let mut next = |what: &str| it.next().ok_or_else(|| err(format!("ends before {what}")));
    let offset: u32 = next("the offset")?
        .parse()
        .map_err(|_| err("the offset is not a number".into()))?;
    let lex_filenum: u8 = next("lex_filenum")?
        .parse()
        .map_err(|_| err("lex_filenum is not a number".into()))?;
    if lex_filenum as usize >= LEXNAMES.len() {
        return Err(err(format!(
            "lex_filenum {lex_filenum} is not one of 0..=44"
        )));
    }
    let ss = next("ss_type")?;
    let pos = Pos::parse(ss).ok_or_else(|| err(format!("unknown ss_type `{ss}`")))?;
    let w_cnt = u8::from_str_radix(next("w_cnt")?, 16)
        .map_err(|_| err("w_cnt is not a hexadecimal number".into()))?;
    if w_cnt == 0 {
        return Err(err("a synset without words".into()));
    }
    let mut words = Vec::with_capacity(w_cnt as usize);
    for _ in 0..w_cnt {
        words.push(next("a word")?.to_string());
        u8::from_str_radix(next("a lex_id")?, 16)
            .map_err(|_| err("a lex_id is not a hexadecimal number".into()))?;
    }
    let p_cnt: usize = next("p_cnt")?
        .parse()
        .map_err(|_| err("p_cnt is not a number".into()))?;
    let mut pointers = Vec::with_capacity(p_cnt);
    for _ in 0..p_cnt {
        let symbol = next("a pointer symbol")?.to_string();
        let offset: u32 = next("a pointer offset")?
            .parse()
            .map_err(|_| err("a pointer offset is not a number".into()))?;
        let p = next("a pointer's part of speech")?;
        let pos = Pos::parse(p).ok_or_else(|| err(format!("unknown pointer pos `{p}`")))?;
        let st = next("a pointer's source/target")?;
        if st.len() != 4 {
            return Err(err(format!(
                "pointer source/target `{st}` is not 4 hex digits"
            )));
        }
        let hex = |s: &str| {
            u8::from_str_radix(s, 16).map_err(|_| err(format!("`{st}` is not hexadecimal")))
        };
        pointers.push(Pointer {
            symbol,
            offset,
            pos,
            source: hex(&st[..2])?,
            target: hex(&st[2..])?,
        });
    }
    // Verb frames (`f_cnt + f_num w_num …`) follow; they are not kept.
    Ok(Some(Synset {
        offset,
        lex_filenum,
        pos,
        words,
        pointers,
        gloss: gloss.to_string(),
    }))
}

/// Reads every synset of one data file (e.g. `…/data.noun`).
pub fn read_data_file(path: &Path) -> Result<Vec<Synset>> {
    let bytes = crate::error::read_limited(path, 1 << 30)?;
    let name = path.display().to_string();
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::decode(&name, "WordNet data", format!("not UTF-8: {e}")))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(s) = parse_data_line(line, &name, i + 1)? {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(Error::decode(&name, "WordNet data", "no synsets"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_noun_line_with_pointers_and_examples() {
        let line = "02139199 05 n 02 bat 0 chiropteran 0 003 @ 01862557 n 0000 #m 01861778 n 0000 ~ 02139671 n 0000 | nocturnal mouselike mammal with forelimbs modified to form membranous wings; \"bats fly at night\"  ";
        let s = parse_data_line(line, "t", 1).unwrap().unwrap();
        assert_eq!(s.offset, 2139199);
        assert_eq!(s.lexname(), "noun.animal");
        assert_eq!(s.words, ["bat", "chiropteran"]);
        assert_eq!(s.pointers.len(), 3);
        assert_eq!(s.hypernyms().count(), 1);
        assert_eq!(s.pointers[1].symbol, "#m");
        assert_eq!(
            s.definition(),
            "nocturnal mouselike mammal with forelimbs modified to form membranous wings"
        );
    }

    #[test]
    fn adjective_markers_and_underscores_leave_the_lemma() {
        let line = "00001740 00 a 01 able(a) 0 000 | (usually followed by `to') having the necessary means";
        let s = parse_data_line(line, "t", 1).unwrap().unwrap();
        assert_eq!(s.lemma(0).unwrap(), "able");
        let line = "00001930 03 n 01 physical_entity 0 000 | an entity that has physical existence";
        let s = parse_data_line(line, "t", 1).unwrap().unwrap();
        assert_eq!(s.lemma(0).unwrap(), "physical entity");
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(
            parse_data_line("  1 licence text", "t", 1)
                .unwrap()
                .is_none()
        );
        for bad in [
            "00001740 99 n 01 x 0 000 | g",
            "00001740 03 q 01 x 0 000 | g",
            "00001740 03 n 02 x 0 000 | g",
            "00001740 03 n 01 x 0 002 @ 1 n 0000 | g",
            "00001740 03 n 01 x 0 001 @ 1 n 00 | g",
        ] {
            let e = parse_data_line(bad, "data.noun", 7)
                .unwrap_err()
                .to_string();
            assert!(e.contains("data.noun") && e.contains("line 7"), "{e}");
        }
    }
}
