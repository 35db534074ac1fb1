#!/usr/bin/env python3
"""Reference fixtures for mosaic-eval (crates/mosaic-eval/tests/fixtures/).

    MOSAIC_HOME=... .venv-ref/bin/python scripts/reference/make_eval_fixtures.py [OUT_DIR]

Every number the Rust metrics are checked against comes from the reference
library itself, run here on real text:

* ``text_metrics.json``
  - ``bleu``: sacrebleu.BLEU (tokenize 13a) corpus and sentence scores for
    every smoothing method (exp, floor, add-k, none), single and multiple
    references: Asterisk prompt transcripts (core-sounds-en.txt.gz) against
    the committed Whisper tiny.en (faster-whisper) transcriptions, and the
    COCO captions of pycocoevalcap's origin repository (4 references each).
  - ``rouge``: rouge_score.rouge_scorer.RougeScorer(rouge1, rouge2, rougeL,
    rougeLsum) with and without Porter stemming; ``score`` for one target,
    ``score_multi`` for several; Lsum on newline-joined captions. ``stems``:
    nltk's PorterStemmer (the one rouge-score calls) on every word of the texts
    plus the classic Porter test words.
  - ``cider``: pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1 via
    java) + Cider (CIDEr-D: n=4, sigma=6, clipping, x10): the hypotheses of
    the example captions, and leave-one-out (first reference as hypothesis,
    the other three as references). ``ptb``: the tokenizer's output on every
    caption and every real sentence of the mosaic-data text fixtures.
  - ``wer``: jiwer 4 process_words / process_characters (default transforms)
    per file and over the corpus, Asterisk transcripts vs Whisper outputs.
* ``clipscore.safetensors`` + ``clipscore.json``: torchmetrics'
  ``_clip_score_update`` fed fixed embeddings (a stub model returns them), the
  ``clip_score`` aggregation (mean, then max with 0), and RefCLIPScore as in
  Hessel et al. 2021 (w = 2.5, harmonic mean with max(max_r cos(c, r), 0)).
  Embeddings: all-MiniLM-L6-v2 sentence embeddings (sentence-transformers) of
  the COCO captions (text-text) and seeded Gaussian "image" embeddings.
* ``ranking.safetensors`` + ``ranking.json``: the NumPy reference of
  retrieval (stable descending argsort: ties go to the lower index), R@1/5/10,
  median rank, mAP both ways; sklearn accuracy / macro-F1 / confusion matrix /
  top_k_accuracy_score; alignment entropy and 15-bin ECE in NumPy.
"""

import gzip
import importlib.metadata as md
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import REPO_ROOT, asset, floats, save_tensors, write_json  # noqa: E402

import numpy as np  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO_ROOT, "crates", "mosaic-eval", "tests", "fixtures")
WHISPER = os.path.join(REPO_ROOT, "crates", "mosaic-models", "tests", "fixtures", "audio", "whisper_tiny_en.json")
SENTENCES = os.path.join(REPO_ROOT, "crates", "mosaic-data", "tests", "fixtures", "text", "sentences.json")
COCO = os.path.join(OUT, "coco_debug_captions.json")

PORTER_WORDS = """caresses ponies ties caress cats feed agreed plastered bled motoring sing conflated
troubled sized hopping tanned falling hissing fizzed failing filing happy sky relational conditional
rational valenci hesitanci digitizer conformabli radicalli differentli vileli analogousli
vietnamization predication operator feudalism decisiveness hopefulness callousness formaliti
sensitiviti sensibiliti triplicate formative formalize electriciti electrical hopeful goodness
revival allowance inference airliner gyroscopic adjustable defensible irritant replacement
adjustment dependent adoption homologou communism activate angulariti homologous effective
bowdlerize probate rate cease controll roll generously dying lying tying news innings outings
cannings skies dies flies cried spied proceed exceed succeed howe generalization oscillators
logically analogies archaeology fullness hopefully beautifully cheerfulli dictionary
agreement abilities ability fairly traditional feeling emotional conditionally""".split()


