#!/usr/bin/env python3
"""Parity fixtures for the pretrained model families of mosaic-models (fixtures/families/).

    .venv-ref/bin/python scripts/reference/make_family_fixtures.py [FIXTURES_ROOT] [--only NAME ...]

FIXTURES_ROOT defaults to crates/mosaic-models/tests/fixtures; NAME is one of
siglip_tiny, resnet_tiny (writes resnet_tiny and resnet_basic_tiny),
blip_itm_tiny, blip_caption_tiny, llava_tiny, vit_sharded (default: all). Runs
on the CPU with one torch thread (deterministic; reruns rewrite byte-identical
files) and never touches the network (HF_HUB_OFFLINE=1). No asset is needed:
every checkpoint is a tiny random model, except vit_sharded, a re-save of
fixtures/vision/vit_tiny (written by make_vision_model_fixtures.py).

Files (see crates/mosaic-models/tests/fixtures/README.md, section families/):
  families/<name>/{config.json,model.safetensors}   random model, save_pretrained(dir, safe_serialization=True)
  families/<name>_io.safetensors                    fixed inputs + reference outputs (F32 / I64)
  families/<name>_io.json                           config, input recipe, weight keys, forward-pass
                                                    notes, numpy-vs-torch and other checks
  families/vit_sharded/{config.json,model.safetensors.index.json,model-0000i-of-0000n.safetensors}
  families/vit_sharded_io.json                      shard layout; outputs = vision/tiny_io.safetensors vit/*

Every run re-derives the outputs with independent float64 numpy write-ups of
the forward passes described in the README (SigLIP both towers + MAP head +
logits, ResNet bottleneck and basic, BLIP ITM both heads, BLIP caption decoder,
LLaVA vision feature select + projector + Llama) and asserts agreement; the
greedy generations are also replayed from numpy teacher-forced logits, so the
description there is checked, not recalled.
"""

import importlib.metadata as md
import json
import math
import os
import shutil
import sys
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import REPO_ROOT, out_dir, save_tensors, sha256_file, versions, write_json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from scipy.special import erf  # noqa: E402

warnings.filterwarnings("ignore")
torch.set_num_threads(1)

MODELS_FIXTURES = os.path.join(REPO_ROOT, "crates", "mosaic-models", "tests", "fixtures")
GENERATOR = "scripts/reference/make_family_fixtures.py"
PARAM_SEED = 1234
TOL = 2e-5  # numpy f64 write-up vs torch f32, absolute (values are O(1..10))

FAMILIES = ["siglip_tiny", "resnet_tiny", "blip_itm_tiny", "blip_caption_tiny", "llava_tiny", "vit_sharded"]


def all_versions():
    v = versions()
    v["safetensors"] = md.version("safetensors")
    return v


def maxdiff(a, b):
    a = a.numpy() if isinstance(a, torch.Tensor) else a
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def quiet_transformers():
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


# ---------------------------------------------------------------------------
# Re-randomisation and saving
# ---------------------------------------------------------------------------


def randomize(model, seed=PARAM_SEED):
    """Overwrite every parameter (and BatchNorm running stats) with seeded values of a useful scale.

    g = torch.Generator().manual_seed(1234); parameters visited in sorted in-memory
    name order (model.named_parameters(), tied parameters once), then buffers in
    sorted name order. Parameters of a norm module (nn.LayerNorm, nn.BatchNorm2d,
    *RMSNorm): weight 1 + 0.1 randn, bias 0.1 randn. logit_scale 2.3 + 0.1 randn;
    logit_bias -1 + 0.1 randn. Any other *bias (incl. in_proj_bias,
    cls.predictions.bias) 0.1 randn. nn.Conv2d weights randn / sqrt(fan_in)
    (fan_in = in/groups * kh * kw). nn.Embedding weights, class_embedding,
    cls_token, probe, position tables 0.5 randn. Everything else (Linear weights,
    in_proj_weight) 0.2 randn. Buffers: BatchNorm running_mean 0.1 randn,
    running_var 0.5 + rand (uniform [0,1)); num_batches_tracked stays 0.
    """
    import torch.nn as nn

    owner = {}
    for mname, mod in model.named_modules(remove_duplicate=False):
        for pname, _ in mod.named_parameters(recurse=False):
            owner[f"{mname}.{pname}" if mname else pname] = mod
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            mod = owner[name]
            leaf = name.rsplit(".", 1)[-1]
            is_norm = isinstance(mod, (nn.LayerNorm, nn.BatchNorm2d)) or type(mod).__name__.endswith("RMSNorm")
            if is_norm and leaf == "weight":
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif name == "logit_scale":
                v = 2.3 + 0.1 * torch.randn(p.shape, generator=g)
            elif name == "logit_bias":
                v = -1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif leaf.endswith("bias"):
                v = 0.1 * torch.randn(p.shape, generator=g)
            elif isinstance(mod, nn.Conv2d):
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                v = torch.randn(p.shape, generator=g) / math.sqrt(fan_in)
            elif isinstance(mod, nn.Embedding) or leaf in (
                "class_embedding",
                "cls_token",
                "probe",
                "position_embedding",
                "position_embeddings",
            ):
                v = 0.5 * torch.randn(p.shape, generator=g)
            else:
                v = 0.2 * torch.randn(p.shape, generator=g)
            p.copy_(v)
        for name, b in sorted(model.named_buffers()):
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def save_model(model, d, **kw):
    if os.path.isdir(d):
        shutil.rmtree(d)
    model.save_pretrained(d, safe_serialization=True, **kw)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)


def load_checked(cls, d):
    model, info = cls.from_pretrained(d, output_loading_info=True)
    bad = {k: info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)}
    assert not bad, bad
    model.eval()
    return model


def files_info(d):
    return {f: {"bytes": os.path.getsize(os.path.join(d, f)), "sha256": sha256_file(os.path.join(d, f))} for f in sorted(os.listdir(d))}


def key_table(w):
    """[[name, dtype, shape], ...] of a safetensors dict, sorted by name."""
    return [[k, str(w[k].dtype), list(w[k].shape)] for k in sorted(w)]


def common_meta(name, cls, config_call, d, w, model):
    return {
        "generator": GENERATOR,
        "versions": all_versions(),
        "family": name,
        "dir": name,
        "class": cls,
        "config_call": config_call,
        "config_json": json.load(open(os.path.join(d, "config.json"))),
        "files": files_info(d),
        "param_init": {"torch_manual_seed": 0, "randomize_seed": PARAM_SEED, "rule": " ".join(randomize.__doc__.split())},
        "weights_on_disk": key_table(w),
        "weights_in_memory": sorted(model.state_dict()),
        "attn_implementation_default": model.config._attn_implementation,
    }


def finish(out, name, tensors, meta):
    for k, v in tensors.items():
        assert v.dtype in (np.float32, np.int64), (k, v.dtype)
    save_tensors(os.path.join(out, f"{name}_io.safetensors"), tensors)
    meta["io_keys"] = [[k, str(tensors[k].dtype), list(tensors[k].shape)] for k in sorted(tensors)]
    write_json(os.path.join(out, f"{name}_io.json"), meta)


# ---------------------------------------------------------------------------
# numpy float64 building blocks
# ---------------------------------------------------------------------------


def f64(W):
    return {k: v.astype(np.float64) for k, v in W.items() if v.dtype != np.int64}


def np_ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def ln(W, p, eps):
    return lambda x: np_ln(x, W[p + ".weight"], W[p + ".bias"], eps)


def np_lin(x, W, p, bias=True):
    y = x @ W[p + ".weight"].T
    return y + W[p + ".bias"] if bias and (p + ".bias") in W else y


ACTS = {
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0))),
    "gelu_pytorch_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
    "quick_gelu": lambda x: x / (1.0 + np.exp(-1.702 * x)),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0.0),
}


def softmax(s):
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


def np_mha(q, k, v, heads, kv_heads=None, keep=None):
    """q [B,Lq,H*d], k/v [B,Lk,KV*d] (already projected); keep bool broadcastable to [B,H,Lq,Lk].

    Query head h uses key/value head h // (H / KV) (transformers' repeat_kv)."""
    kv_heads = kv_heads or heads
    B, Lq, D = q.shape
    Lk = k.shape[1]
    d = D // heads
    Q = q.reshape(B, Lq, heads, d).transpose(0, 2, 1, 3)
    K = k.reshape(B, Lk, kv_heads, d).transpose(0, 2, 1, 3)
    V = v.reshape(B, Lk, kv_heads, d).transpose(0, 2, 1, 3)
    rep = heads // kv_heads
    K, V = np.repeat(K, rep, axis=1), np.repeat(V, rep, axis=1)
    s = Q @ K.transpose(0, 1, 3, 2) * d**-0.5
    if keep is not None:
        s = np.where(keep, s, -np.inf)
    a = softmax(s) @ V
    return a.transpose(0, 2, 1, 3).reshape(B, Lq, D)


def np_patches(pix, w, b, p):
    """Conv2d(kernel = stride = p) as a matmul: [B, N, D], patches row-major (y, x)."""
    B, C, H, Wd = pix.shape
    gh, gw = H // p, Wd // p
    t = pix.reshape(B, C, gh, p, gw, p).transpose(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * p * p)
    y = t @ w.reshape(w.shape[0], -1).T
    return y + b if b is not None else y


