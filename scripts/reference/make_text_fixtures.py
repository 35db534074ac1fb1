#!/usr/bin/env python3
"""Tokenizer parity fixtures for mosaic-data (fixtures/text/).

    MOSAIC_HOME=... .venv-ref/bin/python scripts/reference/make_text_fixtures.py [FIXTURES_ROOT]

Sentences are real transcripts shipped with the assets (Asterisk prompt texts,
pocketsphinx test transcriptions) plus a short, clearly separated list of
hand-written edge cases (non-ASCII, odd whitespace). Two small tokenizers are
trained here with the `tokenizers` library on the real sentences; all four
tokenizers are then run with the Python `tokenizers` library
(`Tokenizer.from_file`).

Files:
  text/sentences.json                 {"real": [...], "extra": [...], "sources": {...}}
  text/unigram_tokenizer.json         trained Unigram (vocab 500)
  text/clip_bpe_tokenizer.json        CLIP-layout byte-level BPE, 200 learned merges (vocab 714)
  text/expected_<name>.json           per tokenizer: plain encodes, padded batch, decodes
"""

import gzip
import json
import os
import re
import sys
from collections import Counter

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import asset, out_dir, rel, sha256_file, versions, write_json  # noqa: E402

from tokenizers import (  # noqa: E402
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

MAX_LEN = 16
CLIP_MERGES = 200

EXTRA = [
    "",
    "  leading and   multiple   spaces  ",
    "tab\tseparated\nand newline",
    "Café déjà vu, naïve coöperation — “quoted” ‘text’…",
    "Straße ÆØÅ æøå ÀÉÎÕÜ",
    "日本語のテキストと中文字符",
    "emoji 🙂 and 👍🏽 and 🇳🇴 flags",
    "Ünïcödé ACCENTS in UPPER and lower",
    "numbers 1234567890 and 3.14159 and 1,000,000",
    "punctuation!?!... (brackets) [square] {curly} <angle> #hash @at $dollar %percent",
    "don't can't won't it's we're they've I'm you'll he'd",
    "a" * 120,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "<|endoftext|> [CLS] [SEP] <s> </s> literal special-token strings",
]


def load_sentences():
    real, sources = [], {}
    seen = set()

    def add(text, src):
        text = text.strip()
        if text and text not in seen:
            seen.add(text)
            real.append(text)
            sources.setdefault(src, 0)
            sources[src] += 1

    path = asset("asterisk-sounds", "core-sounds-en.txt.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.startswith(";"):
                continue
            _, sep, text = line.partition(": ")
            if sep:
                add(text, rel(path))
    for name in ["cards/cards.transcription", "librivox/transcription", "tidigits/tidigits.lsn"]:
        p = asset("pocketsphinx-testdata", *name.split("/"))
        with open(p, encoding="utf-8") as f:
            for line in f:
                text = re.sub(r"\([^()]*\)\s*$", "", line)  # trailing "(utterance id)"
                text = text.replace("<s>", "").replace("</s>", "")
                add(" ".join(text.split()), rel(p))
    return real, sources


def train_unigram(sentences):
    """tokenizers' UnigramTrainer, then canonicalised: the trainer is not
    bit-reproducible (HashMap order: equal-score pieces swap places, scores
    differ in the last ulp), so scores are rounded to 1e-6 and the non-special
    pieces sorted by (-score, piece)."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    trainer = trainers.UnigramTrainer(vocab_size=500, special_tokens=specials, unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(sentences, trainer)
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    assert [p for p, _ in vocab[:4]] == specials
    body = [(p, sc) for p, sc in vocab[4:]]
    # The trainer appends characters it must keep with scores min - k * 1e-4 in
    # HashSet order: give that tail its scores in code-point order instead.
    best = (0, 0)
    i = 0
    while i < len(body):
        j = i
        while (
            j + 1 < len(body)
            and len(body[j][0]) == 1
            and len(body[j + 1][0]) == 1
            and abs((body[j][1] - body[j + 1][1]) - 1e-4) < 1e-7
        ):
            j += 1
        if j + 1 - i > best[1] - best[0]:
            best = (i, j + 1)
        i = j + 1
    a, b = best
    if b - a >= 3:
        body[a:b] = list(zip(sorted(p for p, _ in body[a:b]), [sc for _, sc in body[a:b]]))
    rest = sorted(((p, round(sc, 6)) for p, sc in body), key=lambda x: (-x[1], x[0]))
    unigram = models.Unigram([(p, float(sc)) for p, sc in vocab[:4]] + rest, unk_id=1, byte_fallback=False)
    out = Tokenizer(unigram)
    out.add_special_tokens(specials)
    out.normalizer = tok.normalizer
    out.pre_tokenizer = tok.pre_tokenizer
    out.decoder = tok.decoder
    out.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> $B:1 </s>:1",
        special_tokens=[("<s>", 2), ("</s>", 3)],
    )
    return out


def bytes_to_unicode():
    """GPT-2 / CLIP byte -> printable character table, in CLIP's vocab order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
    bs += list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def train_clip_bpe(sentences, n_merges=CLIP_MERGES):
    """CLIP-layout byte-level BPE: vocab = 256 byte chars, the same 256 with
    "</w>", the learned merges, then <|startoftext|>, <|endoftext|>.

    Merges are learned here (plain Python, deterministic): most frequent
    adjacent pair over the pre-tokenized words, ties broken by the
    lexicographically smallest (left, right) pair; pairs seen < 2 times stop.
    tokenizers' own BpeTrainer is not reproducible run to run (HashMap order).
    """
    sot, eot = "<|startoftext|>", "<|endoftext|>"
    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    words = Counter()
    for s in sentences:
        for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(s)):
            words[w] += 1
    corpus = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in words}
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, syms in corpus.items():
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += words[w]
        if not pairs:
            break
        best = max(pairs.values())
        if best < 2:
            break
        a, b = min(p for p, c in pairs.items() if c == best)
        merges.append((a, b))
        for w, syms in corpus.items():
            i, out = 0, []
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            corpus[w] = out
    base = bytes_to_unicode()
    tokens = base + [c + "</w>" for c in base] + [a + b for a, b in merges] + [sot, eot]
    vocab = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))  # a merge can equal an existing token; keep first id
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            unk_token=eot,
            end_of_word_suffix="</w>",
            continuing_subword_prefix="",
            fuse_unk=False,
        )
    )
    tok.add_special_tokens([sot, eot])
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    # ByteLevel must come first: it joins all tokens before UTF-8 decoding, while
    # Replace-first would make it decode token by token and split multi-byte
    # characters. (decoders.Strip would drop the trailing space but panics on an
    # empty token list in tokenizers 0.23, e.g. decode([sot, eot], skip_special_tokens=True).)
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " ")])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{sot} $A {eot}",
        pair=f"{sot} $A {eot} $B:1 {eot}:1",
        special_tokens=[(sot, vocab[sot]), (eot, vocab[eot])],
    )
    return tok