def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def asterisk_pairs():
    """(name, reference transcript, Whisper text) for every Asterisk prompt
    that has both a transcript line and a committed Whisper output."""
    refs = {}
    with gzip.open(asset("asterisk-sounds", "core-sounds-en.txt.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith(";") or ": " not in line:
                continue
            name, text = line.split(": ", 1)
            refs[name] = text
    w = json.load(open(WHISPER, encoding="utf-8"))
    out = []
    for f in w["files"]:
        if f["set"] != "asterisk":
            continue
        name = f["file"].split("en_US_f_Allison/", 1)[1][: -len(".wav")]
        if name in refs:
            out.append((name, refs[name], f["text"]))
    return out


# ----------------------------------------------------------------------------
# BLEU
# ----------------------------------------------------------------------------

def bleu_result(s):
    return {
        "score": s.score,
        "counts": list(map(int, s.counts)),
        "totals": list(map(int, s.totals)),
        "precisions": list(s.precisions),
        "bp": s.bp,
        "sys_len": int(s.sys_len),
        "ref_len": int(s.ref_len),
    }


def make_bleu(pairs, coco):
    from sacrebleu.metrics import BLEU

    cases = []
    ast_h = [p[2] for p in pairs]
    ast_r = [p[1] for p in pairs]
    ids = sorted(coco["hypotheses"])
    coco_h = [coco["hypotheses"][i][0] for i in ids]
    coco_r = [[coco["references"][i][k] for i in ids] for k in range(4)]  # 4 streams
    # Variable number of references: drop the last reference of every other
    # segment (sacrebleu allows None there).
    coco_var = [list(s) for s in coco_r]
    for j in range(0, len(ids), 2):
        coco_var[3][j] = None
    for smooth, value in [("exp", None), ("floor", 0.1), ("floor", 0.5), ("add-k", 1), ("add-k", 2), ("none", None)]:
        for lowercase in [False, True]:
            kw = dict(tokenize="13a", smooth_method=smooth, smooth_value=value, lowercase=lowercase)
            for name, hyps, refs in [("asterisk", ast_h, [ast_r]), ("coco", coco_h, coco_r), ("coco_var", coco_h, coco_var)]:
                b = BLEU(**kw)
                corpus = bleu_result(b.corpus_score(hyps, refs))
                sb = BLEU(effective_order=True, **kw)
                sent = []
                for j, h in enumerate(hyps if not lowercase else []):
                    rr = [s[j] for s in refs if s[j] is not None]
                    r = sb.sentence_score(h, rr)
                    # [score, bp, sys_len, ref_len, counts..., totals...]
                    sent.append([r.score, r.bp, int(r.sys_len), int(r.ref_len)] + list(map(int, r.counts)) + list(map(int, r.totals)))
                cases.append({
                    "data": name, "smooth_method": smooth, "smooth_value": value, "lowercase": lowercase,
                    "corpus": corpus, "sentence_effective_order": sent,
                })
    # The 13a tokenizer on its own (every text used above plus the edge cases).
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    tok = Tokenizer13a()
    sents = json.load(open(SENTENCES, encoding="utf-8"))
    texts = ast_h + ast_r + coco_h + [c for s in coco_r for c in s] + sents["real"] + sents["extra"] + [
        "3.14, 1,000 and 5-6 pm.", "&quot;quoted&quot; &amp; &lt;tag&gt;", "end-\nof line", "a<skipped>b",
        "x\x1cy\u00a0z", "e.g. U.S.A., Mr.Smith", "(a){b}[c]~d|e^f_g`h", "9-9-9 a-b 1.2.3",
    ]
    return {"cases": cases, "tokenize_13a": [{"text": t, "tokens": tok(t.rstrip())} for t in texts]}


# ----------------------------------------------------------------------------
# ROUGE
# ----------------------------------------------------------------------------

def score_dict(scores):
    return {k: [v.precision, v.recall, v.fmeasure] for k, v in scores.items()}


def make_rouge(pairs, coco):
    from nltk.stem import porter
    from rouge_score import rouge_scorer, tokenize

    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    ids = sorted(coco["hypotheses"])
    single = [(p[1], p[2]) for p in pairs]  # (target, prediction)
    single += [(coco["references"][i][0], coco["hypotheses"][i][0]) for i in ids]
    multi = [(coco["references"][i], coco["hypotheses"][i][0]) for i in ids]
    # Lsum: several sentences per text, one per line.
    lsum = [("\n".join(coco["references"][i]), coco["hypotheses"][i][0] + "\n" + coco["references"][i][1]) for i in ids]
    lsum += [("\n".join(p[1] for p in pairs[k:k + 5]), "\n".join(p[2] for p in pairs[k:k + 5])) for k in range(0, 100, 5)]
    out = {"types": types, "cases": [],
           "single": [{"target": t, "prediction": p} for t, p in single],
           "multi": [{"targets": t, "prediction": p} for t, p in multi],
           "lsum": [{"target": t, "prediction": p} for t, p in lsum]}
    for stem in [False, True]:
        sc = rouge_scorer.RougeScorer(types, use_stemmer=stem)
        out["cases"].append({
            "use_stemmer": stem,
            "single": [score_dict(sc.score(t, p)) for t, p in single],
            "multi": [score_dict(sc.score_multi(t, p)) for t, p in multi],
            "lsum": [score_dict(sc.score(t, p)) for t, p in lsum],
        })
    words = set(PORTER_WORDS)
    sents = json.load(open(SENTENCES, encoding="utf-8"))
    for t in [p[1] for p in pairs] + [p[2] for p in pairs] + sents["real"] + [c for i in ids for c in coco["references"][i] + coco["hypotheses"][i]]:
        words.update(tokenize.tokenize(t, None))
    st = porter.PorterStemmer()
    out["stems"] = {w: st.stem(w) for w in sorted(words)}
    return out


# ----------------------------------------------------------------------------
# CIDEr-D
# ----------------------------------------------------------------------------

def make_cider(coco):
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ids = sorted(coco["hypotheses"])
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in coco["references"][i]] for i in ids})
    res = tok.tokenize({i: [{"caption": coco["hypotheses"][i][0]}] for i in ids})
    score, scores = Cider().compute_score(gts, res)
    out = {"example": {"ids": ids, "score": float(score), "scores": floats(scores),
                       "tokenized_refs": gts, "tokenized_hyps": res}}
    # Leave-one-out on the human captions: reference 0 as the hypothesis.
    gts2 = {i: gts[i][1:] for i in ids}
    res2 = {i: [gts[i][0]] for i in ids}
    score2, scores2 = Cider().compute_score(gts2, res2)
    out["leave_one_out"] = {"ids": ids, "score": float(score2), "scores": floats(scores2)}
    # The tokenizer alone on real sentences (one "image" each).
    sents = json.load(open(SENTENCES, encoding="utf-8"))
    texts = [s for s in sents["real"] + sents["extra"] if s.strip() and "\n" not in s and "\r" not in s]
    texts += [c for i in ids for c in coco["references"][i] + coco["hypotheses"][i]]
    texts += ["It's a dog's life, isn't it? Don't they'll we'd I'm you're we've",
              "He said \"hello\" (quietly) -- then left... 3.5 $20 & 50% e-mail a.m. U.S. 1,000",
              "cannot gonna wanna 'tis o'clock rock'n'roll {braces} [brackets] a/b a+b"]
    keyed = {str(k): [{"caption": t}] for k, t in enumerate(texts)}
    toks = tok.tokenize(keyed)
    out["ptb"] = [{"text": t, "tokens": toks[str(k)][0]} for k, t in enumerate(texts)]
    return out


