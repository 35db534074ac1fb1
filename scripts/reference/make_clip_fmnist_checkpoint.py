#!/usr/bin/env python3
"""A tiny, genuinely pre-trained CLIP checkpoint (checkpoints/clip-fmnist-0to4/).

    python scripts/reference/make_clip_fmnist_checkpoint.py --fmnist DIR [--out DIR]

No real CLIP weights are reachable from the machines Mosaic is developed on
(model hubs are blocked; only package registries answer), so this script
pre-trains a small `transformers.CLIPModel` itself, on Fashion-MNIST classes
0-4 only (t-shirt, trouser, pullover, dress, coat). Mosaic then fine-tunes it
on all ten classes and reports held-out zero-shot accuracy before and after.

`DIR` holds the four Fashion-MNIST IDX files (`train-images-idx3-ubyte.gz`,
`train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`,
`t10k-labels-idx1-ubyte.gz`): `$MOSAIC_HOME/assets/fashion-mnist/`, or the
Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`).

The folder written is what Mosaic's CLIP loader reads:

* `config.json` + `model.safetensors`: `CLIPModel.save_pretrained` (float32).
* `tokenizer.json`: a `tokenizers` WordLevel tokenizer over the words of the
  class names and caption templates (NFC + lowercase, `Whitespace`
  pre-tokenizer, so "t-shirt" is `t - shirt`), with CLIP's layout of special
  tokens: `<|startoftext|>` / `<|endoftext|>` added by a TemplateProcessing
  post-processor and holding the two largest ids; `<pad>` = 0, `<unk>` = 1.
* `preprocessor_config.json`: `CLIPImageProcessorPil.save_pretrained` (28×28
  grey → RGB, bicubic resize to 32, centre crop 32, CLIP mean/std).
* `pretrain_report.json` (versions, sizes, loss, accuracies, sha256) and a
  `README.md` with the same numbers.

Pre-training: every TRAIN image of classes 0-4 paired with the caption
`template.format(class)`, the template drawn at random per sample and epoch;
CLIP's symmetric InfoNCE loss (`CLIPModel(..., return_loss=True)`) with the
learned temperature (clamped at 100 like CLIP); AdamW, warm-up + cosine decay.
Zero-shot accuracy (CLIP prompt ensembling, as Mosaic computes it) is measured
on the t10k TEST images of classes 0-4 and of all ten classes.

CPU, one thread (two threads ran 3-4x slower on a busy two-core machine and
would make the float summation order depend on the thread count), fixed seeds:
reruns give the same checkpoint with the same library versions on the same
kind of CPU (a different BLAS kernel may change the last bits elsewhere).
"""

import argparse
import gzip
import json
import math
import os
import shutil
import sys
import time
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import REPO_ROOT, sha256_file, versions, write_json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors  # noqa: E402
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel  # noqa: E402

warnings.filterwarnings("ignore")

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
TEMPLATES = [
    "a photo of a {}",
    "a picture of a {}",
    "an image of a {}",
    "a black and white photo of a {}",
    "a small photo of a {}",
]
PRETRAIN_CLASSES = [0, 1, 2, 3, 4]
DEFAULT_OUT = os.path.join(REPO_ROOT, "checkpoints", "clip-fmnist-0to4")

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"
CONTEXT = 16  # text max_position_embeddings; the longest caption is 12 tokens

MODEL_SIZES = dict(
    text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
    vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                image_size=32, patch_size=8, num_channels=3),
    projection_dim=64,
)


# ---------------------------------------------------------------- data


