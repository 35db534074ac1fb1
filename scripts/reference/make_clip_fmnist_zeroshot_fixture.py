#!/usr/bin/env python3
"""Zero-shot reference of the committed CLIP checkpoint on real test images
(crates/mosaic-train/tests/fixtures/clip_fmnist_zeroshot.*).

    python scripts/reference/make_clip_fmnist_zeroshot_fixture.py --fmnist DIR

For the first 500 Fashion-MNIST t10k images, what transformers computes
with checkpoints/clip-fmnist-0to4: the processor's pixels
(`CLIPImageProcessorPil`, grey → RGB → bicubic 32 → crop), L2-normalised
`get_image_features`, the prompt-ensembled class embeddings of the ten
class names over the five templates (make_clip_fmnist_checkpoint.py's
definition, the one Mosaic's ImageTextRun uses), the argmax predictions and
their accuracy. Mosaic's test builds the checkpoint into a MultimodalModel
(configs/arch/clip_fmnist.toml) and must give the same numbers.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_clip_fmnist_checkpoint as ck  # noqa: E402
from fixture_common import REPO_ROOT, save_tensors, versions, write_json  # noqa: E402

import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import CLIPImageProcessorPil, CLIPModel  # noqa: E402

N = 500


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fmnist", required=True, help="folder with the Fashion-MNIST IDX .gz files")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ckpt = os.path.join(REPO_ROOT, "checkpoints", "clip-fmnist-0to4")
    model = CLIPModel.from_pretrained(ckpt).eval()
    tok = Tokenizer.from_file(os.path.join(ckpt, "tokenizer.json"))
    proc = CLIPImageProcessorPil.from_pretrained(ckpt)
    x, y = ck.load_split(args.fmnist, "test")
    px = ck.preprocess(proc, x[:N])
    img = ck.image_embeddings(model, px)
    cls = ck.class_embeddings(model, tok, list(range(10)))
    pred = (img @ cls.T).argmax(-1)
    labels = torch.from_numpy(y[:N])
    acc = float((pred == labels).double().mean())
    sims = (img @ cls.T).sort(-1, descending=True).values
    out = os.path.join(REPO_ROOT, "crates", "mosaic-train", "tests", "fixtures")
    os.makedirs(out, exist_ok=True)
    save_tensors(os.path.join(out, "clip_fmnist_zeroshot.safetensors"), {
        "pixel_values": px[:8].contiguous(),
        "image_embeds": img.contiguous(),
        "class_embeds": cls.contiguous(),
        "predictions": pred.to(torch.int64).contiguous(),
        "labels": labels.to(torch.int64).contiguous(),
    })
    write_json(os.path.join(out, "clip_fmnist_zeroshot.json"), {
        "generator": "scripts/reference/make_clip_fmnist_zeroshot_fixture.py",
        "versions": versions(),
        "checkpoint": "checkpoints/clip-fmnist-0to4",
        "images": f"the first {N} Fashion-MNIST t10k images",
        "accuracy": acc,
        "smallest_top1_margin": float((sims[:, 0] - sims[:, 1]).min()),
        "pixel_values": "the first 8 images only",
    })
    print(f"accuracy on the first {N}: {acc:.4f}; smallest top-1 margin {float((sims[:, 0] - sims[:, 1]).min()):.2e}")


if __name__ == "__main__":
    main()
