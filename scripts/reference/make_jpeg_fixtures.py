"""JPEG decoding fixtures: Pillow's (libjpeg-turbo's) decoded pixels.

Writes crates/mosaic-data/tests/fixtures/image/jpeg_pillow.{json,safetensors}
and small JPEG files under fixtures/image/jpeg/:

* the three real JPEG photographs of the `skimage-photos` asset (rocket:
  4:4:4, hubble_deep_field: 4:4:4, retina: 4:2:0), decoded whole: the
  sha256 of Pillow's RGB bytes, per-channel sums and a 64x64 crop;
* crops of real photographs (astronaut, chelsea, coffee) saved by Pillow
  as JPEG in every layout a decoder treats differently: 4:4:4, 4:2:2
  (h2v1 upsampling), 4:2:0 (h2v2), progressive, grayscale, restart
  intervals, odd sizes (partial MCUs) — with Pillow's decoded pixels.

Needs only Pillow 13.0.0, numpy and safetensors (requirements-data.txt pins).
Usage: python scripts/reference/make_jpeg_fixtures.py [FIXTURES_ROOT]
"""

import io
import json
import os

import numpy as np
import PIL
from PIL import Image, features

from fixture_common import asset, out_dir, rel, save_tensors, sha256_bytes, sha256_file

REAL = ["rocket.jpg", "hubble_deep_field.jpg", "retina.jpg"]

# (name, source photo, crop box, save options)
MADE = [
    ("astronaut_444", "astronaut.png", (101, 37, 222, 120), {"quality": 90, "subsampling": 0}),
    ("astronaut_422", "astronaut.png", (101, 37, 222, 120), {"quality": 90, "subsampling": 1}),
    ("astronaut_420", "astronaut.png", (101, 37, 222, 120), {"quality": 90, "subsampling": 2}),
    ("chelsea_420_q75", "chelsea.png", (50, 20, 177, 115), {"quality": 75, "subsampling": 2}),
    ("chelsea_progressive", "chelsea.png", (50, 20, 177, 115), {"quality": 85, "progressive": True}),
    ("coffee_gray", "coffee.png", (200, 100, 333, 181), {"quality": 88, "gray": True}),
    ("coffee_restart", "coffee.png", (200, 100, 333, 181), {"quality": 80, "restart_marker_blocks": 4}),
]


def decoded(path):
    img = Image.open(path)
    img.load()
    rgb = np.asarray(img.convert("RGB"))
    return img, rgb


def entry(path, img, rgb):
    return {
        "file": path,
        "mode": img.mode,
        "size_wh": list(img.size),
        "layers": [list(l) for l in getattr(img, "layer", [])],
        "progressive": bool(img.info.get("progressive", 0)),
        "rgb_sha256": sha256_bytes(rgb.tobytes()),
        "rgb_channel_sums": [int(rgb[..., c].astype(np.int64).sum()) for c in range(3)],
    }


def main():
    d = out_dir("image")
    jd = os.path.join(d, "jpeg")
    os.makedirs(jd, exist_ok=True)
    tensors = {}
    meta = {
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "real": [],
        "made": [],
    }
    for f in REAL:
        p = asset("skimage-photos", f)
        img, rgb = decoded(p)
        e = entry(rel(p), img, rgb)
        e["sha256"] = sha256_file(p)
        meta["real"].append(e)
        tensors["real/" + os.path.splitext(f)[0]] = np.ascontiguousarray(rgb[:64, :64])
    for name, src, box, opts in MADE:
        img = Image.open(asset("skimage-photos", src)).convert("RGB").crop(box)
        opts = dict(opts)
        if opts.pop("gray", False):
            img = img.convert("L")
        restart = opts.pop("restart_marker_blocks", None)
        if restart:
            opts["restart_marker_blocks"] = restart
        buf = io.BytesIO()
        img.save(buf, "JPEG", **opts)
        out = os.path.join(jd, name + ".jpg")
        with open(out, "wb") as fh:
            fh.write(buf.getvalue())
        dimg, rgb = decoded(out)
        e = entry("jpeg/" + name + ".jpg", dimg, rgb)
        e["source"] = src
        e["crop"] = list(box)
        e["options"] = {k: v for k, v in opts.items()}
        meta["made"].append(e)
        tensors["made/" + name] = np.ascontiguousarray(rgb)
    save_tensors(os.path.join(d, "jpeg_pillow.safetensors"), tensors)
    with open(os.path.join(d, "jpeg_pillow.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")
    print(f"wrote {len(meta['real'])} real and {len(meta['made'])} made JPEG fixtures to {d}")


if __name__ == "__main__":
    main()
