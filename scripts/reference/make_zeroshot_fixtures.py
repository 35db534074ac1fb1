#!/usr/bin/env python3
"""Zero-shot image classification fixtures (fixtures/zeroshot/).

    MOSAIC_HOME=... .venv-ref/bin/python scripts/reference/make_zeroshot_fixtures.py [FIXTURES_ROOT]

Writes a complete CLIP-like model folder that `mosaic zero-shot` can load
(config.json + model.safetensors from `CLIPModel.save_pretrained`, the
CLIP-layout BPE tokenizer.json of the data fixtures, a preprocessor_config.json
from `CLIPImageProcessorPil.save_pretrained`) and the reference probabilities of
zero-shot classification of three scikit-image photos:

* `single`: every label through one template, exactly what transformers'
  `zero-shot-image-classification` pipeline computes
  (`logits_per_image.softmax(-1)` of `CLIPModel(input_ids, pixel_values,
  attention_mask)`).
* `ensemble`: CLIP's prompt ensembling (Radford et al. 2021, the
  `zeroshot_classifier` of the CLIP notebook): per label, the
  L2-normalised text embeddings of all templates are averaged and
  re-normalised; logits = exp(logit_scale) · normalised image embedding ·
  class embedding; probabilities = softmax over labels.

The model weights are re-randomised (like make_vision_model_fixtures.py) so
that the tiny model separates the photos; CPU, one thread, deterministic.
"""

import json
import os
import shutil
import sys
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import REPO_ROOT, asset, save_tensors, sha256_file, versions, write_json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel  # noqa: E402

warnings.filterwarnings("ignore")
torch.set_num_threads(1)

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO_ROOT, "crates", "mosaic-models", "tests", "fixtures")
OUT = os.path.join(ROOT, "zeroshot")
MODEL = os.path.join(OUT, "clip_zs")
TOKENIZER = os.path.join(REPO_ROOT, "crates", "mosaic-data", "tests", "fixtures", "text", "clip_bpe_tokenizer.json")
PHOTOS = ["chelsea", "coffee", "astronaut"]
LABELS = ["a cat", "a cup of coffee", "an astronaut", "a rocket"]
SINGLE_TEMPLATE = "This is a photo of {}."
TEMPLATES = ["a photo of {}.", "a blurry photo of {}.", "art of {}.", "a close-up photo of {}."]
CONTEXT = 32


def randomise(model):
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name == "logit_scale":
                continue
            if "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                if name.endswith("weight"):
                    p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
                    continue
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embedding" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def tokenize(tok, texts):
    """CLIP tokenizer semantics: <|startoftext|> text <|endoftext|>, right-padded
    with <|endoftext|> to the longest, attention mask 1/0."""
    encs = [tok.encode(t).ids[:CONTEXT] for t in texts]
    n = max(len(e) for e in encs)
    eot = tok.token_to_id("<|endoftext|>")
    ids = np.full((len(encs), n), eot, dtype=np.int64)
    mask = np.zeros((len(encs), n), dtype=np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e)] = e
        mask[i, : len(e)] = 1
    return ids, mask


def main():
    if os.path.exists(MODEL):
        shutil.rmtree(MODEL)
    os.makedirs(MODEL)
    tok = Tokenizer.from_file(TOKENIZER)
    vocab = tok.get_vocab_size()
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=CONTEXT,
            bos_token_id=tok.token_to_id("<|startoftext|>"),
            eos_token_id=tok.token_to_id("<|endoftext|>"), pad_token_id=tok.token_to_id("<|endoftext|>"),
        ),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    randomise(model)
    model.save_pretrained(MODEL, safe_serialization=True)
    shutil.copyfile(TOKENIZER, os.path.join(MODEL, "tokenizer.json"))
    proc = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc.save_pretrained(MODEL)
    proc = CLIPImageProcessorPil.from_pretrained(MODEL)
    for f in os.listdir(MODEL):
        os.chmod(os.path.join(MODEL, f), 0o644)  # save_pretrained writes 0600 files

    images = [Image.open(asset("skimage-photos", f"{p}.png")).convert("RGB") for p in PHOTOS]
    pixels = proc(images=images, return_tensors="pt")["pixel_values"]
    out = {"pixel_values": pixels.numpy().astype(np.float32)}
    with torch.no_grad():
        ids, mask = tokenize(tok, [SINGLE_TEMPLATE.format(l) for l in LABELS])
        o = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), pixel_values=pixels)
        out["single/input_ids"] = ids
        out["single/probs"] = o.logits_per_image.softmax(-1).numpy().astype(np.float32)
        out["single/logits_per_image"] = o.logits_per_image.numpy().astype(np.float32)

        img = model.get_image_features(pixel_values=pixels).pooler_output
        img = img / img.norm(dim=-1, keepdim=True)
        classes = []
        for label in LABELS:
            ids, mask = tokenize(tok, [t.format(label) for t in TEMPLATES])
            e = model.get_text_features(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).pooler_output
            e = e / e.norm(dim=-1, keepdim=True)
            e = e.mean(0)
            classes.append(e / e.norm())
        classes = torch.stack(classes)
        logits = model.logit_scale.exp() * img @ classes.T
        out["ensemble/class_embeddings"] = classes.numpy().astype(np.float32)
        out["ensemble/logits_per_image"] = logits.numpy().astype(np.float32)
        out["ensemble/probs"] = logits.softmax(-1).numpy().astype(np.float32)
    save_tensors(os.path.join(OUT, "zeroshot_io.safetensors"), out)
    write_json(
        os.path.join(OUT, "zeroshot_io.json"),
        {
            "photos": [f"skimage-photos/{p}.png" for p in PHOTOS],
            "labels": LABELS,
            "single_template": SINGLE_TEMPLATE,
            "templates": TEMPLATES,
            "single_top1": [LABELS[i] for i in out["single/probs"].argmax(-1)],
            "ensemble_top1": [LABELS[i] for i in out["ensemble/probs"].argmax(-1)],
            "model_sha256": sha256_file(os.path.join(MODEL, "model.safetensors")),
            "versions": versions(),
        },
    )
    print("single", out["single/probs"])
    print("ensemble", out["ensemble/probs"])


if __name__ == "__main__":
    main()