# ----------------------------------------------------------------------------
# WER / CER
# ----------------------------------------------------------------------------

def make_wer(pairs):
    import jiwer

    refs = [p[1] for p in pairs]
    hyps = [p[2] for p in pairs]
    per = []
    for name, r, h in pairs:
        w = jiwer.process_words(r, h)
        c = jiwer.process_characters(r, h)
        per.append({"name": name, "reference": r, "hypothesis": h,
                    "words": [w.hits, w.substitutions, w.deletions, w.insertions, w.wer],
                    "chars": [c.hits, c.substitutions, c.deletions, c.insertions, c.cer]})
    w = jiwer.process_words(refs, hyps)
    c = jiwer.process_characters(refs, hyps)
    edge = []
    for r, h in [("a b c", ""), ("a  b\tc ", " a b  c"), ("hello world", "hello  there world"),
                 ("x y z", "z y x"), ("the cat sat on the mat", "cat the sat on mat the"),
                 ("\u00a0spaced\u2003out\u00a0", "spaced out"), ("naïve café", "naive cafe")]:
        ww = jiwer.process_words(r, h)
        cc = jiwer.process_characters(r, h)
        edge.append({"reference": r, "hypothesis": h,
                     "words": [ww.hits, ww.substitutions, ww.deletions, ww.insertions, ww.wer],
                     "chars": [cc.hits, cc.substitutions, cc.deletions, cc.insertions, cc.cer]})
    return {"per_file": per, "edge": edge,
            "corpus_words": [w.hits, w.substitutions, w.deletions, w.insertions, w.wer, w.mer, w.wil, w.wip],
            "corpus_chars": [c.hits, c.substitutions, c.deletions, c.insertions, c.cer]}


# ----------------------------------------------------------------------------
# CLIPScore / RefCLIPScore
# ----------------------------------------------------------------------------

