#!/usr/bin/env python3
"""BERT / sentence-transformers parity fixtures for mosaic-models (fixtures/text/).

    MOSAIC_HOME=... .venv-ref/bin/python scripts/reference/make_text_model_fixtures.py [FIXTURES_ROOT]

FIXTURES_ROOT defaults to crates/mosaic-models/tests/fixtures. Runs on the CPU
with one torch thread (deterministic; reruns rewrite byte-identical files) and
never touches the network (HF_HUB_OFFLINE=1; the real model is loaded from
$MOSAIC_HOME/assets/minilm-l6-v2/).

Files (see crates/mosaic-models/tests/fixtures/README.md):
  text/bert_tiny/{config.json,model.safetensors}           random BertModel, hidden_act="gelu"
  text/bert_tiny_gelu_new/{config.json,model.safetensors}  same weights, hidden_act="gelu_new"
  text/bert_tiny_io.safetensors                            fixed inputs + outputs of both tiny models
  text/bert_tiny_io.json                                   metadata and cross-check numbers
  text/minilm_real.safetensors                             SentenceTransformer.encode of 590 real sentences,
                                                           raw BertModel outputs for 8 + 1 sentences
  text/minilm_real.json                                    module stack, pooling, tokenizer settings, checks

Every run also re-derives the outputs with an independent float64 numpy
write-up of the forward pass described in the README (embeddings, masked
attention, GELU, pooler, mean pooling, L2 normalize) and asserts agreement, so
the description there is checked, not recalled.
"""

import importlib.metadata as md
import json
import math
import os
import shutil
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import REPO_ROOT, asset, out_dir, rel, save_tensors, sha256_file, versions, write_json  # noqa: E402

import numpy as np  # noqa: E402
import scipy.special  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

torch.set_num_threads(1)

MODELS_FIXTURES = os.path.join(REPO_ROOT, "crates", "mosaic-models", "tests", "fixtures")

TINY_CONFIG = dict(
    vocab_size=1000,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
)
TINY_ACTS = ["gelu", "gelu_new"]
IO_SEED = 20240611
BATCH, SEQ = 3, 12
PAD_COUNTS = [0, 4, 7]  # right padding (id 0, mask 0) per row
SEGMENT_B = 5  # row 0: token_type_ids = 1 on its last 5 positions

MINILM = "minilm-l6-v2"
ENCODE_BATCH = 32
N_RAW = 8


def all_versions():
    v = versions()
    v["sentence-transformers"] = md.version("sentence-transformers")
    v["safetensors"] = md.version("safetensors")
    return v


def maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


# ---------------------------------------------------------------------------
# Independent float64 write-up of BertModel.forward (transformers 5.24, eval)
# ---------------------------------------------------------------------------


def np_layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)  # biased variance
    return (x - mu) / np.sqrt(var + eps) * w + b


def np_gelu(x, kind):
    if kind == "gelu":  # exact, erf based
        return 0.5 * x * (1.0 + scipy.special.erf(x / math.sqrt(2.0)))
    if kind == "gelu_new":  # tanh approximation
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    raise ValueError(kind)


def np_linear(x, w, b):
    return x @ w.T + b


