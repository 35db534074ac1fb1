#!/usr/bin/env python3
"""Image-preprocessing parity fixtures for mosaic-data (fixtures/image/).

    MOSAIC_HOME=... .venv-ref/bin/python scripts/reference/make_image_fixtures.py [FIXTURES_ROOT]

Reference: the PIL ("slow") image processors of transformers 5.x
(CLIPImageProcessorPil, SiglipImageProcessorPil, ViTImageProcessorPil), each
created with the library's own defaults, saved with save_pretrained() and
reloaded from that file, then called as `proc(img, return_tensors="np")` on
`PIL.Image.open(path)` (first frame, no EXIF transpose, no conversion).

Besides the transformers outputs, this script re-derives every output with an
independent numpy re-implementation of the pipeline (convert_to_rgb ->
Pillow's fixed-point two-pass resample -> center crop -> rescale -> normalize)
and asserts bit equality, so the algorithm written up in README.md is checked
on every run. It also records how far the torchvision backend
(CLIPImageProcessor etc., the AutoImageProcessor default) is from the PIL one.

Files (see README.md in the fixtures dir for layouts):
  image/<proc>/preprocessor_config.json   for clip, siglip, vit, clip_small, siglip_small
  image/images.json                      per-image metadata and per-processor results
  image/clip_small.safetensors           full pixel_values [3,32,32] f32, key = file stem
  image/clip_small_u8.safetensors        same pipeline without rescale/normalize, u8 [3,32,32]
  image/siglip_small.safetensors         full pixel_values [3,36,36] f32
  image/samples_224.safetensors          "indices" i64 [4096] + "<proc>/<stem>" f32 [4096]
  image/jpeg_decode.safetensors          "<stem>" u8 [64,64,3]: top-left of PIL's RGB decode
  image/exif_orient<N>.png               12x8 PNGs with EXIF orientation N (1..8)
  image/exif_expected.safetensors        "orient<N>/raw" and "orient<N>/transposed" u8 [H,W,3]
"""

import json
import math
import os
import sys
import warnings

import numpy as np
from PIL import Image, ImageOps, features

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import (  # noqa: E402
    asset,
    assets_root,
    out_dir,
    rel,
    save_tensors,
    sha256_bytes,
    sha256_file,
    versions,
    write_json,
)

warnings.filterwarnings("ignore")

import transformers  # noqa: E402
from transformers import (  # noqa: E402
    CLIPImageProcessorPil,
    SiglipImageProcessorPil,
    ViTImageProcessorPil,
)

SEED = 20240601
N_SAMPLES = 4096
IMAGE_EXTS = (".png", ".jpg", ".gif", ".tif")


# ---------------------------------------------------------------------------
# Independent re-implementation (checks the write-up in README.md)
# ---------------------------------------------------------------------------

PRECISION_BITS = 22  # Pillow Resample.c: 32 - 8 - 2


def _bicubic(x, a=-0.5):
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _bilinear(x):
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


_FILTERS = {2: (_bilinear, 1.0), 3: (_bicubic, 2.0)}


def pil_coeff_matrix(in_size, out_size, resample):
    """[out, in] int64 fixed-point weights exactly as Pillow's precompute_coeffs
    + normalize_coeffs_8bpc compute them."""
    filt, base_support = _FILTERS[resample]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = base_support * filterscale
    inv = 1.0 / filterscale
    m = np.zeros((out_size, in_size), np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # C (int) truncates toward 0
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = [filt((x + xmin - center + 0.5) * inv) for x in range(xmax)]
        ww = sum(w)
        if ww != 0.0:
            w = [v / ww for v in w]
        for i, v in enumerate(w):
            m[xx, xmin + i] = int(-0.5 + v * (1 << PRECISION_BITS)) if v < 0 else int(0.5 + v * (1 << PRECISION_BITS))
    return m


def _pass(a_hwc, m, axis):
    acc = np.tensordot(a_hwc.astype(np.int64), m, axes=([axis], [1]))  # moves axis to the end
    acc = np.moveaxis(acc, -1, axis) + (1 << (PRECISION_BITS - 1))
    return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)