def make_clipscore(coco):
    import torch
    from sentence_transformers import SentenceTransformer
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update

    ids = sorted(coco["hypotheses"])
    hyps = [coco["hypotheses"][i][0] for i in ids]
    refs = [coco["references"][i] for i in ids]
    model = SentenceTransformer(asset("minilm-l6-v2"), device="cpu")
    cand = model.encode(hyps, convert_to_numpy=True, normalize_embeddings=False).astype(np.float32)
    ref = model.encode([r for rs in refs for r in rs], convert_to_numpy=True).astype(np.float32).reshape(len(ids), 4, -1)
    rng = np.random.default_rng(7)
    # "Images": the first reference's embedding plus noise, so some scores are
    # high, some low and (with the sign flip) some negative.
    img = (ref[:, 0, :] + rng.normal(0, 0.08, ref[:, 0, :].shape)).astype(np.float32)
    img[-2:] *= -1.0
    img *= 3.0  # not unit length: the metric normalises

    class Stub:
        config = object()

        def __init__(self, a, b):
            self.a, self.b = torch.from_numpy(a), torch.from_numpy(b)

        def to(self, device):
            return self

        def get_image_features(self, pixel_values):
            return self.a

        def get_text_features(self, input_ids, attention_mask=None):
            return self.b

    def proc(images=None, text=None, **kw):
        if images is not None:
            return {"pixel_values": torch.zeros(len(images), 1)}
        n = len(text)
        return {"input_ids": torch.zeros(n, 1, dtype=torch.long), "attention_mask": torch.ones(n, 1, dtype=torch.long)}

    images = [torch.zeros(3, 2, 2) for _ in ids]
    score, n = _clip_score_update(images, hyps, Stub(img, cand), proc)
    agg = torch.max(score.mean(0), torch.zeros_like(score.mean(0)))

    # RefCLIPScore, Hessel et al. 2021 (clipscore.py of the paper's code, numpy f64).
    def l2(x):
        return x / np.sqrt(np.sum(x ** 2, axis=-1, keepdims=True))

    c64, i64, r64 = l2(cand.astype(np.float64)), l2(img.astype(np.float64)), l2(ref.astype(np.float64))
    clip_s = 2.5 * np.clip(np.sum(c64 * i64, axis=1), 0, None)
    best = np.clip(np.max(np.einsum("nd,nkd->nk", c64, r64), axis=1), 0, None)
    refclip = np.where(clip_s + best > 0, 2 * clip_s * best / np.where(clip_s + best > 0, clip_s + best, 1), 0.0)
    save_tensors(os.path.join(OUT, "clipscore.safetensors"), {"candidates": cand, "images": img, "references": ref})
    write_json(os.path.join(OUT, "clipscore.json"), {
        "torchmetrics_per_sample": floats(score.numpy()),
        "torchmetrics_clip_score": float(agg),
        "clip_s_w2_5": floats(clip_s),
        "ref_clip_s": floats(refclip),
        "mean_clip_s": float(clip_s.mean()),
        "mean_ref_clip_s": float(refclip.mean()),
        "note": "candidates: MiniLM embeddings of the 10 hypothesis captions; references: of their 4 references; images: reference 0 + N(0, 0.08), last two negated, x3",
    })


# ----------------------------------------------------------------------------
# Ranking, classification, calibration (NumPy / sklearn references)
# ----------------------------------------------------------------------------

def retrieval_np(sim, la, lb):
    """Query i (row) is relevant to item j (column) iff la[i] == lb[j].
    Order: np.argsort(-sim, kind='stable') (ties: lower column index first).
    Returns the 1-based rank of the first relevant item per query and AP."""
    order = np.argsort(-sim, axis=1, kind="stable")
    ranks, aps = [], []
    for i in range(sim.shape[0]):
        rel = lb[order[i]] == la[i]
        pos = np.nonzero(rel)[0] + 1  # 1-based ranks of the relevant items
        ranks.append(int(pos[0]))
        aps.append(float(np.mean(np.arange(1, len(pos) + 1) / pos)))
    ranks = np.array(ranks)
    return {
        "ranks": ranks.tolist(),
        "r1": float(np.mean(ranks <= 1)), "r5": float(np.mean(ranks <= 5)), "r10": float(np.mean(ranks <= 10)),
        "median_rank": float(np.median(ranks)), "mean_rank": float(np.mean(ranks)), "map": float(np.mean(aps)),
    }


