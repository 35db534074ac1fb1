//! Text generation metrics, each reproducing one reference library:
//! [`bleu`] (sacreBLEU), [`rouge`] (rouge-score, with NLTK's [`porter`]
//! stemmer), [`cider`] (pycocoevalcap CIDEr-D with its [`ptb`] tokenisation)
//! and [`wer`] (jiwer WER/CER).

pub mod bleu;
pub mod cider;
pub mod porter;
pub mod ptb;
pub(crate) mod py;
pub mod rouge;
pub mod wer;
