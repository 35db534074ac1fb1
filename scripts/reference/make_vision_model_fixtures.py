#!/usr/bin/env python3
"""Vision-model parity fixtures for mosaic-models (fixtures/vision/).

    MOSAIC_HOME=... .venv-ref/bin/python scripts/reference/make_vision_model_fixtures.py [FIXTURES_ROOT]

FIXTURES_ROOT defaults to crates/mosaic-models/tests/fixtures. Runs on the CPU
with one torch thread (deterministic; reruns rewrite byte-identical files) and
never touches the network (HF_HUB_OFFLINE=1; the real EfficientNet-Lite0 is
loaded from $MOSAIC_HOME/assets/efficientnet-lite0/efficientnet-lite0.pth).

Files (see crates/mosaic-models/tests/fixtures/README.md):
  vision/efficientnet_lite0.safetensors   top-5 + logits per scikit-image photo, the exact
                                          preprocessed chelsea input and its pooled features
  vision/efficientnet_lite0.json          architecture (blocks, padding per conv, weight
                                          names/shapes/strides), preprocessing, per-photo results
  vision/clip_tiny/{config.json,model.safetensors}  random CLIPModel (save_pretrained)
  vision/vit_tiny/{config.json,model.safetensors}   random ViTModel with pooler
  vision/tiny_io.safetensors              fixed inputs + CLIP / ViT outputs
  vision/tiny_io.json                     configs, input recipe, checks
and crates/mosaic-models/assets/imagenet_classes.txt (torchvision's ImageNet-1k
class names, one per line, index order).

Every run re-derives the outputs with independent float64 numpy write-ups of
the forward passes described in the README (EfficientNet-Lite0 on two photos,
CLIP both towers + logits, ViT + pooler) and asserts agreement, so the
description there is checked, not recalled.
"""

import importlib.metadata as md
import json
import math
import os
import shutil
import sys
import warnings
import zipfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import REPO_ROOT, asset, out_dir, rel, save_tensors, sha256_file, versions, write_json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

warnings.filterwarnings("ignore")
torch.set_num_threads(1)

MODELS_FIXTURES = os.path.join(REPO_ROOT, "crates", "mosaic-models", "tests", "fixtures")
CLASSES_TXT = os.path.join(REPO_ROOT, "crates", "mosaic-models", "assets", "imagenet_classes.txt")

EFF_ASSET = "efficientnet-lite0"
EFF_FILE = "efficientnet-lite0.pth"
IMAGE_EXTS = (".png", ".jpg", ".gif", ".tif")  # as make_image_fixtures.py
LOGIT_PHOTOS = ["astronaut", "chelsea", "coffee"]
INPUT_PHOTO = "chelsea"
NUMPY_CHECK_PHOTOS = ["chelsea", "coffee"]

# Preprocessing (see README): shortest edge -> 256 (PIL bicubic), center crop
# 224, x = (u8 - 127) / 128. The mean/std are TF's EfficientNet-Lite ones
# (MEAN_RGB = 127, STDDEV_RGB = 128 on the 0..255 scale; the converted weights
# come straight from those TF checkpoints).
PREP = dict(resize_shortest_edge=256, resample="bicubic", resample_pil=3, crop=224, mean_u8=127.0, std_u8=128.0)

ALT_IMAGENET_MEAN = [0.485, 0.456, 0.406]
ALT_IMAGENET_STD = [0.229, 0.224, 0.225]

TINY_SEED = 20240612
PARAM_SEED = 1234
CLIP_TEXT = dict(
    vocab_size=100,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=16,
    hidden_act="quick_gelu",
    bos_token_id=98,
    eos_token_id=99,
    pad_token_id=0,
)
CLIP_VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
    hidden_act="quick_gelu",
)
CLIP_PROJ = 16
VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8)
# input_ids [2,8]: row 0 = bos t t eos + 4 x eos-id padding (openai tokenizer style:
# pad token == eos), row 1 = bos t t t t t eos + 1 x id-0 padding.
EOS_POS = [3, 6]
PAD_IDS = [99, 0]


def all_versions():
    v = versions()
    for name in ["safetensors", "efficientnet-lite-pytorch"]:
        v[name] = md.version(name)
    return v


def maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


# ---------------------------------------------------------------------------
# EfficientNet-Lite0: preprocessing (plain PIL + numpy)
# ---------------------------------------------------------------------------


def shortest_edge_size(w, h, s):
    """(w', h') with the short side = s and the long side int(s * long / short)."""
    if w <= h:
        return s, int(s * h / w)
    return int(s * w / h), s


def preprocess_u8(img_rgb):
    """uint8 CHW [3,224,224] crop."""
    w, h = img_rgb.size
    nw, nh = shortest_edge_size(w, h, PREP["resize_shortest_edge"])
    a = np.asarray(img_rgb.resize((nw, nh), Image.Resampling.BICUBIC))  # reducing_gap=None
    c = PREP["crop"]
    top, left = (nh - c) // 2, (nw - c) // 2
    a = a[top : top + c, left : left + c]
    return np.ascontiguousarray(a.transpose(2, 0, 1)), (nw, nh), (top, left)