def np_prenorm_layers(x, W, prefix, n, heads, eps, act, keep=None, qkv="split", out="out_proj", upto=None):
    """CLIP / SigLIP / BLIP-vision encoder layers (pre-norm). Returns the list of hidden states
    [input, after layer 0, ...] (transformers' hidden_states)."""
    hs = [x]
    for i in range(n if upto is None else upto):
        p = f"{prefix}.encoder.layers.{i}."
        h = np_ln(x, W[p + "layer_norm1.weight"], W[p + "layer_norm1.bias"], eps)
        a = p + "self_attn."
        if qkv == "split":
            q, k, v = np_lin(h, W, a + "q_proj"), np_lin(h, W, a + "k_proj"), np_lin(h, W, a + "v_proj")
        else:  # BLIP: one Linear [3D, D]; rows 0..D-1 = q, D..2D-1 = k, 2D..3D-1 = v
            q, k, v = np.split(np_lin(h, W, a + "qkv"), 3, axis=-1)
        x = x + np_lin(np_mha(q, k, v, heads, keep=keep), W, a + out)
        h = np_ln(x, W[p + "layer_norm2.weight"], W[p + "layer_norm2.bias"], eps)
        x = x + np_lin(ACTS[act](np_lin(h, W, p + "mlp.fc1")), W, p + "mlp.fc2")
        hs.append(x)
    return hs


def l2n(x, eps=None):
    n = np.sqrt((x**2).sum(-1, keepdims=True))
    return x / (np.maximum(n, eps) if eps else n)


# ---------------------------------------------------------------------------
# 1. SigLIP
# ---------------------------------------------------------------------------

SIGLIP_TEXT = dict(
    vocab_size=500,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=16,
    pad_token_id=1,
    eos_token_id=1,
    bos_token_id=None,
)
SIGLIP_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
)
SIGLIP_SEED = 20250101
SIGLIP_LENS = [5, 10, 15]  # text tokens before the eos per row; T = 16


def siglip_inputs():
    rng = np.random.default_rng(SIGLIP_SEED)
    pix = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    T = SIGLIP_TEXT["max_position_embeddings"]
    ids = np.full((3, T), SIGLIP_TEXT["pad_token_id"], dtype=np.int64)
    for r, n in enumerate(SIGLIP_LENS):
        ids[r, :n] = rng.integers(2, SIGLIP_TEXT["vocab_size"], size=n, dtype=np.int64)
        ids[r, n] = SIGLIP_TEXT["eos_token_id"]
    return pix, ids


def np_siglip(W, cfg, pix, ids):
    vc, tc = cfg["vision_config"], cfg["text_config"]
    W = f64(W)
    ve, te = vc["layer_norm_eps"], tc["layer_norm_eps"]
    # vision
    x = np_patches(
        pix.astype(np.float64),
        W["vision_model.embeddings.patch_embedding.weight"],
        W["vision_model.embeddings.patch_embedding.bias"],
        vc["patch_size"],
    )
    x = x + W["vision_model.embeddings.position_embedding.weight"][None]
    x = np_prenorm_layers(x, W, "vision_model", vc["num_hidden_layers"], vc["num_attention_heads"], ve, vc["hidden_act"])[-1]
    v_lhs = ln(W, "vision_model.post_layernorm", ve)(x)
    # MAP head: nn.MultiheadAttention(probe, lhs, lhs)
    D = vc["hidden_size"]
    hp = "vision_model.head."
    Wi, bi = W[hp + "attention.in_proj_weight"], W[hp + "attention.in_proj_bias"]
    probe = np.broadcast_to(W[hp + "probe"], (x.shape[0], 1, D))
    q = probe @ Wi[:D].T + bi[:D]
    k = v_lhs @ Wi[D : 2 * D].T + bi[D : 2 * D]
    v = v_lhs @ Wi[2 * D :].T + bi[2 * D :]
    a = np_lin(np_mha(q, k, v, vc["num_attention_heads"]), W, hp + "attention.out_proj")
    h = ln(W, hp + "layernorm", ve)(a)
    h = a + np_lin(ACTS[vc["hidden_act"]](np_lin(h, W, hp + "mlp.fc1")), W, hp + "mlp.fc2")
    v_pool = h[:, 0]
    # text: no mask at all
    L = ids.shape[1]
    x = W["text_model.embeddings.token_embedding.weight"][ids] + W["text_model.embeddings.position_embedding.weight"][:L][None]
    x = np_prenorm_layers(x, W, "text_model", tc["num_hidden_layers"], tc["num_attention_heads"], te, tc["hidden_act"])[-1]
    t_lhs = ln(W, "text_model.final_layer_norm", te)(x)
    t_pool = np_lin(t_lhs[:, -1], W, "text_model.head")
    ie, tex = l2n(v_pool), l2n(t_pool)
    lpt = tex @ ie.T * np.exp(W["logit_scale"][0]) + W["logit_bias"][0]
    return {
        "vision/last_hidden_state": v_lhs,
        "vision/pooler_output": v_pool,
        "image_features": v_pool,
        "text/last_hidden_state": t_lhs,
        "text/pooler_output": t_pool,
        "text_features": t_pool,
        "image_embeds": ie,
        "text_embeds": tex,
        "logits_per_text": lpt,
        "logits_per_image": lpt.T,
    }


