#!/usr/bin/env python3
"""ViLT parity fixture for mosaic-models (fixtures/families/vilt_tiny*), in the style of make_family_fixtures.py.

    .venv-ref/bin/python scripts/reference/make_vilt_fixtures.py [FIXTURES_ROOT]

FIXTURES_ROOT defaults to crates/mosaic-models/tests/fixtures. CPU, one torch thread, offline; reruns
rewrite byte-identical files. Uses make_family_fixtures.py's helpers (re-randomisation, saving, the
numpy float64 building blocks), so the procedure is the one described in the fixtures README.

Files:
  families/vilt_tiny/{config.json,model.safetensors}   random ViltForImageAndTextRetrieval, save_pretrained
  families/vilt_tiny_io.safetensors                     inputs + reference outputs (F32 / I64)
  families/vilt_tiny_io.json                            config, recipe, weight keys, notes, checks

Image-token order. ViltEmbeddings.visual_embed with max_image_length < 0 (the default, -1) keeps every
patch but picks them with torch.multinomial(ones(n), n) WITHOUT replacement, i.e. in a random
permutation. The pooled output (first token = text [CLS]) and the retrieval logit are invariant to it (up
to float summation order); the per-token outputs at image positions are not. The reference call therefore
patches torch.multinomial for the non-replacement case to return arange(num_samples): the image tokens
come in row-major patch order (what patchify does in Mosaic). The unpatched (random-order) run is
recorded too, and the script asserts that its pooler_output / logits / text-position hidden states agree
with the identity-order run and that its image-position hidden states are a row permutation of them.

Every run also re-derives all outputs with an independent float64 numpy write-up and asserts agreement.
"""

import json
import os
import sys
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_family_fixtures as F  # noqa: E402  (sets the offline / one-thread environment)
from fixture_common import out_dir  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

GENERATOR = "scripts/reference/make_vilt_fixtures.py"
NAME = "vilt_tiny"
VILT = dict(
    vocab_size=500,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=16,
    type_vocab_size=2,
    modality_type_vocab_size=2,
    image_size=32,
    patch_size=8,
    num_channels=3,
    hidden_act="gelu",
    qkv_bias=True,
    max_image_length=-1,
)
SEED = 20250106
LENS = [8, 5]  # valid text tokens per row incl. [CLS] and [SEP]; T = 8
CLS_ID, SEP_ID = 101, 102


def inputs():
    rng = np.random.default_rng(SEED)
    pix = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    T = max(LENS)
    ids = np.zeros((2, T), dtype=np.int64)
    mask = np.zeros((2, T), dtype=np.int64)
    for r, n in enumerate(LENS):
        ids[r, 0] = CLS_ID
        ids[r, 1 : n - 1] = rng.integers(103, 500, size=n - 2, dtype=np.int64)
        ids[r, n - 1] = SEP_ID
        mask[r, :n] = 1
    return pix, ids, mask


def identity_multinomial(real):
    def f(input, num_samples, replacement=False, *a, **kw):
        if replacement:
            return real(input, num_samples, replacement, *a, **kw)
        return torch.arange(num_samples, device=input.device)

    return f


