#!/usr/bin/env python3
"""A tiny random Hugging Face Whisper checkpoint and its transformers outputs (fixtures/audio/whisper_hf_tiny*).

    .venv-ref/bin/python scripts/reference/make_whisper_hf_fixtures.py [FIXTURES_ROOT]

FIXTURES_ROOT defaults to crates/mosaic-models/tests/fixtures. CPU, one torch
thread, eval mode, float32; byte-identical on rerun. Writes:

  audio/whisper_hf_tiny/config.json, model.safetensors   WhisperForConditionalGeneration(WhisperConfig(...below))
                                                         after torch.manual_seed(0), parameters re-randomised,
                                                         save_pretrained(dir, safe_serialization=True)
  audio/whisper_hf_tiny_io.safetensors                   inputs and outputs (below)
  audio/whisper_hf_tiny_io.json                          config, recipe, key list, checks

Outputs: the encoder's last_hidden_state for 2 random log-mel inputs; teacher-forced decoder
logits for 2 random id sequences; 20 greedy steps per input (argmax with <eos> disabled so all
20 ids are real), run three ways that must agree: a no-cache loop (full decoder input every step),
a loop with transformers' KV cache, and GenerationMixin.generate(min_new_tokens=20, do_sample=False).
"""

import importlib.metadata as md
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import REPO_ROOT, out_dir, save_tensors, sha256_file, versions, write_json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration  # noqa: E402
from transformers.generation.utils import GenerationMixin  # noqa: E402

MODELS_FIXTURES = os.path.join(REPO_ROOT, "crates", "mosaic-models", "tests", "fixtures")

CONFIG = dict(vocab_size=400, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
              encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
              max_source_positions=100, max_target_positions=48, activation_function="gelu",
              scale_embedding=False, decoder_start_token_id=1, bos_token_id=1, eos_token_id=2, pad_token_id=2,
              suppress_tokens=None, begin_suppress_tokens=None, dropout=0.0, attention_dropout=0.0,
              activation_dropout=0.0)
STEPS = 20
EOS = 2
START = 1


