//! WordNet on the real `wordnet` asset (Debian `wordnet-base`, fetched by
//! `scripts/test.sh`): the noun database reads whole, and the supersense
//! import gives disjoint, balanced, deterministic splits of real text.

use std::collections::{BTreeMap, BTreeSet};

use mosaic_data::import::{SupersenseOptions, import_wordnet_supersenses};
use mosaic_data::manifest::jsonl::{LabelValue, ManifestReader, TextField};
use mosaic_data::wordnet::{Pos, read_data_file};

fn wordnet() -> std::path::PathBuf {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("wordnet"),
        "asset `wordnet` is not fetched: run `mosaic assets fetch wordnet` (scripts/test.sh does)"
    );
    store.path("wordnet").unwrap()
}

#[test]
fn the_noun_database_reads_whole() {
    let nouns = read_data_file(&wordnet().join("data.noun")).unwrap();
    // WordNet 3.0 has 82,115 noun synsets.
    assert_eq!(nouns.len(), 82_115);
    assert!(nouns.iter().all(|s| s.pos == Pos::Noun));
    let dog = nouns
        .iter()
        .find(|s| s.words.first().is_some_and(|w| w == "dog") && s.lexname() == "noun.animal")
        .unwrap();
    assert!(dog.words.iter().any(|w| w == "Canis_familiaris"));
    assert!(dog.definition().starts_with("a member of the genus Canis"));
    // Every hypernym points at a synset that exists.
    let offsets: BTreeSet<u32> = nouns.iter().map(|s| s.offset).collect();
    for s in &nouns {
        for h in s.hypernyms() {
            assert!(offsets.contains(&h.offset), "{} → {}", s.offset, h.offset);
        }
    }
}

fn read(path: &std::path::Path) -> Vec<(String, String, String)> {
    ManifestReader::read_all(path)
        .unwrap()
        .into_iter()
        .map(|(_, r)| {
            let text = match r.text {
                Some(TextField::Inline(t)) => t,
                other => panic!("{other:?}"),
            };
            let label = match r.label {
                Some(LabelValue::Name(l)) => l,
                other => panic!("{other:?}"),
            };
            (r.id.unwrap(), text, label)
        })
        .collect()
}

#[test]
fn supersense_splits_are_disjoint_balanced_and_repeatable() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = SupersenseOptions {
        train_per_class: 20,
        eval_per_class: 5,
        seed: 3,
    };
    let out = tmp.path().join("ss");
    let r = import_wordnet_supersenses(&wordnet(), &out, &opts, false).unwrap();
    assert_eq!(r.samples, 26 * 25);
    // noun.Tops and noun.motive are too small for the default 200 + 40 but
    // not for 20 + 5: nothing is skipped here.
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    let train = read(&out.join("train.jsonl"));
    let eval = read(&out.join("eval.jsonl"));
    let classes: BTreeMap<&str, usize> = train.iter().fold(BTreeMap::new(), |mut m, (_, _, l)| {
        *m.entry(l.as_str()).or_default() += 1;
        m
    });
    assert_eq!(classes.len(), 26);
    assert!(classes.values().all(|&n| n == 20));
    let train_ids: BTreeSet<&String> = train.iter().map(|(i, _, _)| i).collect();
    assert!(eval.iter().all(|(i, _, _)| !train_ids.contains(i)));
    assert!(
        train
            .iter()
            .all(|(_, t, _)| t.contains(": ") && t.len() > 8)
    );
    // Refuses to overwrite; with `force` the same seed gives the same files.
    assert!(import_wordnet_supersenses(&wordnet(), &out, &opts, false).is_err());
    let first = std::fs::read(out.join("train.jsonl")).unwrap();
    import_wordnet_supersenses(&wordnet(), &out, &opts, true).unwrap();
    assert_eq!(std::fs::read(out.join("train.jsonl")).unwrap(), first);

    // The default sizes keep the 24 classes with ≥ 240 synsets.
    let out = tmp.path().join("default");
    let r =
        import_wordnet_supersenses(&wordnet(), &out, &SupersenseOptions::default(), false).unwrap();
    assert_eq!(r.samples, 24 * 240);
    assert_eq!(r.skipped.len(), 2, "{:?}", r.skipped);
    assert!(r.skipped.iter().any(|s| s.contains("noun.motive")));
}