def byte_offsets(s, offsets):
    pre = [0]
    for ch in s:
        pre.append(pre[-1] + len(ch.encode("utf-8")))
    return [[pre[a], pre[b]] for a, b in offsets]


def run(tok_path, pad_token, sentences, extra):
    tok = Tokenizer.from_file(tok_path)
    file_cfg = {"truncation": tok.truncation, "padding": tok.padding}
    tok.no_padding()
    tok.no_truncation()
    pad_id = tok.token_to_id(pad_token)
    assert pad_id is not None

    def plain(texts, with_bytes):
        rows = []
        for s in texts:
            e = tok.encode(s)
            assert set(e.type_ids) <= {0}
            row = {
                "ids": e.ids,
                "attention_mask": e.attention_mask,
                "offsets": [list(o) for o in e.offsets],
                "decoded": tok.decode(e.ids, skip_special_tokens=True),
            }
            if with_bytes:
                row["tokens"] = e.tokens
                row["special_tokens_mask"] = e.special_tokens_mask
                row["byte_offsets"] = byte_offsets(s, e.offsets)
            rows.append(row)
        return rows

    out = {
        "tokenizer_file_config": file_cfg,
        "pad": {"token": pad_token, "id": pad_id},
        "encode": plain(sentences, False),
        "encode_extra": plain(extra, True),
    }
    tok.enable_truncation(max_length=MAX_LEN)
    tok.enable_padding(length=MAX_LEN, pad_id=pad_id, pad_token=pad_token)
    batch = tok.encode_batch(sentences + extra)
    out["batch"] = {
        "settings": f"enable_truncation(max_length={MAX_LEN}) + enable_padding(length={MAX_LEN}, "
        f"pad_id={pad_id}, pad_token={pad_token!r}); encode_batch(real + extra)",
        "ids": [e.ids for e in batch],
        "attention_mask": [e.attention_mask for e in batch],
        "overflowing_count": [len(e.overflowing) for e in batch],
        "decoded": tok.decode_batch([e.ids for e in batch], skip_special_tokens=True),
    }
    return out


def main():
    d = out_dir("text")
    real, sources = load_sentences()
    write_json(os.path.join(d, "sentences.json"), {"real": real, "extra": EXTRA, "sources": sources})

    uni = train_unigram(real)
    uni_path = os.path.join(d, "unigram_tokenizer.json")
    uni.save(uni_path, pretty=False)
    bpe = train_clip_bpe(real)
    bpe_path = os.path.join(d, "clip_bpe_tokenizer.json")
    bpe.save(bpe_path, pretty=False)

    toks = {
        "minilm_wordpiece": (asset("minilm-l6-v2", "tokenizer.json"), "[PAD]"),
        "whisper_bpe": (asset("whisper-tiny-en", "tokenizer.json"), "<|endoftext|>"),
        "unigram": (uni_path, "<pad>"),
        "clip_bpe": (bpe_path, "<|endoftext|>"),
    }
    for name, (path, pad) in toks.items():
        res = run(path, pad, real, EXTRA)
        in_fixtures = os.path.commonpath([os.path.abspath(path), os.path.abspath(d)]) == os.path.abspath(d)
        res = {
            "generator": "scripts/reference/make_text_fixtures.py",
            "versions": versions(),
            "tokenizer": os.path.basename(path) if in_fixtures else rel(path),
            "tokenizer_in": "fixtures/text" if in_fixtures else "$MOSAIC_HOME/assets",
            "tokenizer_sha256": sha256_file(path),
            "offsets_note": "offsets are Python-binding char (code point) offsets; byte_offsets (extra only) "
            "are the same spans in UTF-8 bytes, what the Rust tokenizers crate returns by default",
            **res,
        }
        write_json(os.path.join(d, f"expected_{name}.json"), res, compact=True)
    print(f"text fixtures: {len(real)} real + {len(EXTRA)} extra sentences -> {d}")


if __name__ == "__main__":
    main()