def np_bert(weights, cfg, input_ids, attention_mask, token_type_ids):
    """Returns (last_hidden_state, pooler_output) in float64."""
    W = {k: v.astype(np.float64) for k, v in weights.items() if v.dtype == np.float32}
    eps = cfg["layer_norm_eps"]
    H = cfg["num_attention_heads"]
    B, L = input_ids.shape
    x = (
        W["embeddings.word_embeddings.weight"][input_ids]
        + W["embeddings.position_embeddings.weight"][np.arange(L)][None]
        + W["embeddings.token_type_embeddings.weight"][token_type_ids]
    )
    x = np_layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    D = x.shape[-1]
    d = D // H
    keep = attention_mask.astype(bool)[:, None, None, :]  # [B,1,1,L]: masks keys only
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def heads(t):
            return t.reshape(B, L, H, d).transpose(0, 2, 1, 3)

        q = heads(np_linear(x, W[p + "attention.self.query.weight"], W[p + "attention.self.query.bias"]))
        k = heads(np_linear(x, W[p + "attention.self.key.weight"], W[p + "attention.self.key.bias"]))
        v = heads(np_linear(x, W[p + "attention.self.value.weight"], W[p + "attention.self.value.bias"]))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
        s = np.where(keep, s, -np.inf)
        s = s - s.max(-1, keepdims=True)
        e = np.exp(s)
        a = (e / e.sum(-1, keepdims=True)) @ v  # [B,H,L,d]
        a = a.transpose(0, 2, 1, 3).reshape(B, L, D)
        a = np_linear(a, W[p + "attention.output.dense.weight"], W[p + "attention.output.dense.bias"])
        ln = p + "attention.output.LayerNorm."
        a = np_layer_norm(a + x, W[ln + "weight"], W[ln + "bias"], eps)
        h = np_linear(a, W[p + "intermediate.dense.weight"], W[p + "intermediate.dense.bias"])
        h = np_gelu(h, cfg["hidden_act"])
        h = np_linear(h, W[p + "output.dense.weight"], W[p + "output.dense.bias"])
        x = np_layer_norm(h + a, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"], eps)
    pooled = None
    if "pooler.dense.weight" in W:
        pooled = np.tanh(np_linear(x[:, 0], W["pooler.dense.weight"], W["pooler.dense.bias"]))
    return x, pooled


def np_mean_pool(tok, mask):
    m = mask.astype(np.float64)[..., None]
    return (tok * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def np_l2_normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------
# a/b: tiny random BERTs
# ---------------------------------------------------------------------------


def randomize(model):
    """Overwrite every parameter with seeded values of a useful scale.

    The default init (N(0, 0.02) weights, zero biases, LayerNorm 1/0) would
    leave attention almost uniform, GELU almost linear and biases / LayerNorm
    affine untested. Parameters are visited in sorted-name order.
    """
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embeddings" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:  # Linear weights [out, in]
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def tiny_inputs():
    rng = np.random.default_rng(IO_SEED)
    ids = rng.integers(0, TINY_CONFIG["vocab_size"], size=(BATCH, SEQ), dtype=np.int64)
    mask = np.ones((BATCH, SEQ), dtype=np.int64)
    for r, n in enumerate(PAD_COUNTS):
        if n:
            ids[r, SEQ - n :] = 0
            mask[r, SEQ - n :] = 0
    tt = np.zeros((BATCH, SEQ), dtype=np.int64)
    tt[0, SEQ - SEGMENT_B :] = 1
    return ids, mask, tt


def make_tiny(out):
    from transformers import BertConfig, BertModel

    ids, mask, tt = tiny_inputs()
    t_in = dict(
        input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), token_type_ids=torch.from_numpy(tt)
    )
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}
    meta = {
        "versions": all_versions(),
        "config": dict(TINY_CONFIG),
        "inputs": {
            "seed": IO_SEED,
            "call": "np.random.default_rng(seed).integers(0, 1000, size=(3, 12), dtype=np.int64)",
            "pad_counts": PAD_COUNTS,
            "segment_b_row0_last": SEGMENT_B,
        },
        "models": {},
    }
    outs = {}
    for act in TINY_ACTS:
        torch.manual_seed(0)
        cfg = BertConfig(hidden_act=act, **TINY_CONFIG)
        model = BertModel(cfg)
        randomize(model)
        model.eval()
        d = os.path.join(out, "bert_tiny" if act == "gelu" else f"bert_tiny_{act}")
        if os.path.isdir(d):
            shutil.rmtree(d)
        model.save_pretrained(d, safe_serialization=True)
        for f in os.listdir(d):
            os.chmod(os.path.join(d, f), 0o644)
        # reload from disk: the outputs belong to the saved files
        model = BertModel.from_pretrained(d)
        model.eval()
        attn = model.config._attn_implementation
        with torch.no_grad():
            o = model(**t_in)
        lhs = o.last_hidden_state.numpy()
        pool = o.pooler_output.numpy()
        assert lhs.dtype == np.float32 and lhs.shape == (BATCH, SEQ, 32) and pool.shape == (BATCH, 32)
        tensors[f"{act}/last_hidden_state"] = lhs
        tensors[f"{act}/pooler_output"] = pool
        outs[act] = (lhs, pool)

        # eager attention (additive finfo.min mask) vs the default sdpa
        model.set_attn_implementation("eager")
        with torch.no_grad():
            oe = model(**t_in)
        # no mask / no token types: transformers' defaults (all ones / all zeros)
        model.set_attn_implementation(attn)
        with torch.no_grad():
            on = model(input_ids=t_in["input_ids"][:1, : SEQ - SEGMENT_B])
            ox = model(
                input_ids=t_in["input_ids"][:1, : SEQ - SEGMENT_B],
                attention_mask=torch.ones(1, SEQ - SEGMENT_B, dtype=torch.int64),
                token_type_ids=torch.zeros(1, SEQ - SEGMENT_B, dtype=torch.int64),
            )
        assert torch.equal(on.last_hidden_state, ox.last_hidden_state)

        weights = load_file(os.path.join(d, "model.safetensors"))
        ref_lhs, ref_pool = np_bert(weights, {**TINY_CONFIG, "hidden_act": act}, ids, mask, tt)
        d_np = max(maxdiff(ref_lhs, lhs), maxdiff(ref_pool, pool))
        assert d_np < 2e-5, (act, d_np)
        meta["models"][act] = {
            "dir": os.path.basename(d),
            "files": {f: sha256_file(os.path.join(d, f)) for f in sorted(os.listdir(d))},
            "weight_keys": sorted(weights),
            "attn_implementation_default": attn,
            "max_abs_diff_eager_vs_sdpa": {
                "last_hidden_state": maxdiff(oe.last_hidden_state, lhs),
                "pooler_output": maxdiff(oe.pooler_output, pool),
            },
            "max_abs_diff_numpy_f64_writeup": d_np,
        }
    meta["max_abs_diff_gelu_vs_gelu_new"] = {
        "last_hidden_state": maxdiff(outs["gelu"][0], outs["gelu_new"][0]),
        "pooler_output": maxdiff(outs["gelu"][1], outs["gelu_new"][1]),
    }
    assert meta["max_abs_diff_gelu_vs_gelu_new"]["last_hidden_state"] > 1e-4
    save_tensors(os.path.join(out, "bert_tiny_io.safetensors"), tensors)
    write_json(os.path.join(out, "bert_tiny_io.json"), meta)