def np_vilt(W, cfg, pix, ids, mask):
    W = F.f64(W)
    eps, heads, act = cfg["layer_norm_eps"], cfg["num_attention_heads"], F.ACTS[cfg["hidden_act"]]
    e = "vilt.embeddings."
    B, T = ids.shape
    t = (
        W[e + "text_embeddings.word_embeddings.weight"][ids]
        + W[e + "text_embeddings.token_type_embeddings.weight"][0]
        + W[e + "text_embeddings.position_embeddings.weight"][:T][None]
    )
    t = F.ln(W, e + "text_embeddings.LayerNorm", eps)(t) + W[e + "token_type_embeddings.weight"][0]
    x = F.np_patches(
        pix.astype(np.float64),
        W[e + "patch_embeddings.projection.weight"],
        W[e + "patch_embeddings.projection.bias"],
        cfg["patch_size"],
    )
    cls = np.broadcast_to(W[e + "cls_token"], (B, 1, x.shape[2]))
    img = np.concatenate([cls, x], 1) + W[e + "position_embeddings"] + W[e + "token_type_embeddings.weight"][1]
    h = np.concatenate([t, img], 1)
    keep = np.concatenate([mask, np.ones((B, img.shape[1]), np.int64)], 1).astype(bool)[:, None, None, :]
    for i in range(cfg["num_hidden_layers"]):
        p = f"vilt.encoder.layer.{i}."
        a = F.ln(W, p + "layernorm_before", eps)(h)
        q = p + "attention.attention."
        att = F.np_mha(F.np_lin(a, W, q + "query"), F.np_lin(a, W, q + "key"), F.np_lin(a, W, q + "value"), heads, keep=keep)
        h = h + F.np_lin(att, W, p + "attention.output.dense")
        m = F.ln(W, p + "layernorm_after", eps)(h)
        h = h + F.np_lin(act(F.np_lin(m, W, p + "intermediate.dense")), W, p + "output.dense")
    lhs = F.ln(W, "vilt.layernorm", eps)(h)
    pooled = np.tanh(F.np_lin(lhs[:, 0], W, "vilt.pooler.dense"))
    return {"last_hidden_state": lhs, "pooler_output": pooled, "logits": F.np_lin(pooled, W, "rank_output")}


def run(model, tp, ti, tm, pm, identity):
    with torch.no_grad():
        if identity:
            with mock.patch.object(torch, "multinomial", identity_multinomial(torch.multinomial)):
                vo = model.vilt(input_ids=ti, attention_mask=tm, pixel_values=tp, pixel_mask=pm)
                lo = model(input_ids=ti, attention_mask=tm, pixel_values=tp, pixel_mask=pm).logits
        else:
            torch.manual_seed(7)
            vo = model.vilt(input_ids=ti, attention_mask=tm, pixel_values=tp, pixel_mask=pm)
            lo = model(input_ids=ti, attention_mask=tm, pixel_values=tp, pixel_mask=pm).logits
    return {"last_hidden_state": vo.last_hidden_state.numpy(), "pooler_output": vo.pooler_output.numpy(), "logits": lo.numpy()}