def make_siglip(out):
    from transformers import SiglipConfig, SiglipModel

    name = "siglip_tiny"
    pix, ids = siglip_inputs()
    tp, ti = torch.from_numpy(pix), torch.from_numpy(ids)
    torch.manual_seed(0)
    model = SiglipModel(SiglipConfig(text_config=dict(SIGLIP_TEXT), vision_config=dict(SIGLIP_VISION)))
    randomize(model)
    d = os.path.join(out, name)
    save_model(model, d)
    model = load_checked(SiglipModel, d)
    w = load_file(os.path.join(d, "model.safetensors"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    with torch.no_grad():
        o = model(input_ids=ti, pixel_values=tp)
        imf = model.get_image_features(pixel_values=tp)
        txf = model.get_text_features(input_ids=ti)
        vo = model.vision_model(pixel_values=tp)
        to = model.text_model(input_ids=ti)
        mask = torch.from_numpy((np.arange(ids.shape[1])[None] <= np.array(SIGLIP_LENS)[:, None]).astype(np.int64))
        txf_mask = model.get_text_features(input_ids=ti, attention_mask=mask)
    res = {
        "image_embeds": o.image_embeds,
        "text_embeds": o.text_embeds,
        "logits_per_image": o.logits_per_image,
        "logits_per_text": o.logits_per_text,
        "image_features": imf.pooler_output,
        "text_features": txf.pooler_output,
        "vision/last_hidden_state": vo.last_hidden_state,
        "vision/pooler_output": vo.pooler_output,
        "text/last_hidden_state": to.last_hidden_state,
        "text/pooler_output": to.pooler_output,
    }
    res = {k: v.numpy() for k, v in res.items()}
    # forward's sub-outputs are the towers' own outputs (no extra projection in SigLIP)
    assert torch.equal(o.vision_model_output.pooler_output, imf.pooler_output)
    assert torch.equal(o.text_model_output.pooler_output, txf.pooler_output)
    assert np.array_equal(res["image_features"], res["vision/pooler_output"])
    ref = np_siglip(w, cfg, pix, ids)
    d_np = {k: maxdiff(ref[k], res[k]) for k in res}
    assert max(d_np.values()) < TOL, d_np
    model.set_attn_implementation("eager")
    with torch.no_grad():
        oe = model(input_ids=ti, pixel_values=tp)
    model.set_attn_implementation("sdpa")
    # what the mask would change (it is NOT passed in the reference call)
    pooled_mask = txf_mask.pooler_output.numpy()
    tensors = {"pixel_values": pix, "input_ids": ids}
    tensors.update(res)
    tc = cfg["text_config"]
    meta = common_meta(
        name, "SiglipModel", {"text_config": SIGLIP_TEXT, "vision_config": SIGLIP_VISION}, d, w, model
    )
    meta.update(
        {
            "inputs": {
                "seed": SIGLIP_SEED,
                "pixel_values": "rng = np.random.default_rng(seed); rng.standard_normal((2, 3, 32, 32)).astype(np.float32)",
                "input_ids": "[3, 16] filled with pad id 1; row r: positions 0..n_r-1 = rng.integers(2, 500, n_r) "
                "(drawn after pixel_values, row by row), position n_r = eos id 1, rest pad id 1 "
                "(padding='max_length' style, as SiglipTokenizer: pad == eos == '</s>' = 1, no bos)",
                "n_text_tokens": SIGLIP_LENS,
                "attention_mask": "none: the reference calls never pass one",
            },
            "reference_calls": {
                "model": "SiglipModel.from_pretrained(dir).eval(), torch.no_grad()",
                "forward": "model(input_ids=input_ids, pixel_values=pixel_values) -> image_embeds, text_embeds, "
                "logits_per_image, logits_per_text",
                "image_features": "model.get_image_features(pixel_values=...).pooler_output",
                "text_features": "model.get_text_features(input_ids=...).pooler_output",
                "vision": "model.vision_model(pixel_values=...) -> last_hidden_state, pooler_output",
                "text": "model.text_model(input_ids=...) -> last_hidden_state, pooler_output",
            },
            "forward_notes": {
                "attention_mask": "None -> create_bidirectional_mask returns None: every token (pads included) "
                "attends to every token; no causal mask in the text tower",
                "text_pooling": "pooler_output = text_model.head(last_hidden_state[:, -1]) (the LAST position, "
                "whatever token it holds; with max_length padding that is a pad/eos token). Not the eos position, "
                "not argmax.",
                "vision_pooling": "MAP head: nn.MultiheadAttention(probe, lhs, lhs) with in_proj_weight rows "
                "[q; k; v], out_proj; then h = a + mlp(layernorm(a)); pooler_output = h[:, 0]",
                "no_class_token": True,
                "vision_last_hidden_state": "post_layernorm(encoder output) (unlike CLIP, the LN is applied to all tokens)",
                "projection": "none beyond text_model.head (Linear with bias, hidden -> projection_size) and the "
                "vision MAP head; get_*_features return the towers' pooler_output",
                "normalize": "x / ||x||_2 (torch .norm, no eps)",
                "logits": "logits_per_text = text_embeds @ image_embeds.T * exp(logit_scale) + logit_bias; "
                "logits_per_image = its transpose; logit_scale and logit_bias have shape [1]",
                "activation": "gelu_pytorch_tanh = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) in every MLP "
                "(both towers and the MAP head)",
                "layer_norm_eps": {"text": tc["layer_norm_eps"], "vision": cfg["vision_config"]["layer_norm_eps"]},
                "attention_scale": "head_dim ** -0.5",
                "position_ids": "arange(L) for text (L <= max_position_embeddings, else ValueError), arange(num_patches) "
                "for vision; no interpolation unless interpolate_pos_encoding=True",
            },
            "logit_scale": float(w["logit_scale"][0]),
            "logit_scale_exp": float(np.exp(np.float64(w["logit_scale"][0]))),
            "logit_bias": float(w["logit_bias"][0]),
            "checks": {
                "max_abs_diff_numpy_f64_writeup": d_np,
                "max_abs_diff_eager_vs_sdpa": {
                    "logits_per_image": maxdiff(oe.logits_per_image, o.logits_per_image),
                    "text_embeds": maxdiff(oe.text_embeds, o.text_embeds),
                    "image_embeds": maxdiff(oe.image_embeds, o.image_embeds),
                },
                "text_features_if_attention_mask_were_passed": {
                    "note": "SiglipTokenizer (5.24) lists attention_mask in model_input_names; passing it "
                    "(1 up to and including eos) changes the result, so a port must not apply one by default",
                    "max_abs_diff_vs_reference": maxdiff(pooled_mask, res["text_features"]),
                },
            },
        }
    )
    finish(out, name, tensors, meta)
    return d_np


# ---------------------------------------------------------------------------
# 2. ResNet
# ---------------------------------------------------------------------------

RESNET_COMMON = dict(embedding_size=16, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 2, 1], num_labels=10)
RESNET_SEED = 20250102


def np_conv(x, w, stride, pad):
    """x [B,C,H,W], w [O,C,k,k], symmetric zero padding, no bias."""
    B, C, H, Wd = x.shape
    O, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (H + 2 * pad - k) // stride + 1
    ow = (Wd + 2 * pad - k) // stride + 1
    out = np.zeros((B, O, oh, ow))
    for ky in range(k):
        for kx in range(k):
            patch = xp[:, :, ky : ky + stride * (oh - 1) + 1 : stride, kx : kx + stride * (ow - 1) + 1 : stride]
            out += np.einsum("oc,bchw->bohw", w[:, :, ky, kx], patch)
    return out


def np_bn(x, W, p, eps):
    g, b = W[p + ".weight"], W[p + ".bias"]
    m, v = W[p + ".running_mean"], W[p + ".running_var"]
    s = (slice(None), None, None)
    return (x - m[s]) / np.sqrt(v[s] + eps) * g[s] + b[s]


def np_maxpool(x, k=3, s=2, pad=1):
    B, C, H, Wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    oh, ow = (H + 2 * pad - k) // s + 1, (Wd + 2 * pad - k) // s + 1
    out = np.full((B, C, oh, ow), -np.inf)
    for ky in range(k):
        for kx in range(k):
            out = np.maximum(out, xp[:, :, ky : ky + s * (oh - 1) + 1 : s, kx : kx + s * (ow - 1) + 1 : s])
    return out


def resnet_plan(cfg):
    """Per stage, per layer: (in, out, stride, has_shortcut) exactly as ResNetEncoder builds it."""
    plan = []
    ins = [cfg["embedding_size"]] + cfg["hidden_sizes"][:-1]
    for s, (cin, cout, depth) in enumerate(zip(ins, cfg["hidden_sizes"], cfg["depths"])):
        stride = (2 if cfg["downsample_in_first_stage"] else 1) if s == 0 else 2
        layers = []
        for i in range(depth):
            a, st = (cin, stride) if i == 0 else (cout, 1)
            layers.append({"in": a, "out": cout, "stride": st, "shortcut": a != cout or st != 1})
        plan.append(layers)
    return plan


def np_resnet(W, cfg, pix, eps=1e-5):
    W = f64(W)
    relu = ACTS["relu"]
    x = pix.astype(np.float64)
    p = "resnet.embedder.embedder."
    x = relu(np_bn(np_conv(x, W[p + "convolution.weight"], 2, 3), W, p + "normalization", eps))
    x = np_maxpool(x)
    hidden = [x]
    for s, layers in enumerate(resnet_plan(cfg)):
        for i, L in enumerate(layers):
            p = f"resnet.encoder.stages.{s}.layers.{i}."
            inp = x

            def cl(h, j, stride, act=True):
                wj = W[p + f"layer.{j}.convolution.weight"]
                y = np_bn(np_conv(h, wj, stride, wj.shape[-1] // 2), W, p + f"layer.{j}.normalization", eps)
                return relu(y) if act else y

            if cfg["layer_type"] == "bottleneck":
                dib = cfg["downsample_in_bottleneck"]
                h = cl(x, 0, L["stride"] if dib else 1)
                h = cl(h, 1, 1 if dib else L["stride"])
                h = cl(h, 2, 1, act=False)
            else:
                h = cl(x, 0, L["stride"])
                h = cl(h, 1, 1, act=False)
            if L["shortcut"]:
                r = np_bn(np_conv(inp, W[p + "shortcut.convolution.weight"], L["stride"], 0), W, p + "shortcut.normalization", eps)
            else:
                r = inp
            x = relu(h + r)
        hidden.append(x)
    pooled = x.mean(axis=(2, 3), keepdims=True)
    logits = pooled[:, :, 0, 0] @ W["classifier.1.weight"].T + W["classifier.1.bias"]
    out = {"logits": logits, "pooler_output": pooled, "last_hidden_state": x}
    for i, h in enumerate(hidden):
        out[f"hidden_states/{i}"] = h
    return out


def make_resnet_one(out, name, layer_type, pix):
    from transformers import ResNetConfig, ResNetForImageClassification

    call = dict(RESNET_COMMON, layer_type=layer_type)
    torch.manual_seed(0)
    model = ResNetForImageClassification(ResNetConfig(**call))
    randomize(model)
    d = os.path.join(out, name)
    save_model(model, d)
    model = load_checked(ResNetForImageClassification, d)
    assert not model.training
    w = load_file(os.path.join(d, "model.safetensors"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    tp = torch.from_numpy(pix)
    with torch.no_grad():
        o = model(pixel_values=tp)
        bo = model.resnet(pixel_values=tp, output_hidden_states=True)
    res = {"logits": o.logits, "pooler_output": bo.pooler_output, "last_hidden_state": bo.last_hidden_state}
    for i, h in enumerate(bo.hidden_states):
        res[f"hidden_states/{i}"] = h
    res = {k: v.numpy() for k, v in res.items()}
    ref = np_resnet(w, cfg, pix)
    d_np = {k: maxdiff(ref[k], res[k]) for k in res}
    assert max(d_np.values()) < TOL, d_np
    # eval() matters: train-mode BatchNorm would use batch statistics
    model.train()
    with torch.no_grad():
        o_train = model(pixel_values=tp)
    model.eval()
    plan = resnet_plan(cfg)
    bn = model.resnet.embedder.embedder.normalization
    tensors = {"pixel_values": pix}
    tensors.update(res)
    meta = common_meta(name, "ResNetForImageClassification", call, d, w, model)
    meta.update(
        {
            "inputs": {
                "seed": RESNET_SEED,
                "pixel_values": "rng = np.random.default_rng(seed); rng.standard_normal((2, 3, 64, 64)).astype(np.float32) "
                "(the same input for resnet_tiny and resnet_basic_tiny)",
            },
            "reference_calls": {
                "model": "ResNetForImageClassification.from_pretrained(dir).eval(), torch.no_grad()",
                "logits": "model(pixel_values=...).logits [B, num_labels]",
                "backbone": "model.resnet(pixel_values=..., output_hidden_states=True) -> last_hidden_state [B,C,h,w], "
                "pooler_output [B,C,1,1] (AdaptiveAvgPool2d((1,1)): NOT flattened), hidden_states (embedder output "
                "after the max pool, then every stage output)",
            },
            "config_defaults_recorded": {
                "downsample_in_first_stage": cfg["downsample_in_first_stage"],
                "downsample_in_bottleneck": cfg["downsample_in_bottleneck"],
                "hidden_act": cfg["hidden_act"],
                "num_channels": cfg["num_channels"],
            },
            "architecture": {
                "stem": "conv 7x7 stride 2 pad 3 (no bias) -> BN -> relu -> maxpool 3x3 stride 2 pad 1 (pads with -inf)",
                "stages": plan,
                "bottleneck_reduction": 4 if layer_type == "bottleneck" else None,
                "layer": (
                    "bottleneck: layer.0 = 1x1 conv in->out/4 (stride s iff downsample_in_bottleneck) BN relu; layer.1 = "
                    "3x3 conv pad 1 (stride s iff not downsample_in_bottleneck) BN relu; layer.2 = 1x1 conv ->out BN (no "
                    "act); + shortcut; relu"
                    if layer_type == "bottleneck"
                    else "basic: layer.0 = 3x3 conv pad 1 stride s BN relu; layer.1 = 3x3 conv pad 1 BN (no act); "
                    "+ shortcut; relu"
                ),
                "shortcut": "iff in != out or stride != 1: 1x1 conv stride s (no bias, pad 0) -> BN; else identity",
                "conv_padding": "kernel_size // 2 on every side (symmetric, zeros)",
                "batch_norm": {"eps": bn.eps, "momentum": bn.momentum, "eval": "(x - running_mean) / sqrt(running_var + eps) * weight + bias"},
                "head": "pooler = mean over h, w (keepdims) -> classifier.0 = Flatten -> classifier.1 = Linear(C_last, num_labels)",
                "spatial_sizes_at_64": [list(h.shape[2:]) for h in bo.hidden_states],
            },
            "notes": {
                "num_batches_tracked": "saved as I64 scalars (shape []) for every BN; ignore them",
                "hub_layout": "real checkpoints (e.g. microsoft/resnet-50) use these same names, with the resnet. prefix "
                "and classifier.1.*",
            },
            "checks": {
                "max_abs_diff_numpy_f64_writeup": d_np,
                "train_mode_batchnorm_logits_max_abs_diff": maxdiff(o_train.logits, o.logits),
            },
        }
    )
    finish(out, name, tensors, meta)
    return d_np


def make_resnet(out):
    rng = np.random.default_rng(RESNET_SEED)
    pix = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    return {
        "resnet_tiny": make_resnet_one(out, "resnet_tiny", "bottleneck", pix),
        "resnet_basic_tiny": make_resnet_one(out, "resnet_basic_tiny", "basic", pix),
    }


# ---------------------------------------------------------------------------
# BLIP (shared)
# ---------------------------------------------------------------------------

BLIP_TEXT = dict(
    vocab_size=500,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=32,
    bos_token_id=498,
    pad_token_id=0,
    sep_token_id=102,
    eos_token_id=2,
)
BLIP_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
)
BLIP_ITH = 16  # image_text_hidden_size
CLS_ID = 101  # the BERT tokenizer's [CLS] (BlipProcessor output starts with it)


def np_blip_vision(W, vc, pix, prefix="vision_model"):
    eps = vc["layer_norm_eps"]
    x = np_patches(
        pix.astype(np.float64),
        W[prefix + ".embeddings.patch_embedding.weight"],
        W[prefix + ".embeddings.patch_embedding.bias"],
        vc["patch_size"],
    )
    cls = np.broadcast_to(W[prefix + ".embeddings.class_embedding"], (x.shape[0], 1, x.shape[2]))
    x = np.concatenate([cls, x], 1) + W[prefix + ".embeddings.position_embedding"]
    x = np_prenorm_layers(
        x, W, prefix, vc["num_hidden_layers"], vc["num_attention_heads"], eps, vc["hidden_act"], qkv="fused", out="projection"
    )[-1]
    lhs = ln(W, prefix + ".post_layernorm", eps)(x)
    return lhs, ln(W, prefix + ".post_layernorm", eps)(lhs[:, 0])


def np_blip_text(W, tc, prefix, ids, mask=None, enc=None, causal=False):
    """BlipTextModel (BERT-style post-norm) with optional cross-attention to enc [B,N,Dv]."""
    eps, heads, act = tc["layer_norm_eps"], tc["num_attention_heads"], ACTS[tc["hidden_act"]]
    B, L = ids.shape
    x = W[prefix + ".embeddings.word_embeddings.weight"][ids] + W[prefix + ".embeddings.position_embeddings.weight"][:L][None]
    x = ln(W, prefix + ".embeddings.LayerNorm", eps)(x)
    keep = np.ones((B, 1, L, L), bool)
    if mask is not None:
        keep &= mask.astype(bool)[:, None, None, :]
    if causal:
        keep &= np.tril(np.ones((L, L), bool))[None, None]
    for i in range(tc["num_hidden_layers"]):
        p = f"{prefix}.encoder.layer.{i}."
        a = p + "attention."
        h = np_mha(np_lin(x, W, a + "self.query"), np_lin(x, W, a + "self.key"), np_lin(x, W, a + "self.value"), heads, keep=keep)
        x = ln(W, a + "output.LayerNorm", eps)(np_lin(h, W, a + "output.dense") + x)
        if enc is not None:
            c = p + "crossattention."
            h = np_mha(np_lin(x, W, c + "self.query"), np_lin(enc, W, c + "self.key"), np_lin(enc, W, c + "self.value"), heads)
            x = ln(W, c + "output.LayerNorm", eps)(np_lin(h, W, c + "output.dense") + x)
        h = act(np_lin(x, W, p + "intermediate.dense"))
        x = ln(W, p + "output.LayerNorm", eps)(np_lin(h, W, p + "output.dense") + x)
    return x


def blip_key_notes():
    return {
        "vision": "vision_model.embeddings.class_embedding [1,1,D], vision_model.embeddings.patch_embedding.{weight,bias} "
        "(conv WITH bias), vision_model.embeddings.position_embedding [1,N+1,D] (a Parameter, no .weight), "
        "vision_model.encoder.layers.{i}.{layer_norm1,layer_norm2}.{weight,bias}, "
        "vision_model.encoder.layers.{i}.self_attn.qkv.{weight,bias} ([3D,D]: rows q, k, v), "
        "vision_model.encoder.layers.{i}.self_attn.projection.{weight,bias}, vision_model.encoder.layers.{i}.mlp.{fc1,fc2}.{weight,bias}, "
        "vision_model.post_layernorm.{weight,bias}",
        "text": "<p>.embeddings.{word_embeddings,position_embeddings}.weight, <p>.embeddings.LayerNorm.{weight,bias} (no token types), "
        "<p>.encoder.layer.{i}.attention.self.{query,key,value}.{weight,bias}, <p>.encoder.layer.{i}.attention.output.{dense,LayerNorm}.*, "
        "<p>.encoder.layer.{i}.crossattention.self.{query,key,value}.* (key/value: [D, encoder_hidden_size = vision hidden]), "
        "<p>.encoder.layer.{i}.crossattention.output.{dense,LayerNorm}.*, <p>.encoder.layer.{i}.intermediate.dense.*, "
        "<p>.encoder.layer.{i}.output.{dense,LayerNorm}.*",
    }


def blip_vision_notes(vc):
    return {
        "vision": "patch conv (k = stride = patch, with bias) -> row-major patches; prepend class_embedding; add "
        "position_embedding; pre-norm layers: x += projection(attn(layer_norm1(x))) with qkv fused, scale head_dim^-0.5, "
        f"no mask; x += fc2(gelu(fc1(layer_norm2(x)))) (exact erf gelu); last_hidden_state = post_layernorm(x) over ALL "
        f"tokens (eps {vc['layer_norm_eps']}); NO pre-layernorm",
        "vision_pooler_output_quirk": "BlipVisionModel.pooler_output = post_layernorm(post_layernorm(x)[:, 0]) (the LN is "
        "applied twice); ITM / captioning never use it, they use last_hidden_state",
    }


# ---------------------------------------------------------------------------
# 3. BLIP image-text retrieval
# ---------------------------------------------------------------------------

BLIP_ITM_SEED = 20250103
BLIP_ITM_LENS = [8, 5]  # valid tokens per row incl. [CLS] and [SEP]


def np_blip_itm(W, cfg, pix, ids, mask):
    tc, vc = cfg["text_config"], cfg["vision_config"]
    W = f64(W)
    v_lhs, v_pool = np_blip_vision(W, vc, pix)
    q_itm = np_blip_text(W, tc, "text_encoder", ids, mask, enc=v_lhs)
    itm = np_lin(q_itm[:, 0], W, "itm_head")
    q_txt = np_blip_text(W, tc, "text_encoder", ids, mask)
    imf = l2n(np_lin(v_lhs[:, 0], W, "vision_proj"), 1e-12)
    txf = l2n(np_lin(q_txt[:, 0], W, "text_proj"), 1e-12)
    return {
        "itm_score": itm,
        "itm_question_embeds": q_itm,
        "cosine_sim": imf @ txf.T,
        "cosine_question_embeds": q_txt,
        "image_feat": imf,
        "text_feat": txf,
        "vision/last_hidden_state": v_lhs,
        "vision/pooler_output": v_pool,
    }


def make_blip_itm(out):
    from transformers import BlipConfig, BlipForImageTextRetrieval

    name = "blip_itm_tiny"
    rng = np.random.default_rng(BLIP_ITM_SEED)
    pix = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    T = max(BLIP_ITM_LENS)
    ids = np.zeros((2, T), dtype=np.int64)
    mask = np.zeros((2, T), dtype=np.int64)
    for r, n in enumerate(BLIP_ITM_LENS):
        ids[r, 0] = CLS_ID
        ids[r, 1 : n - 1] = rng.integers(103, 498, size=n - 2, dtype=np.int64)
        ids[r, n - 1] = BLIP_TEXT["sep_token_id"]
        mask[r, :n] = 1
    tp, ti, tm = torch.from_numpy(pix), torch.from_numpy(ids), torch.from_numpy(mask)
    call = {"text_config": BLIP_TEXT, "vision_config": BLIP_VISION, "image_text_hidden_size": BLIP_ITH}
    torch.manual_seed(0)
    model = BlipForImageTextRetrieval(BlipConfig(text_config=dict(BLIP_TEXT), vision_config=dict(BLIP_VISION), image_text_hidden_size=BLIP_ITH))
    randomize(model)
    d = os.path.join(out, name)
    save_model(model, d)
    model = load_checked(BlipForImageTextRetrieval, d)
    w = load_file(os.path.join(d, "model.safetensors"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    ti_before = ti.clone()
    with torch.no_grad():
        o1 = model(input_ids=ti, pixel_values=tp, attention_mask=tm, use_itm_head=True)
        o2 = model(input_ids=ti, pixel_values=tp, attention_mask=tm, use_itm_head=False)
        vo = model.vision_model(pixel_values=tp)
        tq = model.text_encoder(input_ids=ti, attention_mask=tm).last_hidden_state
        imf = torch.nn.functional.normalize(model.vision_proj(vo.last_hidden_state[:, 0]), dim=-1)
        txf = torch.nn.functional.normalize(model.text_proj(tq[:, 0]), dim=-1)
        o1_nomask = model(input_ids=ti, pixel_values=tp, use_itm_head=True)
        ids_enc = ti.clone()
        ids_enc[:, 0] = BLIP_TEXT["vocab_size"] - 1  # what the original BLIP would feed ([ENC]); for the record only
        o1_enc = model(input_ids=ids_enc, pixel_values=tp, attention_mask=tm, use_itm_head=True)
    assert torch.equal(ti, ti_before)  # input_ids are used as given
    assert torch.equal(o2.question_embeds, tq)
    assert torch.equal(o2.itm_score, imf @ txf.t())
    res = {
        "itm_score": o1.itm_score,
        "itm_question_embeds": o1.question_embeds,
        "cosine_sim": o2.itm_score,
        "cosine_question_embeds": o2.question_embeds,
        "image_feat": imf,
        "text_feat": txf,
        "vision/last_hidden_state": o1.last_hidden_state,
        "vision/pooler_output": vo.pooler_output,
    }
    res = {k: v.numpy() for k, v in res.items()}
    assert np.array_equal(res["vision/last_hidden_state"], vo.last_hidden_state.numpy())
    ref = np_blip_itm(w, cfg, pix, ids, mask)
    d_np = {k: maxdiff(ref[k], res[k]) for k in res}
    valid = mask.astype(bool)
    d_np_valid = {
        k: maxdiff(ref[k][valid], res[k][valid]) for k in ("itm_question_embeds", "cosine_question_embeds")
    }
    assert max(d_np.values()) < TOL, d_np
    tensors = {"pixel_values": pix, "input_ids": ids, "attention_mask": mask}
    tensors.update(res)
    tc = cfg["text_config"]
    meta = common_meta(name, "BlipForImageTextRetrieval", call, d, w, model)
    meta.update(
        {
            "inputs": {
                "seed": BLIP_ITM_SEED,
                "pixel_values": "rng = np.random.default_rng(seed); rng.standard_normal((2, 3, 32, 32)).astype(np.float32)",
                "input_ids": "[2, 8]; row r with n_r valid tokens: [CLS]=101, then rng.integers(103, 498, n_r - 2), "
                "[SEP]=102, then pad 0 (BlipProcessor / BERT tokenizer layout)",
                "valid_lengths": BLIP_ITM_LENS,
                "attention_mask": "1 on the n_r valid tokens, 0 on padding",
            },
            "reference_calls": {
                "model": "BlipForImageTextRetrieval.from_pretrained(dir).eval(), torch.no_grad()",
                "itm": "model(input_ids, pixel_values, attention_mask=mask, use_itm_head=True) -> itm_score [B,2] "
                "(pairs image b with text b; logits [no match, match], softmax(-1)[:, 1] = match probability), "
                "question_embeds -> itm_question_embeds",
                "cosine": "model(input_ids, pixel_values, attention_mask=mask, use_itm_head=False) -> itm_score [B_img, B_txt] "
                "= cosine_sim, question_embeds -> cosine_question_embeds",
                "features": "image_feat = normalize(vision_proj(vision lhs[:,0])), text_feat = normalize(text_proj(text "
                "encoder lhs[:,0])) computed from the sub-modules (cosine_sim = image_feat @ text_feat.T, asserted bit-equal)",
                "vision": "model.vision_model(pixel_values) -> last_hidden_state, pooler_output",
            },
            "forward_notes": dict(
                blip_vision_notes(cfg["vision_config"]),
                input_ids="used exactly as given: transformers 5.24 does NOT replace input_ids[:, 0] by an [ENC] token "
                "(the original Salesforce code does; HF checkpoints are converted to expect the processor's [CLS] first). "
                "Asserted: input_ids unchanged by forward",
                text_encoder="BlipTextModel(add_pooling_layer=False), BERT post-norm layers; built with is_decoder=true in "
                "the config (so every layer HAS crossattention weights) but forward runs with is_decoder=False: "
                "bidirectional self-attention with the key-padding mask (additive finfo(f32).min on masked keys, eager "
                "attention: BLIP does not support sdpa), no causal mask",
                embeddings="word_embeddings[ids] + position_embeddings[arange(L)] -> LayerNorm (eps 1e-12); no token-type embedding",
                itm_path="text encoder WITH cross-attention on the vision last_hidden_state (every image token, image mask "
                "all ones): per layer x = LN(dense(selfattn(x)) + x); x = LN(dense(crossattn(q=x, k=v=image)) + x); "
                "x = LN(output.dense(gelu(intermediate.dense(x))) + x); itm_score = itm_head(x[:, 0])",
                cosine_path="text encoder WITHOUT cross-attention (encoder_hidden_states=None skips the crossattention "
                "block entirely); image_feat = F.normalize(vision_proj(image lhs[:, 0]), dim=-1) (x / max(||x||, 1e-12)), "
                "text_feat likewise with text_proj on the text [CLS] row; cosine_sim = image_feat @ text_feat.T; no "
                "temperature / logit scale",
                attention_scale="1/sqrt(head_dim) in both towers",
                activation="gelu = exact erf GELU everywhere (text hidden_act, vision hidden_act)",
                layer_norm_eps={"text": tc["layer_norm_eps"], "vision": cfg["vision_config"]["layer_norm_eps"]},
                weight_names=blip_key_notes(),
            ),
            "checks": {
                "max_abs_diff_numpy_f64_writeup": d_np,
                "max_abs_diff_numpy_f64_writeup_valid_tokens_only": d_np_valid,
                "itm_score_without_attention_mask_max_abs_diff": maxdiff(o1_nomask.itm_score, o1.itm_score),
                "itm_score_if_first_token_were_replaced_max_abs_diff": maxdiff(o1_enc.itm_score, o1.itm_score),
            },
        }
    )
    finish(out, name, tensors, meta)
    return d_np


# ---------------------------------------------------------------------------
# 4. BLIP captioning
# ---------------------------------------------------------------------------

BLIP_CAP_SEED = 20250104
NEW_TOKENS = 20


def np_blip_caption_logits(W, cfg, pix, ids):
    tc, vc = cfg["text_config"], cfg["vision_config"]
    W = f64(W)
    v_lhs, _ = np_blip_vision(W, vc, pix)
    x = np_blip_text(W, tc, "text_decoder.bert", ids, enc=v_lhs, causal=True)
    p = "text_decoder.cls.predictions."
    h = ln(W, p + "transform.LayerNorm", tc["layer_norm_eps"])(ACTS[tc["hidden_act"]](np_lin(x, W, p + "transform.dense")))
    dec_w = W.get(p + "decoder.weight", W["text_decoder.bert.embeddings.word_embeddings.weight"])
    dec_b = W.get(p + "decoder.bias", W[p + "bias"])
    return {"logits": h @ dec_w.T + dec_b, "vision/last_hidden_state": v_lhs}


def step_margins(logits, banned=()):
    """Best minus runner-up logit per step, after setting banned ids to -inf."""
    x = np.array(logits, dtype=np.float64)
    for b in banned:
        x[..., b] = -np.inf
    s = np.sort(x, axis=-1)
    return s[..., -1] - s[..., -2]


def replay_greedy(np_logits_fn, seq, prompt_len, banned):
    """Teacher-forced numpy logits over the whole generated sequence; argmax at prompt_len-1+j must give seq[prompt_len+j]."""
    lg = np_logits_fn(seq)
    pred = lg.copy()
    for b in banned:
        pred[..., b] = -np.inf
    pos = np.arange(prompt_len - 1, seq.shape[1] - 1)
    got = pred[:, pos].argmax(-1)
    return got, lg[:, pos]


def make_blip_caption(out):
    from transformers import BlipConfig, BlipForConditionalGeneration

    name = "blip_caption_tiny"
    rng = np.random.default_rng(BLIP_CAP_SEED)
    pix = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    bos, sep, pad = BLIP_TEXT["bos_token_id"], BLIP_TEXT["sep_token_id"], BLIP_TEXT["pad_token_id"]
    tf_ids = np.empty((2, 8), dtype=np.int64)
    tf_ids[:, 0] = bos
    tf_ids[:, 1:] = rng.integers(103, 498, size=(2, 7), dtype=np.int64)
    prompt = np.empty((2, 4), dtype=np.int64)
    prompt[:, 0] = CLS_ID
    prompt[:, 1:3] = rng.integers(103, 498, size=(2, 2), dtype=np.int64)
    prompt[:, 3] = sep
    tp = torch.from_numpy(pix)
    call = {"text_config": BLIP_TEXT, "vision_config": BLIP_VISION, "image_text_hidden_size": BLIP_ITH}
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=dict(BLIP_TEXT), vision_config=dict(BLIP_VISION), image_text_hidden_size=BLIP_ITH))
    randomize(model)
    d = os.path.join(out, name)
    save_model(model, d)
    model = load_checked(BlipForConditionalGeneration, d)
    w = load_file(os.path.join(d, "model.safetensors"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    gen = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1)
    with torch.no_grad():
        o = model(pixel_values=tp, input_ids=torch.from_numpy(tf_ids))
        vo = model.vision_model(pixel_values=tp)
        p_in = torch.from_numpy(prompt.copy())
        g_prompt = model.generate(pixel_values=tp, input_ids=p_in, return_dict_in_generate=True, output_logits=True, **gen)
        g_none = model.generate(pixel_values=tp, return_dict_in_generate=True, output_logits=True, **gen)
        g_nat = model.generate(pixel_values=tp, input_ids=torch.from_numpy(prompt.copy()), max_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1)
    prompt_after = p_in.numpy().copy()  # generate writes bos into input_ids[:, 0] in place
    seq_p, seq_n = g_prompt.sequences.numpy(), g_none.sequences.numpy()
    step_p = torch.stack(g_prompt.logits, 1).numpy()  # [B, 20, vocab] raw logits per step
    step_n = torch.stack(g_none.logits, 1).numpy()
    exp_prompt = prompt.copy()
    exp_prompt[:, 0] = bos
    exp_prompt = exp_prompt[:, :-1]
    assert np.array_equal(seq_p[:, :3], exp_prompt), (seq_p, exp_prompt)
    assert np.array_equal(seq_n[:, :1], np.full((2, 1), bos))
    assert seq_p.shape == (2, 3 + NEW_TOKENS) and seq_n.shape == (2, 1 + NEW_TOKENS)
    res = {"teacher_forced/logits": o.logits.numpy(), "vision/last_hidden_state": vo.last_hidden_state.numpy()}
    assert np.array_equal(o.last_hidden_state.numpy(), res["vision/last_hidden_state"])
    ref = np_blip_caption_logits(w, cfg, pix, tf_ids)
    d_np = {"teacher_forced/logits": maxdiff(ref["logits"], res["teacher_forced/logits"]),
            "vision/last_hidden_state": maxdiff(ref["vision/last_hidden_state"], res["vision/last_hidden_state"])}
    assert max(d_np.values()) < TOL, d_np
    # replay both generations from numpy f64 teacher-forced logits (eos = sep banned at every step)
    replay = {}
    for key, seq, plen, step in (("prompted", seq_p, 3, step_p), ("unprompted", seq_n, 1, step_n)):
        got, lg = replay_greedy(lambda s: np_blip_caption_logits(w, cfg, pix, s)["logits"], seq, plen, [sep])
        assert np.array_equal(got, seq[:, plen:]), (key, got, seq)
        replay[key] = {
            "ids_reproduced": True,
            "max_abs_diff_step_logits_numpy_vs_generate": maxdiff(lg, step),
            "min_step_margin_eos_banned": float(step_margins(step, [sep]).min()),
            "steps_where_eos_would_win": [[int(b), int(t)] for b, t in zip(*np.nonzero(step.argmax(-1) == sep))],
        }
    nat = g_nat.numpy()
    tensors = {
        "pixel_values": pix,
        "teacher_forced/input_ids": tf_ids,
        "generate/prompt_input_ids": prompt,
        "generate/prompted/sequences": seq_p,
        "generate/prompted/step_logits": step_p,
        "generate/unprompted/sequences": seq_n,
        "generate/unprompted/step_logits": step_n,
        "generate/prompted_natural_stop/sequences": nat,
    }
    tensors.update(res)
    tc = cfg["text_config"]
    meta = common_meta(name, "BlipForConditionalGeneration", call, d, w, model)
    meta.update(
        {
            "inputs": {
                "seed": BLIP_CAP_SEED,
                "pixel_values": "rng = np.random.default_rng(seed); rng.standard_normal((2, 3, 32, 32)).astype(np.float32)",
                "teacher_forced/input_ids": "[2, 8]: column 0 = bos 498 ([DEC]), columns 1..7 = rng.integers(103, 498, (2, 7))",
                "generate/prompt_input_ids": "[2, 4]: [CLS]=101, rng.integers(103, 498, (2, 2)), [SEP]=102 (what BlipProcessor "
                "returns for a text prompt)",
            },
            "special_ids": {
                "bos_token_id ([DEC], decoder start)": tc["bos_token_id"],
                "sep_token_id (used as EOS by generate)": tc["sep_token_id"],
                "pad_token_id": tc["pad_token_id"],
                "eos_token_id (config; NOT used by BlipForConditionalGeneration.generate)": tc["eos_token_id"],
                "cls_token_id (tokenizer [CLS], overwritten by bos)": CLS_ID,
            },
            "reference_calls": {
                "model": "BlipForConditionalGeneration.from_pretrained(dir).eval(), torch.no_grad()",
                "teacher_forced": "model(pixel_values=pixel_values, input_ids=teacher_forced/input_ids).logits [2, 8, vocab] "
                "(no attention_mask; input_ids used as given, no bos substitution in forward)",
                "prompted": "model.generate(pixel_values, input_ids=prompt, max_new_tokens=20, min_new_tokens=20, "
                "do_sample=False, num_beams=1, return_dict_in_generate=True, output_logits=True)",
                "unprompted": "model.generate(pixel_values, <same kwargs>) (no input_ids)",
                "prompted_natural_stop": "model.generate(pixel_values, input_ids=prompt, max_new_tokens=20, do_sample=False, "
                "num_beams=1) (sep may stop a row early; finished rows are padded with pad_token_id)",
            },
            "generate_rules": {
                "prompt_rewrite": "generate sets input_ids[:, 0] = bos_token_id (IN PLACE on the caller's tensor) and then "
                "feeds input_ids[:, :-1] (drops the last column, assumed to be the tokenizer's [SEP]); attention_mask[:, :-1] "
                "likewise. So prompt [101, a, b, 102] decodes from [498, a, b]",
                "prompt_after_call": prompt_after.tolist(),
                "no_prompt": "input_ids defaults to [[bos, eos_token_id]] per row -> after dropping the last column the "
                "decoder starts from [bos] alone",
                "returned_sequences": "prefix actually fed (rewritten, last column dropped) + the new tokens: prompted "
                "[2, 3+20], unprompted [2, 1+20]",
                "eos": "generate passes eos_token_id=sep_token_id (102), pad_token_id=0. min_new_tokens=20 with "
                "max_new_tokens=20 sets the logit of 102 to -inf at EVERY step, so exactly 20 tokens come out; "
                "without it a row stops at 102 and is padded with 0",
                "greedy": "argmax over the vocabulary of the last position's logits (no temperature, no repetition "
                "penalty, no other logits processor: the generation config holds only bos/eos/pad/use_cache)",
                "cross_attention_mask": "image attention mask all ones (every vision token, incl. CLS)",
                "kv_cache": "self-attention keys/values cached per layer; cross-attention keys/values computed once from "
                "the image; positions continue (position_ids = arange(past, past + new))",
                "step_logits": "generate/*/step_logits[b, j] = raw decoder logits (before the min_new_tokens ban) that "
                "produced token j",
                "generation_config": json.load(open(os.path.join(d, "generation_config.json"))),
            },
            "forward_notes": dict(
                blip_vision_notes(cfg["vision_config"]),
                decoder="text_decoder.bert = BlipTextModel(add_pooling_layer=False) run with is_decoder=True: per layer "
                "x = LN(dense(causal selfattn(x)) + x); x = LN(dense(crossattn(q=x, k=v=image lhs)) + x); "
                "x = LN(output.dense(gelu(intermediate.dense(x))) + x); causal mask: key k visible from query q iff k <= q "
                "(and attention_mask[k] == 1 when one is given)",
                embeddings="word_embeddings[ids] + position_embeddings[arange(past, past + L)] -> LayerNorm (eps 1e-12)",
                lm_head="text_decoder.cls.predictions: h = transform.LayerNorm(gelu(transform.dense(x))); logits = h @ "
                "decoder.weight.T + decoder.bias, with decoder.weight TIED to text_decoder.bert.embeddings.word_embeddings.weight "
                "and decoder.bias tied to text_decoder.cls.predictions.bias",
                tied_keys_on_disk="save_pretrained OMITS text_decoder.cls.predictions.decoder.{weight,bias}; hub checkpoints "
                "(Salesforce/blip-image-captioning-*) may contain them. Load decoder.weight from word_embeddings and "
                "decoder.bias from cls.predictions.bias when absent",
                attention="eager (BLIP has no sdpa path), scale 1/sqrt(head_dim); mask additive finfo(f32).min",
                layer_norm_eps={"text": tc["layer_norm_eps"], "vision": cfg["vision_config"]["layer_norm_eps"]},
                weight_names=blip_key_notes(),
            ),
            "checks": {
                "max_abs_diff_numpy_f64_writeup": d_np,
                "greedy_replay_numpy_f64": replay,
                "natural_stop_equals_forced": bool(np.array_equal(nat, seq_p)),
            },
        }
    )
    finish(out, name, tensors, meta)
    return d_np, replay


# ---------------------------------------------------------------------------
# 5. LLaVA
# ---------------------------------------------------------------------------

LLAVA_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
)
LLAVA_TEXT = dict(
    vocab_size=500,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=64,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)
LLAVA_IMAGE_TOKEN = 499
LLAVA_SEED = 20250105
LLAVA_PRE, LLAVA_POST = 2, 3  # text tokens between bos and the image run, and after it


def np_llava_logits(W, cfg, pix, ids, want_image=False):
    vc, tc = cfg["vision_config"], cfg["text_config"]
    W = f64(W)
    # CLIP vision tower, stop at hidden_states[vision_feature_layer]
    eps = vc["layer_norm_eps"]
    x = np_patches(pix.astype(np.float64), W["vision_tower.embeddings.patch_embedding.weight"], None, vc["patch_size"])
    cls = np.broadcast_to(W["vision_tower.embeddings.class_embedding"], (x.shape[0], 1, x.shape[2]))
    x = np.concatenate([cls, x], 1) + W["vision_tower.embeddings.position_embedding.weight"][None]
    x = ln(W, "vision_tower.pre_layrnorm", eps)(x)
    n = vc["num_hidden_layers"]
    layer = cfg["vision_feature_layer"]
    k = layer if layer >= 0 else n + 1 + layer
    hs = np_prenorm_layers(x, W, "vision_tower", n, vc["num_attention_heads"], eps, vc["hidden_act"], upto=k)
    sel = hs[k]
    if cfg["vision_feature_select_strategy"] == "default":
        sel = sel[:, 1:]
    feat = np_lin(ACTS[cfg["projector_hidden_act"]](np_lin(sel, W, "multi_modal_projector.linear_1")), W, "multi_modal_projector.linear_2")
    # Llama
    H, KV = tc["num_attention_heads"], tc["num_key_value_heads"]
    hd = tc["head_dim"]
    e = W["language_model.model.embed_tokens.weight"][ids]
    m = ids == cfg["image_token_index"]
    e[m] = feat.reshape(-1, feat.shape[-1])  # row-major over (image, patch), in token order
    B, L = ids.shape
    theta = tc["rope_parameters"]["rope_theta"]
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.arange(L)[:, None] * inv[None]
    cos = np.cos(np.concatenate([ang, ang], -1))
    sin = np.sin(np.concatenate([ang, ang], -1))

    def rope(t):  # t [B, L, heads, hd]
        t1, t2 = t[..., : hd // 2], t[..., hd // 2 :]
        rot = np.concatenate([-t2, t1], -1)
        return t * cos[None, :, None] + rot * sin[None, :, None]

    def rms(x, wname):
        return x / np.sqrt((x**2).mean(-1, keepdims=True) + tc["rms_norm_eps"]) * W[wname]

    keep = np.tril(np.ones((L, L), bool))[None, None]
    x = e
    for i in range(tc["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        h = rms(x, p + "input_layernorm.weight")
        q = rope(np_lin(h, W, p + "self_attn.q_proj").reshape(B, L, H, hd)).reshape(B, L, H * hd)
        kk = rope(np_lin(h, W, p + "self_attn.k_proj").reshape(B, L, KV, hd)).reshape(B, L, KV * hd)
        v = np_lin(h, W, p + "self_attn.v_proj")
        x = x + np_lin(np_mha(q, kk, v, H, KV, keep=keep), W, p + "self_attn.o_proj")
        h = rms(x, p + "post_attention_layernorm.weight")
        x = x + np_lin(ACTS[tc["hidden_act"]](np_lin(h, W, p + "mlp.gate_proj")) * np_lin(h, W, p + "mlp.up_proj"), W, p + "mlp.down_proj")
    x = rms(x, "language_model.model.norm.weight")
    logits = x @ W["language_model.lm_head.weight"].T
    if want_image:
        return logits, {"selected": hs[k][:, 1:] if cfg["vision_feature_select_strategy"] == "default" else hs[k], "features": feat}
    return logits


def make_llava(out):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    name = "llava_tiny"
    vcfg = CLIPVisionConfig(**LLAVA_VISION)
    tcfg = LlamaConfig(**LLAVA_TEXT)
    cfg_call = dict(
        image_token_index=LLAVA_IMAGE_TOKEN,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(32 // 8) ** 2,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=vcfg, text_config=tcfg, **cfg_call))
    randomize(model)
    d = os.path.join(out, name)
    save_model(model, d)
    model = load_checked(LlavaForConditionalGeneration, d)
    w = load_file(os.path.join(d, "model.safetensors"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    tc = cfg["text_config"]
    n_img = (LLAVA_VISION["image_size"] // LLAVA_VISION["patch_size"]) ** 2  # "default": CLS dropped
    rng = np.random.default_rng(LLAVA_SEED)
    pix = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    ids = np.concatenate(
        [
            [tc["bos_token_id"]],
            rng.integers(3, LLAVA_IMAGE_TOKEN, size=LLAVA_PRE),
            np.full(n_img, LLAVA_IMAGE_TOKEN),
            rng.integers(3, LLAVA_IMAGE_TOKEN, size=LLAVA_POST),
        ]
    ).astype(np.int64)[None]
    T = ids.shape[1]
    tp, ti = torch.from_numpy(pix), torch.from_numpy(ids)
    eos = tc["eos_token_id"]
    gen = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1)
    with torch.no_grad():
        o = model(input_ids=ti, pixel_values=tp)
        imf = model.get_image_features(pixel_values=tp)
        vt = model.model.vision_tower(pixel_values=tp, output_hidden_states=True)
        g = model.generate(input_ids=ti, pixel_values=tp, return_dict_in_generate=True, output_logits=True, **gen)
        g_nat = model.generate(input_ids=ti, pixel_values=tp, max_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1)
        # one unexpanded <image> token: the model does not expand it
        try:
            model(input_ids=torch.tensor([[tc["bos_token_id"], LLAVA_IMAGE_TOKEN, 5]]), pixel_values=tp)
            unexpanded = "accepted (unexpected)"
        except Exception as e:  # noqa: BLE001
            unexpanded = f"{type(e).__name__}: {e}"
        model.set_attn_implementation("eager")
        oe = model(input_ids=ti, pixel_values=tp)
        model.set_attn_implementation("sdpa")
    seq = g.sequences.numpy()
    step = torch.stack(g.logits, 1).numpy()
    assert seq.shape == (1, T + NEW_TOKENS) and np.array_equal(seq[:, :T], ids)
    feats = torch.cat(list(imf.pooler_output), 0).numpy()  # [n_img, hidden]
    sel = vt.hidden_states[cfg["vision_feature_layer"]][:, 1:].numpy()
    assert len(vt.hidden_states) == LLAVA_VISION["num_hidden_layers"] + 1
    res = {
        "logits": o.logits.numpy(),
        "image_features": feats[None],
        "vision/selected_hidden_state": sel,
        "vision/last_hidden_state": vt.last_hidden_state.numpy(),
    }
    ref_logits, ref_img = np_llava_logits(w, cfg, pix, ids, want_image=True)
    d_np = {
        "logits": maxdiff(ref_logits, res["logits"]),
        "image_features": maxdiff(ref_img["features"], res["image_features"]),
        "vision/selected_hidden_state": maxdiff(ref_img["selected"], sel),
    }
    assert max(d_np.values()) < TOL, d_np
    got, lg = replay_greedy(lambda s: np_llava_logits(w, cfg, pix, s), seq, T, [eos])
    assert np.array_equal(got, seq[:, T:]), (got, seq[:, T:])
    replay = {
        "ids_reproduced": True,
        "max_abs_diff_step_logits_numpy_vs_generate": maxdiff(lg, step),
        "min_step_margin_eos_banned": float(step_margins(step, [eos]).min()),
        "steps_where_eos_would_win": [int(t) for t in np.nonzero(step[0].argmax(-1) == eos)[0]],
    }
    nat = g_nat.numpy()
    # hub-style names load too
    hub_check = llava_hub_names_check(model, d, tp, ti, o.logits)
    tensors = {
        "pixel_values": pix,
        "input_ids": ids,
        "generate/sequences": seq,
        "generate/step_logits": step,
        "generate/natural_stop/sequences": nat,
    }
    tensors.update(res)
    meta = common_meta(
        name,
        "LlavaForConditionalGeneration",
        {"vision_config": "CLIPVisionConfig(**%s)" % json.dumps(LLAVA_VISION), "text_config": "LlamaConfig(**%s)" % json.dumps(LLAVA_TEXT), **cfg_call},
        d,
        w,
        model,
    )
    meta.update(
        {
            "inputs": {
                "seed": LLAVA_SEED,
                "pixel_values": "rng = np.random.default_rng(seed); rng.standard_normal((1, 3, 32, 32)).astype(np.float32)",
                "input_ids": f"[1, {T}] = [bos 1] + rng.integers(3, 499, {LLAVA_PRE}) + [499] * {n_img} + rng.integers(3, 499, {LLAVA_POST})",
                "image_token_positions": [int(i) for i in np.nonzero(ids[0] == LLAVA_IMAGE_TOKEN)[0]],
            },
            "reference_calls": {
                "model": "LlavaForConditionalGeneration.from_pretrained(dir).eval(), torch.no_grad()",
                "teacher_forced": "model(input_ids=input_ids, pixel_values=pixel_values).logits [1, T, vocab] (no attention_mask)",
                "image_features": "model.get_image_features(pixel_values).pooler_output (list of [16, 64], stacked to [1,16,64])",
                "vision": "model.model.vision_tower(pixel_values, output_hidden_states=True): hidden_states[-2][:, 1:] -> "
                "vision/selected_hidden_state, last_hidden_state (encoder output, unused by LLaVA)",
                "generate": "model.generate(input_ids, pixel_values=pixel_values, max_new_tokens=20, min_new_tokens=20, "
                "do_sample=False, num_beams=1, return_dict_in_generate=True, output_logits=True) -> sequences [1, T+20] "
                "(prompt + 20 new), step_logits [1, 20, vocab] raw",
                "natural_stop": "same without min_new_tokens (stops at eos 2; pad falls back to eos)",
            },
            "image_token_rule": {
                "model_expands": False,
                "rule": "the model expects input_ids ALREADY expanded: exactly one image_token_index per image feature "
                "(num_patches = (image_size / patch_size)^2 = 16 with strategy 'default', which drops CLS). "
                "LlavaProcessor does the expansion: each '<image>' in the text becomes "
                "(h // patch_size) * (w // patch_size) + num_additional_image_tokens - (1 if strategy == 'default') "
                "copies (llava-hf checkpoints set num_additional_image_tokens = 1 in processor_config.json, giving 576 "
                "for 336/14; the processor default 0 would give 575 and fail). image_seq_length in config.json is only "
                "informational for the model",
                "one_unexpanded_token": unexpanded,
                "merge": "inputs_embeds = embed_tokens(input_ids) (the image token id itself must be < vocab_size and is "
                "looked up, then overwritten); positions where input_ids == image_token_index are replaced, in order, by "
                "the rows of the projected image features (masked_scatter: row-major over images then patches)",
            },
            "forward_notes": {
                "vision_tower": "CLIPVisionModel: patch conv (no bias) -> prepend class_embedding -> + position_embedding "
                "(17 rows) -> pre_layrnorm -> pre-norm layers (quick_gelu, eps 1e-5); hidden_states[0] = after pre_layrnorm, "
                "hidden_states[i] = after layer i-1",
                "feature_select": "vision_feature_layer -2 -> hidden_states[-2] = output of encoder layer n-2 (here layer "
                "0 of 2; real llava-1.5: layer 22 of 24); the last layer and post_layernorm are loaded but unused; "
                "'default' strategy drops position 0 (CLS)",
                "projector": "multi_modal_projector.linear_2(gelu(linear_1(x))), exact erf gelu, both with bias",
                "llama": "x = inputs_embeds; per layer: h = RMSNorm(x) (input_layernorm); q,k,v = Linear (no bias), "
                "q [B,L,4,16], k/v [B,L,2,16] (GQA: query head h uses kv head h // 2); RoPE on q and k (rotate_half "
                "convention: pairs (i, i + d/2), inv_freq = theta^(-2i/d), i < d/2, cos/sin of pos * inv_freq repeated "
                "twice along the head dim); softmax(q k^T * d^-0.5 + causal) v; o_proj; x += ...; h = RMSNorm(x) "
                "(post_attention_layernorm); x += down_proj(silu(gate_proj(h)) * up_proj(h)); final norm; logits = "
                "lm_head(x) (no bias, not tied)",
                "rms_norm": "x * rsqrt(mean(x^2) + eps) * weight (computed in f32), eps = rms_norm_eps = 1e-5",
                "rope": {"theta": tc["rope_parameters"]["rope_theta"], "type": tc["rope_parameters"]["rope_type"], "head_dim": tc["head_dim"]},
                "position_ids": "arange(T) over the whole expanded sequence (image tokens take positions like text); "
                "with a KV cache the new token's position = number of cached tokens",
                "attention_mask": "none given -> pure causal; generate builds all-ones",
                "generate": "greedy argmax of the last position's logits; eos_token_id 2 from the generation config; "
                "min_new_tokens=20 = max_new_tokens sets logit[2] = -inf at every step; pixel_values only used in the "
                "first (prefill) step; no other logits processors",
                "generation_config": json.load(open(os.path.join(d, "generation_config.json"))),
            },
            "weight_names": {
                "written_by_save_pretrained_5_24": "vision_tower.{embeddings,pre_layrnorm,encoder,post_layernorm}.* (NO "
                "vision_model. level), multi_modal_projector.linear_{1,2}.{weight,bias}, language_model.model.* , "
                "language_model.lm_head.weight",
                "hub_checkpoints (llava-hf/llava-1.5-7b-hf)": "vision_tower.vision_model.{embeddings,pre_layrnorm,encoder,"
                "post_layernorm}.* and the same language_model.model.* / language_model.lm_head.weight / multi_modal_projector.*",
                "in_memory_5_24": "model.vision_tower.*, model.multi_modal_projector.*, model.language_model.*, lm_head.weight",
                "hub_names_check": hub_check,
            },
            "checks": {
                "max_abs_diff_numpy_f64_writeup": d_np,
                "greedy_replay_numpy_f64": replay,
                "max_abs_diff_eager_vs_sdpa_logits": maxdiff(oe.logits, o.logits),
                "natural_stop_equals_forced": bool(np.array_equal(nat, seq)),
            },
        }
    )
    finish(out, name, tensors, meta)
    return d_np, replay


def llava_hub_names_check(model, d, tp, ti, logits):
    """Rename vision_tower.X -> vision_tower.vision_model.X (the hub layout) in a temp copy and load it."""
    import tempfile

    from safetensors.numpy import save_file
    from transformers import LlavaForConditionalGeneration

    w = load_file(os.path.join(d, "model.safetensors"))
    hub = {("vision_tower.vision_model." + k[len("vision_tower.") :] if k.startswith("vision_tower.") else k): v for k, v in w.items()}
    with tempfile.TemporaryDirectory() as t:
        shutil.copy(os.path.join(d, "config.json"), t)
        save_file(hub, os.path.join(t, "model.safetensors"), metadata={"format": "pt"})
        m2, info = LlavaForConditionalGeneration.from_pretrained(t, output_loading_info=True)
        m2.eval()
        with torch.no_grad():
            l2 = m2(input_ids=ti, pixel_values=tp).logits
    return {
        "loads_without_missing_or_unexpected_keys": not any(info[k] for k in ("missing_keys", "unexpected_keys")),
        "logits_equal": bool(torch.equal(l2, logits)),
    }


# ---------------------------------------------------------------------------
# 6. ViT, sharded re-save
# ---------------------------------------------------------------------------

VIT_SHARD_SIZE = "20KB"


def make_vit_sharded(out):
    from transformers import ViTModel

    name = "vit_sharded"
    vdir = os.path.join(os.path.dirname(out), "vision", "vit_tiny")
    io = load_file(os.path.join(os.path.dirname(out), "vision", "tiny_io.safetensors"))
    src = load_checked(ViTModel, vdir)
    d = os.path.join(out, name)
    save_model(src, d, max_shard_size=VIT_SHARD_SIZE)
    index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3, shards
    model = load_checked(ViTModel, d)
    with torch.no_grad():
        o = model(pixel_values=torch.from_numpy(io["pixel_values"]))
    diffs = {
        "vit/last_hidden_state": maxdiff(o.last_hidden_state, io["vit/last_hidden_state"]),
        "vit/pooler_output": maxdiff(o.pooler_output, io["vit/pooler_output"]),
    }
    assert max(diffs.values()) == 0.0, diffs
    merged = {}
    per_shard = {}
    for s in shards:
        part = load_file(os.path.join(d, s))
        per_shard[s] = sorted(part)
        merged.update(part)
    orig = load_file(os.path.join(vdir, "model.safetensors"))
    assert sorted(merged) == sorted(orig) and all(np.array_equal(merged[k], orig[k]) for k in orig)
    assert all(index["weight_map"][k] == s for s, ks in per_shard.items() for k in ks)
    meta = {
        "generator": GENERATOR,
        "versions": all_versions(),
        "family": name,
        "dir": name,
        "class": "ViTModel (add_pooling_layer=True, as vision/vit_tiny)",
        "source": "ViTModel.from_pretrained('fixtures/vision/vit_tiny').save_pretrained(dir, safe_serialization=True, "
        f"max_shard_size='{VIT_SHARD_SIZE}'): the same 40 tensors, bit-identical, split over {len(shards)} files",
        "files": files_info(d),
        "index": index,
        "tensors_per_shard": per_shard,
        "outputs": "identical to vision/tiny_io.safetensors keys vit/last_hidden_state, vit/pooler_output on its "
        "pixel_values (asserted max abs diff 0.0 after loading from the shards)",
        "loader_rule": "read model.safetensors.index.json; weight_map maps every tensor name to its shard file (relative "
        "to the folder); load every distinct shard and take each tensor from the shard named there. metadata.total_size "
        "is the sum of tensor byte sizes (not file sizes)",
        "checks": {"max_abs_diff_vs_vision_tiny_io": diffs, "tensors_equal_unsharded_file": True},
    }
    write_json(os.path.join(out, f"{name}_io.json"), meta)
    return diffs


# ---------------------------------------------------------------------------


def main():
    args = sys.argv[1:]
    only = []
    if "--only" in args:
        i = args.index("--only")
        only = args[i + 1 :]
        args = args[:i]
    root = args[0] if args else MODELS_FIXTURES
    out = out_dir("families", [sys.argv[0], root])
    quiet_transformers()
    todo = only or FAMILIES
    for f in todo:
        assert f in FAMILIES, f
    summary = {}
    if "siglip_tiny" in todo:
        summary["siglip_tiny"] = make_siglip(out)
    if "resnet_tiny" in todo:
        summary.update(make_resnet(out))
    if "blip_itm_tiny" in todo:
        summary["blip_itm_tiny"] = make_blip_itm(out)
    if "blip_caption_tiny" in todo:
        summary["blip_caption_tiny"] = make_blip_caption(out)
    if "llava_tiny" in todo:
        summary["llava_tiny"] = make_llava(out)
    if "vit_sharded" in todo:
        summary["vit_sharded"] = make_vit_sharded(out)
    for k, v in summary.items():
        print(k, json.dumps(v, sort_keys=True)[:400])
    total = 0
    for dp, _, fs in sorted(os.walk(out)):
        for f in sorted(fs):
            p = os.path.join(dp, f)
            total += os.path.getsize(p)
            print(f"{os.path.getsize(p):>9}  {os.path.relpath(p, root)}")
    print(f"{total:>9}  total")


if __name__ == "__main__":
    main()