# ---------------------------------------------------------------------------
# c: real all-MiniLM-L6-v2 through sentence-transformers
# ---------------------------------------------------------------------------


def load_sentences():
    p = os.path.join(REPO_ROOT, "crates", "mosaic-data", "tests", "fixtures", "text", "sentences.json")
    with open(p, encoding="utf-8") as f:
        real = json.load(f)["real"]
    assert len(real) == 590, len(real)
    return real


def make_minilm(out):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoModel, AutoTokenizer

    adir = os.path.dirname(asset(MINILM, "config.json"))
    sentences = load_sentences()

    st = SentenceTransformer(adir, device="cpu")
    st.eval()
    mods = [type(m).__name__ for m in st]
    assert isinstance(st[0], Transformer) and isinstance(st[1], Pooling) and isinstance(st[2], Normalize), mods
    emb = st.encode(
        sentences, batch_size=ENCODE_BATCH, convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False
    )
    assert emb.dtype == np.float32 and emb.shape == (590, 384), (emb.dtype, emb.shape)

    tr = st[0]
    bert = tr.model
    max_seq = tr.max_seq_length
    tok = tr.tokenizer
    backend = tok._tokenizer  # tokenizers.Tokenizer behind the transformers wrapper

    # token counts: as ST tokenizes (truncation at max_seq_length) and untruncated
    lens_st = np.array([int(st.preprocess([s])["attention_mask"].sum()) for s in sentences], dtype=np.int64)
    lens_full = [len(tok(s)["input_ids"]) for s in sentences]
    truncated = [i for i, (a, b) in enumerate(zip(lens_st, lens_full)) if a != b]

    # raw BertModel outputs for a padded batch, with an independently loaded model/tokenizer
    hf_tok = AutoTokenizer.from_pretrained(adir)
    hf_model = AutoModel.from_pretrained(adir)
    hf_model.eval()
    longest = int(np.argmax(lens_st))
    groups = {"first8": list(range(N_RAW)), "longest": [longest]}
    tensors = {"embeddings": emb, "token_lengths": lens_st}
    weights = load_file(os.path.join(adir, "model.safetensors"))
    cfg = json.load(open(os.path.join(adir, "config.json")))
    checks = {}
    for name, idx in groups.items():
        batch = [sentences[i] for i in idx]
        feats = st.preprocess(batch)
        enc = hf_tok(batch, padding=True, truncation=True, max_length=max_seq, return_tensors="pt")
        for k in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(enc[k], feats[k]), (name, k)
        with torch.no_grad():
            o = hf_model(**enc)
            o_st = st.forward(dict(feats))
        lhs = o.last_hidden_state.numpy()
        # sentence-transformers' own modules on the same padded batch
        assert torch.equal(o_st["token_embeddings"], o.last_hidden_state), name
        pooled_st = st[1](
            {"token_embeddings": o.last_hidden_state, "attention_mask": enc["attention_mask"]}
        )["sentence_embedding"].numpy()
        sent = o_st["sentence_embedding"].numpy()
        for k in ("input_ids", "attention_mask", "token_type_ids"):
            tensors[f"{name}/{k}"] = enc[k].numpy().astype(np.int64)
        tensors[f"{name}/last_hidden_state"] = lhs
        tensors[f"{name}/mean_pooled"] = pooled_st
        tensors[f"{name}/sentence_embedding"] = sent

        ids = enc["input_ids"].numpy()
        mask = enc["attention_mask"].numpy()
        ref_lhs, _ = np_bert(weights, cfg, ids, mask, enc["token_type_ids"].numpy())
        ref_pool = np_mean_pool(ref_lhs, mask)
        ref_sent = np_l2_normalize(ref_pool)
        hf_model.set_attn_implementation("eager")
        with torch.no_grad():
            oe = hf_model(**enc)
        hf_model.set_attn_implementation("sdpa")
        c = {
            "indices": idx,
            "shape": list(lhs.shape),
            "max_abs_diff_numpy_f64_writeup": {
                "last_hidden_state": maxdiff(ref_lhs, lhs),
                "last_hidden_state_valid_tokens_only": maxdiff(ref_lhs[mask == 1], lhs[mask == 1]),
                "mean_pooled": maxdiff(ref_pool, pooled_st),
                "sentence_embedding": maxdiff(ref_sent, sent),
            },
            "max_abs_diff_eager_vs_sdpa_last_hidden_state": maxdiff(oe.last_hidden_state, lhs),
            "max_abs_diff_eager_vs_sdpa_last_hidden_state_valid_tokens_only": maxdiff(
                oe.last_hidden_state.numpy()[mask == 1], lhs[mask == 1]
            ),
            "max_abs_diff_vs_encode_embeddings": maxdiff(sent, emb[idx]),
            "max_abs_diff_numpy_mean_pool_of_torch_lhs": maxdiff(np_mean_pool(lhs.astype(np.float64), mask), pooled_st),
        }
        assert c["max_abs_diff_numpy_f64_writeup"]["last_hidden_state"] < 1e-4, c
        assert c["max_abs_diff_numpy_f64_writeup"]["sentence_embedding"] < 1e-5, c
        assert c["max_abs_diff_vs_encode_embeddings"] < 1e-5, c
        checks[name] = c

    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    pool_cfg = st[1].get_config_dict()
    meta = {
        "versions": all_versions(),
        "asset": {
            "dir": rel(adir),
            "files": {
                f: sha256_file(os.path.join(adir, f))
                for f in ["config.json", "model.safetensors", "modules.json", "tokenizer.json", "1_Pooling/config.json",
                          "sentence_bert_config.json"]
            },
        },
        "reference_call": (
            f'SentenceTransformer(assets/{MINILM}, device="cpu").encode(sentences, batch_size={ENCODE_BATCH}, '
            "convert_to_numpy=True, normalize_embeddings=False)"
        ),
        "sentences": "crates/mosaic-data/tests/fixtures/text/sentences.json key \"real\" (590, in order)",
        "modules": mods,
        "modules_json": json.load(open(os.path.join(adir, "modules.json"))),
        "has_normalize": "Normalize" in mods,
        "normalize_dir_present": os.path.isdir(os.path.join(adir, "2_Normalize")),
        "pooling": {
            "asset_1_Pooling_config": json.load(open(os.path.join(adir, "1_Pooling", "config.json"))),
            "loaded": pool_cfg,
        },
        "transformer": {
            "model_class": type(bert).__name__,
            "attn_implementation": bert.config._attn_implementation,
            "dtype": str(bert.dtype),
            "hidden_act": bert.config.hidden_act,
            "layer_norm_eps": bert.config.layer_norm_eps,
            "max_seq_length": max_seq,
            "sentence_bert_config": json.load(open(os.path.join(adir, "sentence_bert_config.json"))),
            "model_inputs": sorted(k for k in st.preprocess(sentences[:1]) if k != "modality"),
            "ignored_checkpoint_keys": sorted(set(weights) - set(bert.state_dict())),
        },
        "tokenizer": {
            "class": type(tok).__name__,
            "model_max_length": tok.model_max_length,
            "st_call": "padding=True (longest in batch, right, id 0), truncation='longest_first', "
            "max_length=max_seq_length",
            "tokenizer_json_truncation": json.load(open(os.path.join(adir, "tokenizer.json")))["truncation"],
            "tokenizer_json_padding": json.load(open(os.path.join(adir, "tokenizer.json")))["padding"],
            "backend_truncation_after_load": backend.truncation,
            "backend_padding_after_load": backend.padding,
            "token_length_max": int(lens_st.max()),
            "token_length_min": int(lens_st.min()),
            "num_over_128_tokens": int((lens_st > 128).sum()),
            "indices_over_128_tokens": [int(i) for i in np.nonzero(lens_st > 128)[0]],
            "num_truncated_at_max_seq_length": len(truncated),
        },
        "encode_order": "encode sorts by text length (descending, len of the string) and batches 32 at a time; "
        "results are put back in input order. Padding therefore differs from the first8 batch.",
        "embedding_norm_min_max": [float(norms.min()), float(norms.max())],
        "raw_batches": checks,
    }
    save_tensors(os.path.join(out, "minilm_real.safetensors"), tensors)
    write_json(os.path.join(out, "minilm_real.json"), meta)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else MODELS_FIXTURES
    out = out_dir("text", [sys.argv[0], root])
    make_tiny(out)
    make_minilm(out)
    total = 0
    for dp, _, fs in os.walk(out):
        for f in sorted(fs):
            p = os.path.join(dp, f)
            total += os.path.getsize(p)
            print(f"{os.path.getsize(p):>9}  {os.path.relpath(p, root)}")
    print(f"{total:>9}  total")


if __name__ == "__main__":
    main()