def rerandomise(model, g):
    """LayerNorm weight 1 + 0.1·N(0,1); every bias 0.1·N(0,1); matrices N(0,1)/sqrt(fan_in) so
    activations and logits are O(1); token embeddings N(0, 0.5²), decoder positions N(0, 2²) (so the
    greedy ids vary along the sequence instead of repeating one token). The encoder's sinusoidal
    position table is kept."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "encoder.embed_positions" in name:
                continue
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif "decoder.embed_positions" in name:
                p.copy_(2.0 * torch.randn(p.shape, generator=g))
            else:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))


def greedy_nocache(model, feats, steps):
    ids = torch.full((feats.shape[0], 1), START, dtype=torch.long)
    for _ in range(steps):
        logits = model(input_features=feats, decoder_input_ids=ids, use_cache=False).logits[:, -1]
        logits[:, EOS] = -float("inf")
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
    return ids[:, 1:]


def greedy_cache(model, feats, steps):
    enc = model.model.encoder(feats).last_hidden_state
    ids = torch.full((feats.shape[0], 1), START, dtype=torch.long)
    out, cache, cur = [], None, ids
    step_logits = []
    for _ in range(steps):
        o = model(encoder_outputs=(enc,), decoder_input_ids=cur, past_key_values=cache, use_cache=True)
        cache = o.past_key_values
        logits = o.logits[:, -1].clone()
        step_logits.append(logits.clone())
        logits[:, EOS] = -float("inf")
        cur = logits.argmax(-1, keepdim=True)
        out.append(cur)
    return torch.cat(out, 1), torch.stack(step_logits, 1)


def main():
    out = out_dir("audio", [sys.argv[0], sys.argv[1]] if len(sys.argv) > 1 else [sys.argv[0], MODELS_FIXTURES])
    torch.manual_seed(0)
    cfg = WhisperConfig(**CONFIG)
    model = WhisperForConditionalGeneration(cfg).eval()
    g = torch.Generator().manual_seed(1234)
    rerandomise(model, g)
    mdir = os.path.join(out, "whisper_hf_tiny")
    os.makedirs(mdir, exist_ok=True)
    model.save_pretrained(mdir, safe_serialization=True)
    for f in os.listdir(mdir):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(mdir, f))  # generation_config.json: not needed here
        else:
            os.chmod(os.path.join(mdir, f), 0o644)
    from safetensors import safe_open
    with safe_open(os.path.join(mdir, "model.safetensors"), "np") as f:
        keys = sorted(f.keys())
        dtypes = sorted({str(f.get_tensor(k).dtype) for k in keys})

    # Reload from disk: what the fixture files hold is what is tested.
    model = WhisperForConditionalGeneration.from_pretrained(mdir).eval()
    frames = 2 * CONFIG["max_source_positions"]
    feats = torch.randn((2, CONFIG["num_mel_bins"], frames), generator=g)
    dec_ids = torch.randint(3, CONFIG["vocab_size"], (2, 12), generator=g)
    dec_ids[:, 0] = START
    with torch.no_grad():
        enc = model.model.encoder(feats).last_hidden_state
        tf_logits = model(input_features=feats, decoder_input_ids=dec_ids, use_cache=False).logits
        g_nocache = greedy_nocache(model, feats, STEPS)
        g_cache, step_logits = greedy_cache(model, feats, STEPS)
        gc = GenerationConfig(decoder_start_token_id=START, bos_token_id=START, eos_token_id=EOS,
                              pad_token_id=EOS, max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False,
                              num_beams=1)
        gen = GenerationMixin.generate(model, input_features=feats, generation_config=gc)
        # eager vs default (sdpa) attention
        model_eager = WhisperForConditionalGeneration.from_pretrained(mdir, attn_implementation="eager").eval()
        tf_eager = model_eager(input_features=feats, decoder_input_ids=dec_ids, use_cache=False).logits
    gen = gen[:, -STEPS:]
    assert torch.equal(g_nocache, g_cache), (g_nocache, g_cache)
    assert torch.equal(g_nocache, gen), (g_nocache, gen)
    # Greedy margins: best minus runner-up logit per step (how close a flip is).
    lg = step_logits.clone()
    lg[:, :, EOS] = -float("inf")
    top2 = lg.topk(2, -1).values
    margin = float((top2[..., 0] - top2[..., 1]).min())

    tensors = dict(input_features=feats.numpy(), encoder_last_hidden_state=enc.numpy(),
                   decoder_input_ids=dec_ids.numpy().astype(np.int64), teacher_forced_logits=tf_logits.numpy(),
                   greedy_ids=g_nocache.numpy().astype(np.int64), greedy_step_logits=step_logits.numpy())
    save_tensors(os.path.join(out, "whisper_hf_tiny_io.safetensors"), tensors)
    write_json(os.path.join(out, "whisper_hf_tiny_io.json"), dict(
        description="tiny random transformers WhisperForConditionalGeneration and its outputs; see the script docstring",
        versions=dict(versions(), safetensors=md.version("safetensors")),
        config=CONFIG,
        recipe=("torch.manual_seed(0); WhisperForConditionalGeneration(WhisperConfig(**config)); then with "
                "torch.Generator().manual_seed(1234): rerandomise() (LayerNorm weights 1+0.1·N, biases 0.1·N, "
                "matrices N/sqrt(fan_in), token embeddings 0.5·N, decoder positions 2·N, encoder sinusoids kept); "
                "input_features = randn(2, 80, 200), decoder_input_ids = randint(3, 400, (2, 12)) with column 0 = 1, "
                "same generator, in that order"),
        model_files=dict(config_json_sha256=sha256_file(os.path.join(mdir, "config.json")),
                         model_safetensors_sha256=sha256_file(os.path.join(mdir, "model.safetensors")),
                         keys=keys, dtypes=dtypes, proj_out_saved="proj_out.weight" in keys),
        greedy=dict(steps=STEPS, start_id=START, disabled_ids=[EOS], ids=g_nocache.tolist(),
                    nocache_equals_cache=True, equals_generate_min_new_tokens=True,
                    min_top1_top2_logit_margin=margin),
        checks=dict(teacher_forced_eager_vs_sdpa_max_abs_diff=float((tf_eager - tf_logits).abs().max())),
    ))
    print("keys", len(keys), "greedy", g_nocache.tolist(), "margin", margin)


if __name__ == "__main__":
    main()