def read_idx(path):
    """uint8 array of an IDX (.gz) file: [N, 28, 28] images or [N] labels."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    assert magic >> 8 == 0x08, f"{path}: not an unsigned-byte IDX file"
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_split(fmnist, split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(fmnist, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(fmnist, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    assert images.shape[0] == labels.shape[0] and images.shape[1:] == (28, 28)
    return images, labels


def preprocess(proc, images, chunk=2000):
    """[N, 28, 28] uint8 → [N, 3, 32, 32] float32 through the image processor
    (each image as a PIL "L" image, converted to RGB by the processor)."""
    out = []
    for i in range(0, len(images), chunk):
        pil = [Image.fromarray(a, mode="L") for a in images[i: i + chunk]]
        out.append(proc(images=pil, return_tensors="np")["pixel_values"].astype(np.float32))
    return torch.from_numpy(np.concatenate(out))


# ----------------------------------------------------------- tokenizer


def build_tokenizer():
    words = []
    pre = pre_tokenizers.Whitespace()
    for text in [t.format("") for t in TEMPLATES] + CLASSES + [".", ","]:
        for w, _ in pre.pre_tokenize_str(text.lower()):
            if w not in words:
                words.append(w)
    vocab = {PAD: 0, UNK: 1}
    for w in words:
        vocab[w] = len(vocab)
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre
    tok.add_special_tokens([PAD, UNK, BOS, EOS])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
        special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])],
    )
    tok.enable_padding(pad_id=vocab[PAD], pad_token=PAD)
    return tok


def encode(tok, texts):
    """input_ids / attention_mask [B, T], right-padded with <pad> to the longest."""
    encs = tok.encode_batch(texts)
    unk = tok.token_to_id(UNK)
    for t, e in zip(texts, encs):
        assert unk not in e.ids, f"unknown token in {t!r}: {e.tokens}"
        assert len(e.ids) <= CONTEXT
    ids = torch.tensor([e.ids for e in encs], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.int64)
    return ids, mask


# ------------------------------------------------------------ zero-shot


@torch.no_grad()
def class_embeddings(model, tok, classes):
    """Per class: the L2-normalised text embeddings of every template,
    averaged and re-normalised (CLIP prompt ensembling) → [C, P]."""
    out = []
    for c in classes:
        ids, mask = encode(tok, [t.format(CLASSES[c]) for t in TEMPLATES])
        e = model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        e = e / e.norm(dim=-1, keepdim=True)
        e = e.mean(0)
        out.append(e / e.norm())
    return torch.stack(out)


@torch.no_grad()
def image_embeddings(model, pixels, batch=1000):
    out = []
    for i in range(0, len(pixels), batch):
        e = model.get_image_features(pixel_values=pixels[i: i + batch]).pooler_output
        out.append(e / e.norm(dim=-1, keepdim=True))
    return torch.cat(out)


@torch.no_grad()
def zero_shot(model, tok, pixels, labels):
    """Accuracy over the test images of classes 0-4 (argmax over 0-4) and
    over all test images (argmax over all ten), plus the 10-class confusion."""
    model.eval()
    img = image_embeddings(model, pixels)
    res = {}
    for key, classes in [("classes_0_4", PRETRAIN_CLASSES), ("all_10", list(range(10)))]:
        keep = torch.isin(labels, torch.tensor(classes))
        cls = class_embeddings(model, tok, classes)
        pred = torch.tensor(classes)[(img[keep] @ cls.T).argmax(-1)]
        res[key] = float((pred == labels[keep]).double().mean())
        if key == "all_10":
            conf = torch.zeros(10, 10, dtype=torch.int64)
            for t, p in zip(labels[keep].tolist(), pred.tolist()):
                conf[t, p] += 1
            res["all_10_per_class"] = {CLASSES[c]: int(conf[c, c]) / int(conf[c].sum()) for c in range(10)}
            res["all_10_confusion"] = conf.tolist()
    return res


# --------------------------------------------------------------- train


def make_model(tok):
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=tok.get_vocab_size(), max_position_embeddings=CONTEXT, hidden_act="quick_gelu",
            bos_token_id=tok.token_to_id(BOS), eos_token_id=tok.token_to_id(EOS), pad_token_id=tok.token_to_id(PAD),
            **MODEL_SIZES["text"],
        ),
        vision_config=dict(hidden_act="quick_gelu", **MODEL_SIZES["vision"]),
        projection_dim=MODEL_SIZES["projection_dim"],
    )
    assert cfg.text_config.eos_token_id != 2
    return CLIPModel(cfg)


def train(model, tok, pixels, labels, args):
    """CLIP contrastive pre-training; returns per-epoch mean losses and the step count."""
    n = len(labels)
    # caption table [class, template] → token ids, padded to the longest caption
    captions = [t.format(CLASSES[c]) for c in range(10) for t in TEMPLATES]
    cap_ids, cap_mask = encode(tok, captions)
    cap_ids = cap_ids.view(10, len(TEMPLATES), -1)
    cap_mask = cap_mask.view(10, len(TEMPLATES), -1)

    decay = [p for name, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for name, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.98), eps=1e-6,
    )
    steps_per_epoch = n // args.batch  # drop the last partial batch
    total = steps_per_epoch * args.epochs
    warmup = min(args.warmup, total)

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    g = torch.Generator().manual_seed(args.seed)
    max_scale = math.log(100.0)
    epoch_losses, step = [], 0
    model.train()
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=g)
        templ = torch.randint(len(TEMPLATES), (n,), generator=g)
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * args.batch: (b + 1) * args.batch]
            c, t = labels[idx], templ[idx]
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            out = model(input_ids=cap_ids[c, t], attention_mask=cap_mask[c, t], pixel_values=pixels[idx],
                        return_loss=True)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, max_scale)
            losses.append(float(out.loss))
            step += 1
        epoch_losses.append(float(np.mean(losses)))
        print(f"epoch {epoch + 1}/{args.epochs}: loss {epoch_losses[-1]:.4f} (last batch {losses[-1]:.4f}), "
              f"logit_scale exp {float(model.logit_scale.exp()):.2f}", flush=True)
    return epoch_losses, losses[-1], step, steps_per_epoch


# ---------------------------------------------------------------- main


README = """# clip-fmnist-0to4