def normalize(u8):
    """(f32(u8) - 127) / 128: both steps exact in f32."""
    return ((u8.astype(np.float32) - np.float32(PREP["mean_u8"])) / np.float32(PREP["std_u8"]))[None]


def normalize_processor_style(u8, mean, std):
    """transformers PIL-backend style: f32(f64(u8) / 255), then (x - f32(mean)) / f32(std)."""
    x = (u8.astype(np.float64) * (1 / 255)).astype(np.float32)
    m = np.array(mean, np.float32)[:, None, None]
    s = np.array(std, np.float32)[:, None, None]
    return ((x - m) / s)[None]


# ---------------------------------------------------------------------------
# EfficientNet-Lite0: float64 numpy write-up of the forward pass
# ---------------------------------------------------------------------------


def tf_same_pad(n, k, s, d=1):
    """(before, after) padding of TF 'SAME': output ceil(n/s), extra pixel after."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def np_conv(x, w, s, groups):
    """x [C,H,W] f64, w [O, C/groups, k, k]; TF same padding; no bias."""
    C, H, W = x.shape
    O, _, k, _ = w.shape
    ph, pw = tf_same_pad(H, k, s), tf_same_pad(W, k, s)
    xp = np.pad(x, ((0, 0), ph, pw))
    oh, ow = -(-H // s), -(-W // s)
    if k == 1 and s == 1 and groups == 1:
        return np.tensordot(w[:, :, 0, 0], x, axes=([1], [0]))
    if groups == 1:
        cols = np.stack(
            [xp[:, ky : ky + s * (oh - 1) + 1 : s, kx : kx + s * (ow - 1) + 1 : s] for ky in range(k) for kx in range(k)],
            axis=1,
        )  # [C, k*k, oh, ow]
        return np.tensordot(w.reshape(O, C, k * k), cols, axes=([1, 2], [0, 1]))
    assert groups == C == O
    out = np.zeros((C, oh, ow))
    for ky in range(k):
        for kx in range(k):
            out += xp[:, ky : ky + s * (oh - 1) + 1 : s, kx : kx + s * (ow - 1) + 1 : s] * w[:, 0, ky, kx][:, None, None]
    return out


def np_bn(x, W, p, eps):
    g, b = W[p + ".weight"], W[p + ".bias"]
    m, v = W[p + ".running_mean"], W[p + ".running_var"]
    return (x - m[:, None, None]) / np.sqrt(v[:, None, None] + eps) * g[:, None, None] + b[:, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def np_efficientnet(W, blocks, x, eps):
    """x [3,224,224]; returns (logits [1000], pooled [1280], per-block output sums)."""
    x = relu6(np_bn(np_conv(x, W["_conv_stem.weight"], 2, 1), W, "_bn0", eps))
    sums = []
    for i, b in enumerate(blocks):
        p = f"_blocks.{i}."
        inp = x
        if b["expand_ratio"] != 1:
            x = relu6(np_bn(np_conv(x, W[p + "_expand_conv.weight"], 1, 1), W, p + "_bn0", eps))
        x = relu6(np_bn(np_conv(x, W[p + "_depthwise_conv.weight"], b["stride"], x.shape[0]), W, p + "_bn1", eps))
        x = np_bn(np_conv(x, W[p + "_project_conv.weight"], 1, 1), W, p + "_bn2", eps)  # linear bottleneck
        if b["residual"]:
            x = x + inp
        sums.append(float(x.sum()))
    x = relu6(np_bn(np_conv(x, W["_conv_head.weight"], 1, 1), W, "_bn1", eps))
    pooled = x.mean(axis=(1, 2))
    return W["_fc.weight"] @ pooled + W["_fc.bias"], pooled, sums


# ---------------------------------------------------------------------------
# EfficientNet-Lite0: fixture
# ---------------------------------------------------------------------------


def describe_architecture(model):
    gp = model._global_params
    blocks = []
    stage = -1
    for i, blk in enumerate(model._blocks):
        a = blk._block_args
        stride = a.stride if isinstance(a.stride, int) else a.stride[0]
        first_of_stage = not isinstance(a.stride, int)  # repeats get stride=1 (int) from _replace
        stage += first_of_stage
        convs = {}
        for name in ["_expand_conv", "_depthwise_conv", "_project_conv"]:
            c = getattr(blk, name, None)
            if c is None:
                continue
            sp = c.static_padding
            pad = list(sp.padding) if isinstance(sp, torch.nn.ZeroPad2d) else [0, 0, 0, 0]  # (left,right,top,bottom)
            convs[name] = {
                "kernel": c.kernel_size[0],
                "stride": c.stride[0],
                "groups": c.groups,
                "in": c.in_channels,
                "out": c.out_channels,
                "pad_lrtb_at_224": pad,
            }
        blocks.append(
            {
                "index": i,
                "stage": stage,
                "expand_ratio": a.expand_ratio,
                "kernel": a.kernel_size,
                "stride": stride,
                "in": a.input_filters,
                "out": a.output_filters,
                "hidden": a.input_filters * a.expand_ratio,
                "has_expand_conv": a.expand_ratio != 1,
                "has_se": blk.has_se,
                "id_skip": a.id_skip,
                # the package's own rule: id_skip and stride == 1 and in == out; the first
                # block of a stage keeps its stride as the list [s] ([1] != 1), but every
                # such block also changes the channel count, so this is exact here
                "residual": bool(a.id_skip and a.stride == 1 and a.input_filters == a.output_filters),
                "convs": convs,
            }
        )
    stem = model._conv_stem
    spad = list(stem.static_padding.padding)
    hsp = model._conv_head.static_padding
    return {
        "package": "efficientnet-lite-pytorch 0.1.0, EfficientNet.from_pretrained('efficientnet-lite0', weights_path=...)",
        "global_params": {k: (v if not isinstance(v, float) else float(v)) for k, v in gp._asdict().items()},
        "block_strings": [
            "r1_k3_s11_e1_i32_o16",
            "r2_k3_s22_e6_i16_o24",
            "r2_k5_s22_e6_i24_o40",
            "r3_k3_s22_e6_i40_o80",
            "r3_k5_s11_e6_i80_o112",
            "r4_k5_s22_e6_i112_o192",
            "r1_k3_s11_e6_i192_o320",
        ],
        "activation": type(model._swish).__name__,
        "batch_norm": {"eps": model._bn0.eps, "torch_momentum": model._bn0.momentum, "tf_momentum": gp.batch_norm_momentum},
        "stem": {
            "kernel": stem.kernel_size[0],
            "stride": stem.stride[0],
            "in": stem.in_channels,
            "out": stem.out_channels,
            "bias": stem.bias is not None,
            "pad_lrtb_at_224": spad,
        },
        "blocks": blocks,
        "head": {
            "conv_kernel": model._conv_head.kernel_size[0],
            "in": model._conv_head.in_channels,
            "out": model._conv_head.out_channels,
            "bias": model._conv_head.bias is not None,
            "pad": "none" if not isinstance(hsp, torch.nn.ZeroPad2d) else list(hsp.padding),
            "pooling": type(model._avg_pooling).__name__ + "(1)",
            "dropout_p_train_only": model._dropout.p,
            "fc": [model._fc.in_features, model._fc.out_features],
        },
        "feature_map_sizes_at_224": {"stem": 112, "after_blocks": model.feature_output_image_size},
    }


def weight_table(sd):
    rows = []
    for k, v in sd.items():
        rows.append([k, str(v.dtype).replace("torch.", ""), list(v.shape), list(v.stride()), v.is_contiguous()])
    return rows


def list_photos(photo_dir):
    photos, skipped = [], []
    for fname in sorted(os.listdir(photo_dir)):
        if not fname.lower().endswith(IMAGE_EXTS):
            continue
        path = os.path.join(photo_dir, fname)
        try:
            img = Image.open(path)
            img.load()
        except Exception as e:  # multipage_rgb.tif (planar RGB TIFF)
            skipped.append({"file": rel(path), "error": f"{type(e).__name__}: {e}"})
            continue
        photos.append((os.path.splitext(fname)[0], path, img))
    return photos, skipped


def make_efficientnet(out):
    from efficientnet_lite_pytorch import EfficientNet
    from transformers import CLIPImageProcessorPil

    wpath = asset(EFF_ASSET, EFF_FILE)
    sd = torch.load(wpath, map_location="cpu")  # weights_only=True default works: plain OrderedDict of tensors
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=wpath)
    model.eval()
    arch = describe_architecture(model)

    # padding: the package pads statically (sizes computed for image_size=224 at
    # construction); check it against the TF 'same' formula at 224, and the
    # dynamic-padding build (image_size=None) for equal logits below.
    size = 224
    s0 = arch["stem"]
    pl, pr = tf_same_pad(size, s0["kernel"], s0["stride"])
    assert s0["pad_lrtb_at_224"] == [pl, pr, pl, pr], s0
    size = -(-size // s0["stride"])
    for b in arch["blocks"]:
        b["input_hw"] = size
        for name, c in b["convs"].items():
            n = size if name != "_project_conv" else -(-size // b["stride"])
            pb, pa = tf_same_pad(n, c["kernel"], c["stride"])
            assert c["pad_lrtb_at_224"] == [pb, pa, pb, pa], (b["index"], name, c, n)
        size = -(-size // b["stride"])
        b["output_hw"] = size
    assert size == 7 and arch["feature_map_sizes_at_224"]["after_blocks"] == [7, 7]
    dyn = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=wpath, image_size=None)
    dyn.eval()

    blocks = arch["blocks"]
    assert [b["index"] for b in blocks if b["residual"]] == [2, 4, 6, 7, 9, 10, 12, 13, 14]
    assert not any(b["has_se"] for b in blocks) and not any("_se_" in k for k in sd)
    W64 = {k: v.numpy().astype(np.float64) for k, v in sd.items() if v.dtype == torch.float32}
    eps = arch["batch_norm"]["eps"]

    clip_like = CLIPImageProcessorPil(
        size={"shortest_edge": PREP["resize_shortest_edge"]},
        crop_size={"height": PREP["crop"], "width": PREP["crop"]},
        resample=PREP["resample_pil"],
        do_convert_rgb=False,
        do_rescale=False,
        do_normalize=False,
    )

    photo_dir = asset("skimage-photos")
    photos, skipped = list_photos(photo_dir)
    tensors = {}
    results = []
    checks = {}
    for stem, path, img in photos:
        rgb = img.convert("RGB")
        u8, resized_wh, crop_tl = preprocess_u8(rgb)
        tr_u8 = clip_like(rgb, return_tensors="np")["pixel_values"][0]
        assert tr_u8.dtype == np.uint8 and np.array_equal(tr_u8, u8), stem
        x = normalize(u8)
        with torch.no_grad():
            logits = model(torch.from_numpy(x))
            probs = torch.softmax(logits, dim=1)
            logits_dyn = dyn(torch.from_numpy(x))
            alt = model(torch.from_numpy(normalize_processor_style(u8, ALT_IMAGENET_MEAN, ALT_IMAGENET_STD)))
            tfstyle = model(
                torch.from_numpy(normalize_processor_style(u8, [127 / 255] * 3, [128 / 255] * 3))
            )
        lg = logits[0].numpy()
        pr = probs[0].numpy()
        assert np.array_equal(logits_dyn[0].numpy(), lg), stem
        order = np.argsort(-lg.astype(np.float64), kind="stable")
        top5 = order[:5].astype(np.int64)
        gaps = np.diff(lg[order[:6]].astype(np.float64))
        assert np.all(gaps < -1e-4), (stem, gaps)  # no near-ties inside / at the edge of the top 5
        tensors[f"top5/{stem}/indices"] = top5
        tensors[f"top5/{stem}/probs"] = pr[top5].astype(np.float32)
        tensors[f"logits/{stem}"] = lg
        alt_top1 = int(alt[0].argmax())
        results.append(
            {
                "stem": stem,
                "file": rel(path),
                "sha256": sha256_file(path),
                "format": img.format,
                "mode": img.mode,
                "size_wh": list(img.size),
                "n_frames": getattr(img, "n_frames", 1),
                "resized_wh": list(resized_wh),
                "crop_top_left": list(crop_tl),
                "input_sum_f64": float(x.astype(np.float64).sum()),
                "top5": [int(i) for i in top5],
                "top5_probs": [float(p) for p in pr[top5]],
                "top5_logits": [float(v) for v in lg[top5]],
                "logit_gap_5th_6th": float(lg[order[4]] - lg[order[5]]),
                "top1_with_imagenet_mean_std": alt_top1,
                "top1_prob_with_imagenet_mean_std": float(torch.softmax(alt, 1)[0, alt_top1]),
                "max_abs_logit_diff_processor_style_127_128": maxdiff(tfstyle[0], lg),
            }
        )
        if stem == INPUT_PHOTO:
            tensors[f"{stem}/input"] = x
            with torch.no_grad():
                feats = model.extract_features(torch.from_numpy(x))
            tensors[f"{stem}/pooled"] = feats.mean(dim=(2, 3))[0].numpy()
            tensors[f"{stem}/input_u8"] = u8
        if stem in NUMPY_CHECK_PHOTOS:
            ref_logits, ref_pooled, block_sums = np_efficientnet(W64, blocks, x[0].astype(np.float64), eps)
            c = {
                "max_abs_diff_logits": maxdiff(ref_logits, lg),
                "max_abs_logit": float(np.abs(lg).max()),
                "block_output_sums_f64": block_sums,
            }
            if stem == INPUT_PHOTO:
                c["max_abs_diff_pooled"] = maxdiff(ref_pooled, tensors[f"{stem}/pooled"])
            assert c["max_abs_diff_logits"] < 1e-3, c
            checks[stem] = c
    assert {r["stem"] for r in results} >= set(LOGIT_PHOTOS) | {INPUT_PHOTO}

    meta = {
        "generator": "scripts/reference/make_vision_model_fixtures.py",
        "versions": all_versions(),
        "asset": {
            "file": rel(wpath),
            "sha256": sha256_file(wpath),
            "format": "zip" if zipfile.is_zipfile(wpath) else "legacy (torch.save _use_new_zipfile_serialization=False)",
            "num_entries": len(sd),
            "num_float32": sum(v.dtype == torch.float32 for v in sd.values()),
            "num_int64_num_batches_tracked": sum(v.dtype == torch.int64 for v in sd.values()),
            "weights": {
                "columns": ["name", "dtype", "shape", "stride", "contiguous"],
                "rows": weight_table(sd),
            },
        },
        "architecture": arch,
        "preprocessing": {
            **PREP,
            "steps": [
                'PIL.Image.open(path) (first frame), .convert("RGB")',
                "short side -> 256: (w', h') = (256, int(256*h/w)) if w <= h else (int(256*w/h), 256)",
                "img.resize((w', h'), PIL.Image.Resampling.BICUBIC)  (Pillow, reducing_gap=None)",
                "center crop 224: top = (h'-224)//2, left = (w'-224)//2",
                "uint8 HWC -> CHW; x = (f32(u8) - 127) / 128 (exact in f32); batch dim 1",
            ],
            "equivalent_transformers_call": (
                "CLIPImageProcessorPil(size={'shortest_edge': 256}, crop_size={'height': 224, 'width': 224}, "
                "resample=3, do_convert_rgb=False, do_rescale=False, do_normalize=False) gives the same uint8 "
                "crop (asserted for every photo); then (u8 - 127) / 128"
            ),
            "processor_style_equivalent": "rescale 1/255 then normalize mean=127/255, std=128/255 differs by "
            "float rounding only (per-photo max_abs_logit_diff_processor_style_127_128)",
            "why": "The package only documents the inherited efficientnet_pytorch example (transforms.Resize(224) "
            "without crop, ImageNet mean/std). Its Lite weights are direct conversions of the TF EfficientNet-Lite "
            "checkpoints (tf_to_pytorch/load_tf_weights.py), which were trained and evaluated with TF's edge "
            "preprocessing MEAN_RGB=127, STDDEV_RGB=128 (0..255 scale; efficientnet_lite_builder.py) and a "
            "bicubic center crop of 224/(224+32) of the short side. That normalisation is used here; with it the "
            "predictions are sharper (coffee: espresso 0.95 vs 0.78 with ImageNet mean/std; see "
            "top1_*_with_imagenet_mean_std per photo).",
            "imagenet_mean_std_alternative": {"mean": ALT_IMAGENET_MEAN, "std": ALT_IMAGENET_STD},
        },
        "reference_call": "EfficientNet.from_pretrained('efficientnet-lite0', weights_path=asset).eval()(x) "
        "-> logits F32 [1,1000]; probs = torch.softmax(logits, dim=1) (F32)",
        "dynamic_padding_build_equal": "EfficientNet.from_pretrained(..., image_size=None) (Conv2dDynamicSamePadding) "
        "gives bit-identical logits at 224 (asserted)",
        "photos": results,
        "skipped": skipped,
        "numpy_f64_writeup": checks,
        "class_names": "crates/mosaic-models/assets/imagenet_classes.txt",
    }
    save_tensors(os.path.join(out, "efficientnet_lite0.safetensors"), tensors)
    write_json(os.path.join(out, "efficientnet_lite0.json"), meta)
    return results


def write_classes():
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    names = list(_IMAGENET_CATEGORIES)
    assert len(names) == 1000 and len(set(names)) == 1000
    assert all(n and n == n.strip() and "\n" not in n for n in names)
    os.makedirs(os.path.dirname(CLASSES_TXT), exist_ok=True)
    with open(CLASSES_TXT, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(names) + "\n")
    return names


# ---------------------------------------------------------------------------
# Tiny random CLIP / ViT
# ---------------------------------------------------------------------------


def randomize(model):
    """Overwrite every parameter with seeded values of a useful scale (as bert_tiny).

    LayerNorm weights 1 + 0.1 randn, biases 0.1 randn, embeddings / class token /
    position tables 0.5 randn, logit_scale 2.3 + 0.1 randn, patch conv weights
    0.05 randn, every other weight (Linear) 0.2 randn. Visited in sorted in-memory parameter name order.
    """
    g = torch.Generator().manual_seed(PARAM_SEED)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            leaf = name.split(".")[-2] if "." in name else name
            if name.endswith(".weight") and ("norm" in leaf or "layrnorm" in leaf):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name == "logit_scale":
                p.copy_(2.3 + 0.1 * torch.randn(p.shape, generator=g))
            elif "patch_embedding" in name:  # conv [D, 3, 8, 8], fan-in 192
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif "embedding" in name or "cls_token" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def tiny_inputs():
    rng = np.random.default_rng(TINY_SEED)
    pixel_values = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    ids = rng.integers(1, 98, size=(2, 8), dtype=np.int64)
    mask = np.ones((2, 8), dtype=np.int64)
    for r, (e, pad) in enumerate(zip(EOS_POS, PAD_IDS)):
        ids[r, 0] = CLIP_TEXT["bos_token_id"]
        ids[r, e] = CLIP_TEXT["eos_token_id"]
        ids[r, e + 1 :] = pad
        mask[r, e + 1 :] = 0
    return pixel_values, ids, mask


def np_ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def np_lin(x, W, p, bias=True):
    y = x @ W[p + ".weight"].T
    return y + W[p + ".bias"] if bias else y


def np_attention(x, W, q, k, v, o, heads, keep):
    """keep: bool [B or 1, 1, L, L] (True = attend) or None."""
    B, L, D = x.shape
    d = D // heads

    def split(t):
        return t.reshape(B, L, heads, d).transpose(0, 2, 1, 3)

    Q, K, V = split(np_lin(x, W, q)), split(np_lin(x, W, k)), split(np_lin(x, W, v))
    s = Q @ K.transpose(0, 1, 3, 2) * d**-0.5
    if keep is not None:
        s = np.where(keep, s, -np.inf)
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    a = (e / e.sum(-1, keepdims=True)) @ V
    return np_lin(a.transpose(0, 2, 1, 3).reshape(B, L, D), W, o)


def quick_gelu(x):
    return x / (1.0 + np.exp(-1.702 * x))


def np_patches(pix, w, b, p):
    """Conv2d(kernel = stride = p) as a matmul: [B, N, D], patches row-major (y, x)."""
    B, C, H, Wd = pix.shape
    gh, gw = H // p, Wd // p
    t = pix.reshape(B, C, gh, p, gw, p).transpose(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * p * p)
    y = t @ w.reshape(w.shape[0], -1).T
    return y + b if b is not None else y


def np_clip_layers(x, W, prefix, n, heads, eps, keep):
    for i in range(n):
        p = f"{prefix}.encoder.layers.{i}."
        h = np_ln(x, W[p + "layer_norm1.weight"], W[p + "layer_norm1.bias"], eps)
        a = p + "self_attn."
        x = x + np_attention(h, W, a + "q_proj", a + "k_proj", a + "v_proj", a + "out_proj", heads, keep)
        h = np_ln(x, W[p + "layer_norm2.weight"], W[p + "layer_norm2.bias"], eps)
        x = x + np_lin(quick_gelu(np_lin(h, W, p + "mlp.fc1")), W, p + "mlp.fc2")
    return x


def np_clip(W, cfg, pix, ids, mask):
    tc, vc = cfg["text_config"], cfg["vision_config"]
    W = {k: v.astype(np.float64) for k, v in W.items()}
    # vision
    x = np_patches(pix.astype(np.float64), W["vision_model.embeddings.patch_embedding.weight"], None, vc["patch_size"])
    cls = np.broadcast_to(W["vision_model.embeddings.class_embedding"], (x.shape[0], 1, x.shape[2]))
    x = np.concatenate([cls, x], 1) + W["vision_model.embeddings.position_embedding.weight"][None]
    x = np_ln(x, W["vision_model.pre_layrnorm.weight"], W["vision_model.pre_layrnorm.bias"], vc["layer_norm_eps"])
    v_lhs = np_clip_layers(x, W, "vision_model", vc["num_hidden_layers"], vc["num_attention_heads"], vc["layer_norm_eps"], None)
    v_pool = np_ln(v_lhs[:, 0], W["vision_model.post_layernorm.weight"], W["vision_model.post_layernorm.bias"], vc["layer_norm_eps"])
    # text
    B, L = ids.shape
    x = W["text_model.embeddings.token_embedding.weight"][ids] + W["text_model.embeddings.position_embedding.weight"][:L][None]
    causal = np.tril(np.ones((L, L), bool))
    keep = causal[None, None] & mask.astype(bool)[:, None, None, :]
    t = np_clip_layers(x, W, "text_model", tc["num_hidden_layers"], tc["num_attention_heads"], tc["layer_norm_eps"], keep)
    t_lhs = np_ln(t, W["text_model.final_layer_norm.weight"], W["text_model.final_layer_norm.bias"], tc["layer_norm_eps"])
    eos_pos = (ids == tc["eos_token_id"]).argmax(-1)  # first occurrence
    t_pool = t_lhs[np.arange(B), eos_pos]
    img_f = v_pool @ W["visual_projection.weight"].T
    txt_f = t_pool @ W["text_projection.weight"].T
    img_e = img_f / np.sqrt((img_f**2).sum(-1, keepdims=True))
    txt_e = txt_f / np.sqrt((txt_f**2).sum(-1, keepdims=True))
    lpt = txt_e @ img_e.T * np.exp(W["logit_scale"])
    return {
        "clip/vision/last_hidden_state": v_lhs,
        "clip/vision/pooler_output": v_pool,
        "clip/text/last_hidden_state": t_lhs,
        "clip/text/pooler_output": t_pool,
        "clip/image_features": img_f,
        "clip/text_features": txt_f,
        "clip/image_embeds": img_e,
        "clip/text_embeds": txt_e,
        "clip/logits_per_text": lpt,
        "clip/logits_per_image": lpt.T,
    }


def np_vit(W, cfg, pix):
    from scipy.special import erf

    W = {k: v.astype(np.float64) for k, v in W.items()}
    eps = cfg["layer_norm_eps"]
    x = np_patches(
        pix.astype(np.float64),
        W["embeddings.patch_embeddings.projection.weight"],
        W["embeddings.patch_embeddings.projection.bias"],
        cfg["patch_size"],
    )
    cls = np.broadcast_to(W["embeddings.cls_token"], (x.shape[0], 1, x.shape[2]))
    x = np.concatenate([cls, x], 1) + W["embeddings.position_embeddings"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        h = np_ln(x, W[p + "layernorm_before.weight"], W[p + "layernorm_before.bias"], eps)
        a = p + "attention."
        x = x + np_attention(
            h, W, a + "attention.query", a + "attention.key", a + "attention.value", a + "output.dense",
            cfg["num_attention_heads"], None,
        )
        h = np_ln(x, W[p + "layernorm_after.weight"], W[p + "layernorm_after.bias"], eps)
        h = np_lin(h, W, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = x + np_lin(h, W, p + "output.dense")
    lhs = np_ln(x, W["layernorm.weight"], W["layernorm.bias"], eps)
    pool = np.tanh(np_lin(lhs[:, 0], W, "pooler.dense"))
    return {"vit/last_hidden_state": lhs, "vit/pooler_output": pool}


def save_model(model, d):
    if os.path.isdir(d):
        shutil.rmtree(d)
    model.save_pretrained(d, safe_serialization=True)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)


def make_tiny(out):
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

    pix, ids, mask = tiny_inputs()
    t_pix, t_ids, t_mask = torch.from_numpy(pix), torch.from_numpy(ids), torch.from_numpy(mask)
    tensors = {"pixel_values": pix, "input_ids": ids, "attention_mask": mask}
    meta = {
        "generator": "scripts/reference/make_vision_model_fixtures.py",
        "versions": all_versions(),
        "inputs": {
            "seed": TINY_SEED,
            "pixel_values": "rng = np.random.default_rng(seed); rng.standard_normal((2, 3, 32, 32)).astype(np.float32)",
            "input_ids": "then rng.integers(1, 98, size=(2, 8), dtype=np.int64); per row: [0] = bos 98, "
            "[eos_pos] = eos 99, after it pad id (row 0: 99 like the openai tokenizer, row 1: 0), mask 0 there",
            "eos_positions": EOS_POS,
            "pad_ids": PAD_IDS,
        },
        "param_init": {"torch_manual_seed": 0, "randomize_seed": PARAM_SEED, "rule": randomize.__doc__.strip()},
        "models": {},
    }

    # ---- CLIP
    torch.manual_seed(0)
    ccfg = CLIPConfig(text_config=dict(CLIP_TEXT), vision_config=dict(CLIP_VISION), projection_dim=CLIP_PROJ)
    clip = CLIPModel(ccfg)
    randomize(clip)
    cdir = os.path.join(out, "clip_tiny")
    save_model(clip, cdir)
    clip, info = CLIPModel.from_pretrained(cdir, output_loading_info=True)
    clip.eval()
    clip_attn = clip.config._attn_implementation
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    with torch.no_grad():
        o = clip(input_ids=t_ids, pixel_values=t_pix, attention_mask=t_mask)
        vo = clip.vision_model(pixel_values=t_pix)
        to = clip.text_model(input_ids=t_ids, attention_mask=t_mask)
        to_nomask = clip.text_model(input_ids=t_ids)
        img_f = clip.get_image_features(pixel_values=t_pix).pooler_output
        txt_f = clip.get_text_features(input_ids=t_ids, attention_mask=t_mask).pooler_output
    clip_out = {
        "clip/text_embeds": o.text_embeds,
        "clip/image_embeds": o.image_embeds,
        "clip/logits_per_image": o.logits_per_image,
        "clip/logits_per_text": o.logits_per_text,
        "clip/text/last_hidden_state": to.last_hidden_state,
        "clip/text/pooler_output": to.pooler_output,
        "clip/vision/last_hidden_state": vo.last_hidden_state,
        "clip/vision/pooler_output": vo.pooler_output,
        "clip/image_features": img_f,
        "clip/text_features": txt_f,
    }
    clip_out = {k: v.numpy() for k, v in clip_out.items()}
    assert torch.equal(o.text_model_output.last_hidden_state, to.last_hidden_state)
    assert torch.equal(o.vision_model_output.last_hidden_state, vo.last_hidden_state)
    # inside CLIPModel.forward the sub-outputs' pooler_output is already projected
    assert torch.equal(o.vision_model_output.pooler_output, img_f)
    cw = load_file(os.path.join(cdir, "model.safetensors"))
    ccfg_json = json.load(open(os.path.join(cdir, "config.json")))
    ref = np_clip(cw, ccfg_json, pix, ids, mask)
    d_np = {k: maxdiff(ref[k], clip_out[k]) for k in clip_out}
    assert max(d_np.values()) < 2e-5, d_np
    clip.set_attn_implementation("eager")
    with torch.no_grad():
        oe = clip(input_ids=t_ids, pixel_values=t_pix, attention_mask=t_mask)
    clip.set_attn_implementation("sdpa")
    valid = mask.astype(bool)
    legacy_pos = ids.astype(np.int32).argmax(-1)
    first_eos = (ids == CLIP_TEXT["eos_token_id"]).argmax(-1)
    assert list(first_eos) == EOS_POS and list(legacy_pos) == EOS_POS
    tensors.update(clip_out)
    meta["models"]["clip"] = {
        "dir": "clip_tiny",
        "class": "CLIPModel",
        "config_call": {"text_config": CLIP_TEXT, "vision_config": CLIP_VISION, "projection_dim": CLIP_PROJ},
        "files": {f: sha256_file(os.path.join(cdir, f)) for f in sorted(os.listdir(cdir))},
        "weight_keys": sorted(cw),
        "attn_implementation_default": clip_attn,
        "logit_scale": float(cw["logit_scale"]),
        "logit_scale_exp": float(np.exp(np.float64(cw["logit_scale"]))),
        "pooled_token_rule": "eos_token_id != 2: first position where input_ids == eos_token_id; "
        "eos_token_id == 2 (legacy configs such as openai/clip-vit-*): argmax(input_ids) (first maximum)",
        "pooled_positions": [int(p) for p in first_eos],
        "legacy_argmax_positions_same_here": True,
        "max_abs_diff_numpy_f64_writeup": d_np,
        "max_abs_diff_eager_vs_sdpa": {
            "logits_per_image": maxdiff(oe.logits_per_image, o.logits_per_image),
            "text_last_hidden_state": maxdiff(oe.text_model_output.last_hidden_state, to.last_hidden_state),
        },
        "text_attention_mask_effect": {
            "valid_positions_max_abs_diff_without_mask": maxdiff(
                to_nomask.last_hidden_state.numpy()[valid], to.last_hidden_state.numpy()[valid]
            ),
            "pooler_output_max_abs_diff_without_mask": maxdiff(to_nomask.pooler_output, to.pooler_output),
            "pad_positions_max_abs_diff_without_mask": maxdiff(
                to_nomask.last_hidden_state.numpy()[~valid], to.last_hidden_state.numpy()[~valid]
            ),
        },
    }

    # ---- ViT
    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(**VIT), add_pooling_layer=True)
    randomize(vit)
    in_memory_keys = sorted(vit.state_dict())
    vdir = os.path.join(out, "vit_tiny")
    save_model(vit, vdir)
    vit, info = ViTModel.from_pretrained(vdir, output_loading_info=True)
    vit.eval()
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    with torch.no_grad():
        ov = vit(pixel_values=t_pix)
    vit_out = {"vit/last_hidden_state": ov.last_hidden_state.numpy(), "vit/pooler_output": ov.pooler_output.numpy()}
    vit_attn = vit.config._attn_implementation
    vw = load_file(os.path.join(vdir, "model.safetensors"))
    vcfg_json = json.load(open(os.path.join(vdir, "config.json")))
    ref = np_vit(vw, vcfg_json, pix)
    dv = {k: maxdiff(ref[k], vit_out[k]) for k in vit_out}
    assert max(dv.values()) < 2e-5, dv
    vit.set_attn_implementation("eager")
    with torch.no_grad():
        ove = vit(pixel_values=t_pix)
    tensors.update(vit_out)
    meta["models"]["vit"] = {
        "dir": "vit_tiny",
        "class": "ViTModel(config, add_pooling_layer=True)",
        "config_call": VIT,
        "files": {f: sha256_file(os.path.join(vdir, f)) for f in sorted(os.listdir(vdir))},
        "weight_keys_on_disk": sorted(vw),
        "weight_keys_in_memory_transformers_5": in_memory_keys,
        "note": "save_pretrained writes the legacy (transformers 4 / hub) names; from_pretrained renames them "
        "(encoder.layer.N. -> layers.N., attention.attention.{query,key,value} -> attention.{q,k,v}_proj, "
        "attention.output.dense -> attention.o_proj, intermediate.dense -> mlp.fc1, output.dense -> mlp.fc2)",
        "attn_implementation_default": vit_attn,
        "max_abs_diff_numpy_f64_writeup": dv,
        "max_abs_diff_eager_vs_sdpa_last_hidden_state": maxdiff(ove.last_hidden_state, ov.last_hidden_state),
    }
    for k, v in tensors.items():
        assert v.dtype in (np.float32, np.int64), (k, v.dtype)
    save_tensors(os.path.join(out, "tiny_io.safetensors"), tensors)
    write_json(os.path.join(out, "tiny_io.json"), meta)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else MODELS_FIXTURES
    out = out_dir("vision", [sys.argv[0], root])
    names = write_classes()
    results = make_efficientnet(out)
    make_tiny(out)
    for r in results:
        print(f"  {r['stem']:<24} top1 {r['top5'][0]:>4} {names[r['top5'][0]]:<28} p={r['top5_probs'][0]:.3f}")
    total = 0
    for dp, _, fs in sorted(os.walk(out)):
        for f in sorted(fs):
            p = os.path.join(dp, f)
            total += os.path.getsize(p)
            print(f"{os.path.getsize(p):>9}  {os.path.relpath(p, root)}")
    print(f"{total:>9}  total (+ {os.path.getsize(CLASSES_TXT)} {os.path.relpath(CLASSES_TXT, REPO_ROOT)})")


if __name__ == "__main__":
    main()