def pil_resize_ref(a_hwc, out_w, out_h, resample):
    h, w = a_hwc.shape[:2]
    if (w, h) == (out_w, out_h):
        return a_hwc.copy()
    # Pillow >= 12.3: vertical pass first iff height shrinks by more than twice
    # the width's shrink (in pixels); otherwise horizontal first.
    horizontal_first = not ((h - out_h) > 0 and (h - out_h) > (w - out_w) * 2)
    out = a_hwc
    steps = [("h", out_w != w), ("v", out_h != h)]
    if not horizontal_first:
        steps.reverse()
    for kind, needed in steps:
        if not needed:
            continue
        if kind == "h":
            out = _pass(out, pil_coeff_matrix(w, out_w, resample), 1)
        else:
            out = _pass(out, pil_coeff_matrix(h, out_h, resample), 0)
    return out


def convert_rgb_ref(img):
    """transformers.image_transforms.convert_to_rgb for a PIL image."""
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = np.array(img.convert("RGBA")).astype(np.uint32)
        src_a = rgba[..., 3:4]
        coef1 = src_a * 255 * 255 * 128 // (255 * 255)  # dst is opaque white
        coef2 = 255 * 128 - coef1
        tmp = rgba[..., :3] * coef1 + 255 * coef2 + (0x80 << 7)
        out = ((((tmp >> 8) + tmp) >> 8) >> 7).astype(np.uint8)
        out[src_a[..., 0] == 0] = 255
        return out
    return np.array(img.convert("RGB"))


def shortest_edge_size(h, w, size):
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def center_crop_ref(chw, ch, cw):
    _, h, w = chw.shape
    top, left = (h - ch) // 2, (w - cw) // 2
    if top >= 0 and left >= 0 and top + ch <= h and left + cw <= w:
        return chw[:, top : top + ch, left : left + cw]
    nh, nw = max(ch, h), max(cw, w)
    canvas = np.zeros((chw.shape[0], nh, nw), chw.dtype)
    tp, lp = math.ceil((nh - h) / 2), math.ceil((nw - w) / 2)
    canvas[:, tp : tp + h, lp : lp + w] = chw
    top, left = top + tp, left + lp
    return canvas[:, max(0, top) : min(nh, top + ch), max(0, left) : min(nw, left + cw)]


def pipeline_ref(img, cfg, normalize=True):
    a = convert_rgb_ref(img) if cfg.get("do_convert_rgb") else np.array(img)
    assert a.ndim == 3 and a.shape[2] == 3, "reference pipeline only handles RGB here"
    h, w = a.shape[:2]
    size = cfg["size"]
    if "shortest_edge" in size:
        oh, ow = shortest_edge_size(h, w, size["shortest_edge"])
    else:
        oh, ow = size["height"], size["width"]
    a = pil_resize_ref(a, ow, oh, cfg["resample"])
    chw = np.moveaxis(a, -1, 0)
    if cfg.get("do_center_crop"):
        chw = center_crop_ref(chw, cfg["crop_size"]["height"], cfg["crop_size"]["width"])
    if not normalize:
        return chw
    x = (chw.astype(np.float64) * cfg["rescale_factor"]).astype(np.float32)
    mean = np.array(cfg["image_mean"], np.float32)[:, None, None]
    std = np.array(cfg["image_std"], np.float32)[:, None, None]
    return (x - mean) / std


# ---------------------------------------------------------------------------