A tiny CLIP (`CLIPModel` written by Hugging Face transformers {transformers}) that
was **pre-trained by `scripts/reference/make_clip_fmnist_checkpoint.py` on
Fashion-MNIST classes 0-4 only** (t-shirt, trouser, pullover, dress, coat).
No real CLIP weights are reachable from the machines Mosaic is built on (model
hubs are blocked), so this stands in for a pre-trained checkpoint: Mosaic
fine-tunes it on all ten classes and reports held-out zero-shot accuracy
before and after.

Files (what Mosaic's CLIP loader reads):

* `config.json`, `model.safetensors`: `CLIPModel.save_pretrained`, float32,
  {params} parameters. Text and vision towers: hidden {th}, {tl} layers,
  {ta} heads, MLP {ti}, `quick_gelu`; text context {ctx}, vocabulary {vocab};
  vision {img}×{img} RGB, patch {patch}; projection {proj}.
* `tokenizer.json`: WordLevel over the words of the class names and caption
  templates (NFC + lowercase, `Whitespace` pre-tokenizer: "t-shirt" is
  `t - shirt`); `<pad>` = {pad}, `<unk>` = 1, `<|startoftext|>` = {bos},
  `<|endoftext|>` = {eos} (config `eos_token_id`, pooled token) added by a
  TemplateProcessing post-processor.
* `preprocessor_config.json`: `CLIPImageProcessorPil` (grey → RGB, bicubic
  resize to 32, centre crop 32×32, CLIP mean/std).
* `pretrain_report.json`: versions, sizes, losses, accuracies, sha256.

Captions: `template.format(class)` with the templates
{templates}
and class names {classes}.

Pre-training: the {ntrain} Fashion-MNIST train images of classes 0-4, one
caption per image with the template drawn at random each epoch; CLIP's
symmetric InfoNCE loss with the learned temperature; AdamW (lr {lr}, weight
decay {wd}, warm-up {warmup} steps + cosine), batch {batch}, {epochs} epochs
({steps} steps), seed {seed}, CPU, {threads} torch thread(s): {wall:.0f} s wall in all. Final
epoch mean loss {loss:.4f} (ln {batch} = {lnb:.2f} is chance; with five classes
a batch holds many same-class pairs, so the loss cannot go near 0).

Zero-shot accuracy on the Fashion-MNIST **test** set (t10k; per class the
L2-normalised text embeddings of the five templates averaged and
re-normalised, argmax of the cosine with the L2-normalised image embedding):

| model | classes 0-4 (5,000 images, 5-way) | all 10 classes (10,000 images, 10-way) |
|---|---|---|
| random init (seed {seed}) | {init04:.2%} | {init10:.2%} |
| this checkpoint | **{acc04:.2%}** | **{acc10:.2%}** |

Per-class accuracy over all 10 classes: {perclass}.
Classes 5-9 were never seen in pre-training, so their text embeddings (and the
words `sandal`, `sneaker`, `bag`, `ankle`, `boot`) are essentially untrained;
`shirt` was seen only inside `t - shirt`.

Regenerate (needs torch, transformers, tokenizers, safetensors, numpy, Pillow
at the versions in `scripts/reference/requirements*.txt`; rewrites this
folder; `DIR` holds the four Fashion-MNIST IDX `.gz` files, e.g.
`$MOSAIC_HOME/assets/fashion-mnist` or `/usr/share/datasets/fashion-mnist`
from the Debian package `dataset-fashion-mnist`):

```
{command}
```

Reruns with the same library versions on the same kind of CPU give the same
`model.safetensors`.

`model.safetensors` sha256: `{sha}`
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fmnist", required=True, help="folder with the four Fashion-MNIST IDX .gz files")
    ap.add_argument("--out", default=DEFAULT_OUT, help="checkpoint folder to (re)write (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    t0 = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    tok = build_tokenizer()
    proc = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_convert_rgb=True,
        resample=3, do_center_crop=True, do_normalize=True,
    )
    train_x, train_y = load_split(args.fmnist, "train")
    test_x, test_y = load_split(args.fmnist, "test")
    keep = np.isin(train_y, PRETRAIN_CLASSES)
    train_x, train_y = train_x[keep], train_y[keep]
    train_px = preprocess(proc, train_x)
    test_px = preprocess(proc, test_x)
    train_y, test_y = torch.from_numpy(train_y), torch.from_numpy(test_y)
    print(f"data: {len(train_y)} train images (classes 0-4), {len(test_y)} test images; "
          f"{time.time() - t0:.1f} s", flush=True)

    model = make_model(tok)
    n_params = sum(p.numel() for p in model.parameters())
    init_acc = zero_shot(model, tok, test_px, test_y)
    print(f"random init: zero-shot 0-4 {init_acc['classes_0_4']:.4f}, all 10 {init_acc['all_10']:.4f}", flush=True)

    t_train = time.time()
    epoch_losses, last_loss, steps, steps_per_epoch = train(model, tok, train_px, train_y, args)
    train_wall = time.time() - t_train
    acc = zero_shot(model, tok, test_px, test_y)
    print(f"pre-trained: zero-shot 0-4 {acc['classes_0_4']:.4f}, all 10 {acc['all_10']:.4f}", flush=True)

    # write the folder
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    model.save_pretrained(args.out, safe_serialization=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    proc.save_pretrained(args.out)

    # reload everything from disk and check it reproduces the numbers
    tok2 = Tokenizer.from_file(os.path.join(args.out, "tokenizer.json"))
    model2 = CLIPModel.from_pretrained(args.out).eval()
    proc2 = CLIPImageProcessorPil.from_pretrained(args.out)
    assert torch.equal(preprocess(proc2, test_x[:100]), test_px[:100])
    acc2 = zero_shot(model2, tok2, test_px, test_y)
    assert acc2["classes_0_4"] == acc["classes_0_4"] and acc2["all_10"] == acc["all_10"], (acc, acc2)
    samples = {t: tok2.encode(t).ids for t in ["a photo of a t-shirt", "a small photo of a ankle boot"]}

    tc, vc = model.config.text_config, model.config.vision_config
    wall = time.time() - t0
    rel_out = os.path.relpath(os.path.abspath(args.out), REPO_ROOT).replace(os.sep, "/")
    command = "python scripts/reference/make_clip_fmnist_checkpoint.py --fmnist DIR"
    if rel_out != "checkpoints/clip-fmnist-0to4":
        command += f" --out {rel_out}"
    report = {
        "what": "tiny CLIPModel pre-trained on Fashion-MNIST classes 0-4 (train split) by "
                "scripts/reference/make_clip_fmnist_checkpoint.py",
        "command": command,
        "versions": versions(),
        "classes": CLASSES,
        "templates": TEMPLATES,
        "pretrain_classes": PRETRAIN_CLASSES,
        "config": {
            "text": {k: getattr(tc, k) for k in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                                 "num_attention_heads", "max_position_embeddings", "hidden_act",
                                                 "bos_token_id", "eos_token_id", "pad_token_id"]},
            "vision": {k: getattr(vc, k) for k in ["hidden_size", "intermediate_size", "num_hidden_layers",
                                                   "num_attention_heads", "image_size", "patch_size", "num_channels",
                                                   "hidden_act"]},
            "projection_dim": model.config.projection_dim,
            "logit_scale_init_value": model.config.logit_scale_init_value,
        },
        "tokenizer": {"vocab_size": tok2.get_vocab_size(), "pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS,
                      "samples": samples},
        "parameters": n_params,
        "train": {
            "images": len(train_y), "batch": args.batch, "epochs": args.epochs, "steps": steps,
            "steps_per_epoch": steps_per_epoch, "lr": args.lr, "weight_decay": args.weight_decay,
            "warmup_steps": args.warmup, "schedule": "linear warm-up then cosine to 0",
            "optimizer": "AdamW(betas=(0.9, 0.98), eps=1e-6), no decay on biases/norms/logit_scale",
            "seed": args.seed, "threads": args.threads,
            "epoch_mean_loss": epoch_losses, "final_loss": last_loss,
            "final_epoch_mean_loss": epoch_losses[-1],
            "logit_scale": float(model.logit_scale), "train_wall_s": round(train_wall, 1),
        },
        "wall_s": round(wall, 1),
        "zero_shot_test": {
            "random_init": {"classes_0_4": init_acc["classes_0_4"], "all_10": init_acc["all_10"]},
            "pretrained": {"classes_0_4": acc["classes_0_4"], "all_10": acc["all_10"]},
            "pretrained_all_10_per_class": acc["all_10_per_class"],
            "pretrained_all_10_confusion": acc["all_10_confusion"],
        },
        "model_sha256": sha256_file(os.path.join(args.out, "model.safetensors")),
    }
    write_json(os.path.join(args.out, "pretrain_report.json"), report)
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(README.format(
            transformers=report["versions"].get("transformers"), params=f"{n_params:,}",
            th=tc.hidden_size, tl=tc.num_hidden_layers, ta=tc.num_attention_heads, ti=tc.intermediate_size,
            ctx=tc.max_position_embeddings, vocab=tc.vocab_size, img=vc.image_size, patch=vc.patch_size,
            proj=model.config.projection_dim, pad=tc.pad_token_id, bos=tc.bos_token_id, eos=tc.eos_token_id,
            templates=", ".join(f"`{t}`" for t in TEMPLATES), classes=", ".join(f"`{c}`" for c in CLASSES),
            ntrain=f"{len(train_y):,}", lr=args.lr, wd=args.weight_decay, warmup=args.warmup, batch=args.batch,
            epochs=args.epochs, steps=steps, threads=args.threads, seed=args.seed, wall=wall, loss=epoch_losses[-1],
            lnb=math.log(args.batch), init04=init_acc["classes_0_4"], init10=init_acc["all_10"],
            acc04=acc["classes_0_4"], acc10=acc["all_10"],
            perclass=", ".join(f"{k} {v:.0%}" for k, v in acc["all_10_per_class"].items()),
            command=command, sha=report["model_sha256"],
        ))
    for name in os.listdir(args.out):
        os.chmod(os.path.join(args.out, name), 0o644)  # save_pretrained writes 0600 files
    z = report["zero_shot_test"]
    print(json.dumps({"parameters": n_params, "wall_s": report["wall_s"], "random_init": z["random_init"],
                      "pretrained": z["pretrained"], "per_class": z["pretrained_all_10_per_class"],
                      "model_sha256": report["model_sha256"]}, indent=1))


if __name__ == "__main__":
    main()