def make_ranking():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, top_k_accuracy_score

    rng = np.random.default_rng(11)
    tensors, cases = {}, []
    # 1. paired, continuous similarities (no ties)
    a = rng.normal(size=(300, 32)).astype(np.float32)
    b = (a + rng.normal(0, 1.2, size=a.shape)).astype(np.float32)
    # 2. quantised similarities: many ties
    q = np.round(rng.normal(size=(120, 120)) * 2).astype(np.float32)
    q[np.arange(120), np.arange(120)] += np.round(rng.normal(size=120)).astype(np.float32)
    # 3. COCO-style: 5 texts per image (labels), ties included
    s5 = np.round(rng.normal(size=(40, 200)) * 3).astype(np.float32) / 4
    for i in range(40):
        s5[i, 5 * i:5 * i + 5] += rng.integers(0, 3, 5).astype(np.float32) / 2
    la5 = np.arange(40)
    lb5 = np.repeat(np.arange(40), 5)
    for name, sim, la, lb in [("paired", None, np.arange(300), np.arange(300)), ("ties", q, np.arange(120), np.arange(120)),
                              ("five_per_image", s5, la5, lb5)]:
        if sim is None:
            sim = (a @ b.T).astype(np.float32)
            tensors["paired_a"] = a
            tensors["paired_b"] = b
        tensors[f"{name}_sim"] = sim
        cases.append({"name": name, "labels_a": la.tolist(), "labels_b": lb.tolist(),
                      "a_to_b": retrieval_np(sim, la, lb), "b_to_a": retrieval_np(sim.T.copy(), lb, la)})

    # Classification: 500 samples, 7 classes, logits with ties (quantised).
    n, c = 500, 7
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) * 1.5
    logits[np.arange(n), y] += 1.2
    logits = (np.round(logits * 2) / 2).astype(np.float32)
    pred = np.argmax(logits, axis=1)
    # A label never predicted and a predicted label never true exercise
    # sklearn's zero_division=0 path: shift class 6 predictions to 5.
    pred[pred == 6] = 5
    tensors["cls_logits"] = logits
    probs = np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    conf = probs.max(1)
    hits = (np.argmax(probs, 1) == y).astype(np.float64)
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += abs(conf[m].mean() - hits[m].mean()) * m.mean()
    # alignment entropy of softmax rows (natural log) of the paired similarity / 0.1 and of the logits
    def ent(x, t):
        z = x.astype(np.float64) / t
        z = z - z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        lp = np.log(np.where(p > 0, p, 1.0))
        return float(np.mean(-(p * lp).sum(1)))

    cls = {
        "labels": y.tolist(), "pred": pred.tolist(),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "confusion": confusion_matrix(y, pred).tolist(),
        "top1": float(top_k_accuracy_score(y, logits, k=1, labels=np.arange(c))),
        "top3": float(top_k_accuracy_score(y, logits, k=3, labels=np.arange(c))),
        "top5": float(top_k_accuracy_score(y, logits, k=5, labels=np.arange(c))),
        "ece_15": float(ece),
        "entropy_logits_t1": ent(logits, 1.0),
        "entropy_paired_t0_1": ent(tensors["paired_sim"], 0.1),
        "string_labels": {"y": ["cat", "dog", "bird", "dog", "cat", "fish"], "p": ["cat", "cat", "bird", "dog", "dog", "dog"]},
    }
    s = cls["string_labels"]
    s["accuracy"] = float(accuracy_score(s["y"], s["p"]))
    s["macro_f1"] = float(f1_score(s["y"], s["p"], average="macro", zero_division=0))
    s["confusion"] = confusion_matrix(s["y"], s["p"]).tolist()
    s["labels_sorted"] = sorted(set(s["y"]) | set(s["p"]))
    save_tensors(os.path.join(OUT, "ranking.safetensors"), tensors)
    write_json(os.path.join(OUT, "ranking.json"), {"retrieval": cases, "classification": cls,
                                                    "ece_binning": "15 equal-width bins (lo, hi] over max softmax probability"})


def main():
    os.makedirs(OUT, exist_ok=True)
    coco = json.load(open(COCO, encoding="utf-8"))
    pairs = asterisk_pairs()
    vers = {k: version(k) for k in ["sacrebleu", "rouge-score", "nltk", "pycocoevalcap", "jiwer", "rapidfuzz",
                                    "torchmetrics", "torch", "numpy", "scikit-learn", "sentence-transformers"]}
    import subprocess
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    vers["java"] = java
    text = {"versions": vers, "asterisk_pairs": len(pairs),
            "bleu": make_bleu(pairs, coco), "rouge": make_rouge(pairs, coco),
            "cider": make_cider(coco), "wer": make_wer(pairs)}
    write_json(os.path.join(OUT, "text_metrics.json"), text, compact=True)
    make_clipscore(coco)
    make_ranking()
    print(f"wrote fixtures to {OUT} ({len(pairs)} Asterisk pairs)")


if __name__ == "__main__":
    main()