def make_processors(d):
    specs = {
        "clip": (CLIPImageProcessorPil, {}),
        "siglip": (SiglipImageProcessorPil, {}),
        "vit": (ViTImageProcessorPil, {}),
        "clip_small": (
            CLIPImageProcessorPil,
            {"size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32}},
        ),
        "siglip_small": (SiglipImageProcessorPil, {"size": {"height": 36, "width": 36}}),
    }
    procs, cfgs = {}, {}
    for name, (cls, kw) in specs.items():
        pdir = os.path.join(d, name)
        os.makedirs(pdir, exist_ok=True)
        cls(**kw).save_pretrained(pdir)
        with open(os.path.join(pdir, "preprocessor_config.json")) as f:
            cfgs[name] = json.load(f)
        procs[name] = cls.from_pretrained(pdir)  # round trip through the file
    return procs, cfgs


def torchvision_procs(cfgs):
    try:
        from transformers import CLIPImageProcessor, SiglipImageProcessor, ViTImageProcessor
        from transformers.image_processing_backends import TorchvisionBackend

        out = {}
        for name, cls in [("clip", CLIPImageProcessor), ("siglip", SiglipImageProcessor), ("vit", ViTImageProcessor)]:
            if not issubclass(cls, TorchvisionBackend):
                return {}
            out[name] = cls(**{k: v for k, v in cfgs[name].items() if k != "image_processor_type"})
        return out
    except Exception:
        return {}


def exif_fixtures(d):
    """12x8 PNGs with EXIF orientation 1..8 and the pixels after exif_transpose."""
    w, h = 12, 8
    base = np.zeros((h, w, 3), np.uint8)
    for y in range(h):
        for x in range(w):
            base[y, x] = (20 * x + 10, 30 * y + 5, (x * 7 + y * 13) % 256)
    base[0, 0] = (255, 0, 0)  # marks the top-left corner
    tensors, meta = {}, {}
    for orient in range(1, 9):
        img = Image.fromarray(base, "RGB")
        exif = Image.Exif()
        exif[0x0112] = orient
        path = os.path.join(d, f"exif_orient{orient}.png")
        img.save(path, exif=exif.tobytes(), optimize=False)
        back = Image.open(path)
        assert back.getexif().get(0x0112) == orient
        raw = np.array(back.convert("RGB"))
        tr = ImageOps.exif_transpose(back)
        tr_a = np.array(tr.convert("RGB"))
        tensors[f"orient{orient}/raw"] = raw
        tensors[f"orient{orient}/transposed"] = tr_a
        meta[f"exif_orient{orient}.png"] = {
            "orientation": orient,
            "raw_size_wh": [raw.shape[1], raw.shape[0]],
            "transposed_size_wh": [tr_a.shape[1], tr_a.shape[0]],
            "transposed_has_orientation_tag": tr.getexif().get(0x0112),
        }
    save_tensors(os.path.join(d, "exif_expected.safetensors"), tensors)
    return meta


def main():
    d = out_dir("image")
    photo_dir = asset("skimage-photos")
    procs, cfgs = make_processors(d)
    tv = torchvision_procs(cfgs)

    rng = np.random.default_rng(SEED)
    n224 = 3 * 224 * 224
    indices = np.sort(rng.choice(n224, size=N_SAMPLES, replace=False)).astype(np.int64)
    samples = {"indices": indices}
    small = {"clip_small": {}, "siglip_small": {}}
    clip_small_u8 = {}
    jpeg = {}
    images = []
    skipped = []

    for fname in sorted(os.listdir(photo_dir)):
        if not fname.lower().endswith(IMAGE_EXTS):
            continue
        path = os.path.join(photo_dir, fname)
        stem = os.path.splitext(fname)[0]
        try:
            img = Image.open(path)
            img.load()
        except Exception as e:  # e.g. multipage_rgb.tif (planar RGB TIFF)
            skipped.append({"file": rel(path), "error": f"{type(e).__name__}: {e}"})
            continue
        exif = img.getexif()
        entry = {
            "file": rel(path),
            "stem": stem,
            "sha256": sha256_file(path),
            "format": img.format,
            "mode": img.mode,
            "size_wh": list(img.size),
            "n_frames": getattr(img, "n_frames", 1),
            "bands": list(img.getbands()),
            "has_transparency_info": img.info.get("transparency") is not None,
            "exif_orientation": exif.get(0x0112),
            "processors": {},
        }
        for name, proc in procs.items():
            cfg = cfgs[name]
            res = {}
            call_img = img
            try:
                out = proc(call_img, return_tensors="np")["pixel_values"][0]
            except Exception as e:
                # ViT has no do_convert_rgb: 1- and 4-channel inputs fail in normalize.
                res["error_on_raw_input"] = f"{type(e).__name__}: {e}"
                res["input"] = 'PIL.Image.open(path).convert("RGB")'
                call_img = img.convert("RGB")
                out = proc(call_img, return_tensors="np")["pixel_values"][0]
            else:
                res["input"] = "PIL.Image.open(path)"
            assert out.dtype == np.float32, out.dtype
            ref = pipeline_ref(call_img, cfg)
            assert ref.shape == out.shape and np.array_equal(ref, out), (fname, name, np.abs(ref - out).max())
            res["shape"] = list(out.shape)
            res["channel_sum_f64"] = [float(s) for s in out.astype(np.float64).sum(axis=(1, 2))]
            res["sum_f64"] = float(out.astype(np.float64).sum())
            res["min"] = float(out.min())
            res["max"] = float(out.max())
            if name in ("clip", "siglip", "vit"):
                assert out.size == n224
                samples[f"{name}/{stem}"] = out.reshape(-1)[indices].astype(np.float32)
                if name in tv:
                    tvo = tv[name](call_img, return_tensors="np")["pixel_values"][0]
                    res["torchvision_backend_max_abs_diff"] = float(np.abs(tvo.astype(np.float64) - out).max())
                    res["torchvision_backend_mean_abs_diff"] = float(np.abs(tvo.astype(np.float64) - out).mean())
            else:
                small[name][stem] = out.astype(np.float32)
            if name == "clip_small":
                u8 = proc(call_img, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"][0]
                assert u8.dtype == np.uint8 and np.array_equal(u8, pipeline_ref(call_img, cfg, normalize=False))
                clip_small_u8[stem] = u8
            entry["processors"][name] = res
        if img.format == "JPEG":
            rgb = np.array(img.convert("RGB"))
            jpeg[stem] = np.ascontiguousarray(rgb[:64, :64])
            entry["jpeg"] = {
                "decoded_rgb_sha256": sha256_bytes(np.ascontiguousarray(rgb).tobytes()),
                "decoded_shape_hwc": list(rgb.shape),
                "decoded_sum": int(rgb.astype(np.int64).sum()),
                "subsampling": [list(l) for l in getattr(img, "layer", [])],
                "progressive": bool(img.info.get("progressive") or img.info.get("progression")),
            }
        images.append(entry)

    save_tensors(os.path.join(d, "clip_small.safetensors"), small["clip_small"])
    save_tensors(os.path.join(d, "clip_small_u8.safetensors"), clip_small_u8)
    save_tensors(os.path.join(d, "siglip_small.safetensors"), small["siglip_small"])
    save_tensors(os.path.join(d, "samples_224.safetensors"), samples)
    save_tensors(os.path.join(d, "jpeg_decode.safetensors"), jpeg)
    exif_meta = exif_fixtures(d)

    write_json(
        os.path.join(d, "images.json"),
        {
            "generator": "scripts/reference/make_image_fixtures.py",
            "versions": versions(),
            "pillow_libjpeg_turbo": features.version("libjpeg_turbo"),
            "assets_root": "$MOSAIC_HOME/assets",
            "sample_indices": {
                "file": "samples_224.safetensors",
                "key": "indices",
                "count": N_SAMPLES,
                "seed": SEED,
                "recipe": "np.sort(np.random.default_rng(seed).choice(3*224*224, 4096, replace=False))",
                "layout": "flat index into the C-contiguous [3,224,224] pixel_values",
            },
            "processors": {name: cfg for name, cfg in cfgs.items()},
            "images": images,
            "skipped": skipped,
            "exif": exif_meta,
        },
    )
    print(f"image fixtures: {len(images)} images, {len(skipped)} skipped -> {d}")


if __name__ == "__main__":
    main()