def make(out):
    from transformers import ViltConfig, ViltForImageAndTextRetrieval

    pix, ids, mask = inputs()
    tp, ti, tm = torch.from_numpy(pix), torch.from_numpy(ids), torch.from_numpy(mask)
    pm = torch.ones((2, VILT["image_size"], VILT["image_size"]), dtype=torch.int64)
    torch.manual_seed(0)
    model = ViltForImageAndTextRetrieval(ViltConfig(**VILT))
    F.randomize(model)
    d = os.path.join(out, NAME)
    F.save_model(model, d)
    model = F.load_checked(ViltForImageAndTextRetrieval, d)
    w = load_file(os.path.join(d, "model.safetensors"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    res = run(model, tp, ti, tm, pm, identity=True)
    rnd = run(model, tp, ti, tm, pm, identity=False)
    T = ids.shape[1]
    # The random order permutes the image rows (after the image [CLS] at T); everything else agrees.
    a, b = res["last_hidden_state"][:, T + 1 :], rnd["last_hidden_state"][:, T + 1 :]
    perm_rows_match = all(
        np.abs(b[r][:, None, :] - a[r][None, :, :]).max(-1).min(-1).max() < 1e-5 for r in range(a.shape[0])
    )
    perm_is_identity = bool(np.abs(a - b).max() < 1e-5)
    order = {
        "random_order_is_a_row_permutation_of_identity_order": bool(perm_rows_match),
        "random_order_happened_to_be_identity": perm_is_identity,
        "max_abs_diff_random_vs_identity_pooler_output": F.maxdiff(rnd["pooler_output"], res["pooler_output"]),
        "max_abs_diff_random_vs_identity_logits": F.maxdiff(rnd["logits"], res["logits"]),
        "max_abs_diff_random_vs_identity_text_and_image_cls_positions": F.maxdiff(
            rnd["last_hidden_state"][:, : T + 1], res["last_hidden_state"][:, : T + 1]
        ),
    }
    assert perm_rows_match and not perm_is_identity, order
    assert max(v for k, v in order.items() if k.startswith("max_abs")) < 1e-5, order
    ref = np_vilt(w, cfg, pix, ids, mask)
    d_np = {k: F.maxdiff(ref[k], res[k]) for k in res}
    assert max(d_np.values()) < F.TOL, d_np
    tensors = {"pixel_values": pix, "input_ids": ids, "attention_mask": mask, "pixel_mask": pm.numpy()}
    tensors.update(res)
    meta = F.common_meta(NAME, "ViltForImageAndTextRetrieval", {"ViltConfig": VILT}, d, w, model)
    meta["generator"] = GENERATOR
    meta.update(
        {
            "inputs": {
                "seed": SEED,
                "pixel_values": "rng = np.random.default_rng(seed); rng.standard_normal((2, 3, 32, 32)).astype(np.float32)",
                "input_ids": "[2, 8]; row r with n_r valid tokens: [CLS]=101, rng.integers(103, 500, n_r - 2), [SEP]=102, pad 0",
                "valid_lengths": LENS,
                "attention_mask": "1 on the n_r valid tokens, 0 on padding",
                "pixel_mask": "all ones [2, 32, 32] (image_size = config.image_size: the position-table interpolation is the identity)",
            },
            "reference_calls": {
                "model": "ViltForImageAndTextRetrieval.from_pretrained(dir).eval(), torch.no_grad()",
                "patch_order": "torch.multinomial patched (replacement=False only) to return arange(num_samples): image "
                "tokens in row-major patch order",
                "base": "model.vilt(input_ids, attention_mask, pixel_values, pixel_mask) -> last_hidden_state [2, 8+17, 32], "
                "pooler_output [2, 32]",
                "logits": "model(...).logits [2, 1] = rank_output(pooler_output)",
            },
            "forward_notes": {
                "text_embeddings": "LayerNorm(word[ids] + token_type_embeddings[0] + position[arange(T)]) (eps 1e-12; "
                "token_type_ids default to zeros)",
                "image_embeddings": "conv patches (bias) row-major; [cls_token, patches] + position_embeddings [1, 17, 32] "
                "(interpolation to the same 4x4 grid with align_corners=True is the identity); no LayerNorm",
                "modality_types": "text += token_type_embeddings[0], image (cls included) += token_type_embeddings[1]",
                "sequence": "cat([text (T), image (1 + 16)]); key mask cat([attention_mask, ones])",
                "layers": "pre-norm: x += dense(attn(layernorm_before(x))); x += output.dense(gelu(intermediate.dense("
                "layernorm_after(x)))); q/k/v with bias; scale 1/sqrt(head_dim); exact erf gelu",
                "final": "last_hidden_state = layernorm(x) (eps 1e-12); pooler_output = tanh(pooler.dense(lhs[:, 0])); "
                "logits = rank_output(pooler_output)",
            },
            "checks": {"max_abs_diff_numpy_f64_writeup": d_np, "image_token_order": order},
        }
    )
    F.finish(out, NAME, tensors, meta)
    return d_np, order


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else F.MODELS_FIXTURES
    out = out_dir("families", [sys.argv[0], root])
    F.quiet_transformers()
    d_np, order = make(out)
    print(NAME, json.dumps(d_np, sort_keys=True))
    print(json.dumps(order, sort_keys=True))
    for f in sorted(os.listdir(os.path.join(out, NAME))) + [f"{NAME}_io.safetensors", f"{NAME}_io.json"]:
        p = os.path.join(out, NAME, f) if not f.startswith(NAME) else os.path.join(out, f)
        print(f"{os.path.getsize(p):>9}  {os.path.relpath(p, root)}")


if __name__ == "__main__":
    main()
