#!/usr/bin/env python3
"""OCR parity fixtures for mosaic-ocr (crates/mosaic-ocr/tests/fixtures/).

    MOSAIC_HOME=... .venv-ref/bin/python scripts/reference/make_ocr_fixtures.py [FIXTURES_DIR]

Renders small test images with PIL (DejaVu fonts when the machine has them,
else PIL's built-in scalable font), runs rapidocr-onnxruntime 1.4.4 with its
default config on them (the PP-OCRv4 det/rec models and the mobile v2.0 angle
classifier it ships, read here from $MOSAIC_HOME/assets/pp-ocrv4/, which holds
the same files) and writes:

  ocr_*.png            the rendered images (8-bit RGB)
  ocr_reference.json   per image: rapidocr's lines (box, text, score) and the
                       intermediate steps (detector input size, probability-map
                       statistics, detected boxes in detector coordinates, crop
                       sizes, classifier labels, every recognised line before the
                       text_score filter); versions and the config used
  cv_ops.json          OpenCV / pyclipper building blocks on small synthetic
                       inputs, for bit-exact unit tests of mosaic-ocr's ports:
                       cv2.resize (bilinear), the perspective crop
                       (getPerspectiveTransform + warpPerspective, cubic,
                       replicated border), findContours (RETR_LIST,
                       CHAIN_APPROX_SIMPLE), minAreaRect + boxPoints,
                       pyclipper's round-join offset and DBPostProcess's
                       box_score_fast, on seeded random data.

Reruns write identical files (fixed seeds, fixed fonts).
"""

import importlib.metadata as md
import json
import os
import sys

import cv2
import numpy as np
import pyclipper
from PIL import Image, ImageDraw, ImageFont

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO_ROOT, "crates", "mosaic-ocr", "tests", "fixtures")
HOME = os.environ.get("MOSAIC_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "mosaic")
ASSET = os.path.join(HOME, "assets", "pp-ocrv4")
FONT_DIR = "/usr/share/fonts/truetype/dejavu"


def font(name, size):
    path = os.path.join(FONT_DIR, name)
    if os.path.exists(path):
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def canvas(w, h, bg=(255, 255, 255)):
    img = Image.new("RGB", (w, h), bg)
    return img, ImageDraw.Draw(img)


def text_image(text, fnt, fg=(0, 0, 0), bg=(255, 255, 255), pad=6):
    """A tight RGB image holding one line of text (for pasting rotated)."""
    l, t, r, b = fnt.getbbox(text)
    img, d = canvas(r - l + 2 * pad, b - t + 2 * pad, bg)
    d.text((pad - l, pad - t), text, font=fnt, fill=fg)
    return img


def render_images():
    imgs = {}

    # 1. a receipt: several lines, digits, punctuation, mixed case
    img, d = canvas(460, 200)
    f = font("DejaVuSans.ttf", 22)
    d.text((20, 16), "Invoice No. 2024-0917", font=f, fill=(0, 0, 0))
    d.text((20, 62), "Coffee beans x2    $18.40", font=f, fill=(0, 0, 0))
    d.text((20, 108), "Total: $1,284.50", font=f, fill=(0, 0, 0))
    d.text((20, 154), "Thank you for shopping!", font=f, fill=(0, 0, 0))
    imgs["receipt"] = img

    # 2. different sizes: a big title and small print
    img, d = canvas(520, 230)
    d.text((18, 10), "Mosaic OCR", font=font("DejaVuSans-Bold.ttf", 48), fill=(20, 20, 20))
    d.text((20, 90), "Reads text in 2 passes: detect, then recognise.", font=font("DejaVuSans.ttf", 16), fill=(40, 40, 40))
    d.text((20, 130), "Small print: version 1.4.4 (March 2025)", font=font("DejaVuSans.ttf", 13), fill=(0, 0, 0))
    d.text((20, 175), "Serif Line 42", font=font("DejaVuSerif.ttf", 30), fill=(0, 0, 90))
    imgs["sizes"] = img

    # 3. one line upside down (exercises the 180-degree angle classifier)
    img, d = canvas(440, 190)
    f = font("DejaVuSans.ttf", 24)
    d.text((20, 14), "The quick brown fox", font=f, fill=(0, 0, 0))
    upside = text_image("jumps over 13 lazy dogs", f).rotate(180)
    img.paste(upside, (20, 70))
    d.text((20, 140), "Page 7 of 12", font=f, fill=(0, 0, 0))
    imgs["upside_down"] = img

    # 4. a tilted line (non-axis-aligned boxes, perspective crop)
    img, _ = canvas(480, 220)
    f = font("DejaVuSans.ttf", 26)
    tilted = text_image("Rotated by seven degrees", f).convert("RGBA").rotate(7, expand=True, resample=Image.BICUBIC, fillcolor=(255, 255, 255, 255))
    img.paste(tilted.convert("RGB"), (30, 40))
    ImageDraw.Draw(img).text((30, 170), "Level text 2025", font=f, fill=(0, 0, 0))
    imgs["tilted"] = img

    # 5. light text on a dark background, coloured text, a monospace line
    img, d = canvas(500, 180, bg=(18, 32, 74))
    d.text((24, 18), "WHITE ON NAVY", font=font("DejaVuSans-Bold.ttf", 30), fill=(250, 250, 250))
    d.text((24, 76), "Orange Text 404", font=font("DejaVuSans.ttf", 26), fill=(255, 165, 40))
    d.text((24, 126), "mono_space = 0x1F;", font=font("DejaVuSansMono.ttf", 24), fill=(200, 230, 255))
    imgs["inverse"] = img

    # 6. a vertical line (a tall crop: rotated by 90 degrees before recognition)
    img, d = canvas(300, 360)
    f = font("DejaVuSans.ttf", 24)
    vertical = text_image("Vertical label 88", f).rotate(90, expand=True)
    img.paste(vertical, (230, 20))
    d.text((20, 30), "Left column", font=f, fill=(0, 0, 0))
    d.text((20, 90), "Item A: 12", font=f, fill=(0, 0, 0))
    d.text((20, 150), "Item B: 345", font=f, fill=(0, 0, 0))
    imgs["vertical"] = img

    # 7. more than one recognition batch (rapidocr batches 6 crops)
    img, d = canvas(560, 420)
    f = font("DejaVuSans.ttf", 18)
    words = [
        "alpha 1", "Bravo 22", "charlie 333", "Delta 4444", "echo five",
        "Foxtrot 6", "golf SEVEN", "Hotel 8.0", "india 9/9", "Juliett 10",
        "kilo -11", "Lima 12%",
    ]
    for i, w in enumerate(words):
        col, row = i % 2, i // 2
        d.text((20 + col * 280, 16 + row * 66), w, font=f, fill=(0, 0, 0))
    imgs["many_lines"] = img

    # 8. a short wide strip (rapidocr pads it: width/height > 8)
    img, d = canvas(640, 40)
    d.text((10, 8), "Wide strip: 640x40 pixels, one line", font=font("DejaVuSans.ttf", 20), fill=(0, 0, 0))
    imgs["wide_strip"] = img
    return imgs


def to_list(a):
    return np.asarray(a, dtype=np.float64).tolist()


def run_rapidocr(engine, path):
    """rapidocr's __call__ step by step (same calls), keeping intermediates."""
    from rapidocr_onnxruntime.main import RapidOCR  # noqa: F401

    final, _ = engine(path)
    img = engine.load_img(path)
    raw_h, raw_w = img.shape[:2]
    op_record = {}
    img, ratio_h, ratio_w = engine.preprocess(img)
    op_record["preprocess"] = {"ratio_h": ratio_h, "ratio_w": ratio_w}
    img, op_record = engine.maybe_add_letterbox(img, op_record)
    det = engine.text_det
    pre = det.get_preprocess(max(img.shape[0], img.shape[1]))(img)
    prob = det.infer(pre)[0]
    dt_boxes, _ = engine.auto_text_det(img)
    debug = {
        "input_hw": [raw_h, raw_w],
        "det_image_hw": list(img.shape[:2]),
        "padding_top": op_record["padding_1"]["top"],
        "det_input_shape": list(pre.shape),
        "prob_stats": {
            "shape": list(prob.shape),
            "mean": float(prob.mean()),
            "max": float(prob.max()),
            "above_thresh": int((prob > 0.3).sum()),
        },
    }
    if dt_boxes is None:
        debug["det_boxes"] = []
        return final, debug
    debug["det_boxes"] = [np.asarray(b).tolist() for b in dt_boxes]
    crops = engine.get_crop_img_list(img, dt_boxes)
    debug["crop_hw"] = [list(c.shape[:2]) for c in crops]
    crops, cls_res, _ = engine.text_cls(crops)
    debug["cls"] = [[lab, float(s)] for lab, s in cls_res]
    rec_res, _ = engine.text_rec(crops, False)
    debug["rec"] = [[t, float(s)] for t, s in rec_res]
    return final, debug


def ocr_fixtures(imgs):
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(
        det_model_path=os.path.join(ASSET, "ch_PP-OCRv4_det_infer.onnx"),
        rec_model_path=os.path.join(ASSET, "ch_PP-OCRv4_rec_infer.onnx"),
        cls_model_path=os.path.join(ASSET, "ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    )
    images = []
    for name, img in imgs.items():
        fname = f"ocr_{name}.png"
        path = os.path.join(OUT, fname)
        img.save(path, optimize=True)
        final, debug = run_rapidocr(engine, path)
        lines = []
        for box, text, score in final or []:
            lines.append({"box": to_list(box), "text": text, "score": float(score)})
        kept = [r for r in debug.get("rec", []) if r[1] >= 0.5]
        assert [l["text"] for l in lines] == [r[0] for r in kept], (name, lines, kept)
        print(f"{fname}: {[l['text'] for l in lines]}")
        images.append({"file": fname, "width": img.width, "height": img.height, "lines": lines, "debug": debug})

    # one recognition input and its per-step output, to debug the recogniser alone
    img = engine.load_img(os.path.join(OUT, "ocr_receipt.png"))
    dt_boxes, _ = engine.auto_text_det(img)
    crop = engine.get_crop_img_list(img, dt_boxes)[0]
    rec = engine.text_rec
    x = rec.resize_norm_img(crop, max(320 / 48, crop.shape[1] / crop.shape[0]))[None].astype(np.float32)
    probs = rec.session(x)[0][0]
    rec_debug = {
        "image": "ocr_receipt.png",
        "line": 0,
        "crop_hw": list(crop.shape[:2]),
        "input_shape": list(x.shape),
        "input_sum": float(x.astype(np.float64).sum()),
        "steps": int(probs.shape[0]),
        "classes": int(probs.shape[1]),
        "argmax": probs.argmax(axis=1).tolist(),
        "max_prob": probs.max(axis=1).astype(np.float64).tolist(),
    }

    cfg = engine.text_det
    return {
        "reference": {
            "package": "rapidocr-onnxruntime",
            "version": md.version("rapidocr-onnxruntime"),
            "onnxruntime": md.version("onnxruntime"),
            "opencv": cv2.__version__,
            "pyclipper": md.version("pyclipper"),
            "config": {
                "text_score": engine.text_score,
                "min_height": engine.min_height,
                "width_height_ratio": engine.width_height_ratio,
                "max_side_len": engine.max_side_len,
                "min_side_len": engine.min_side_len,
                "limit_side_len": cfg.limit_side_len,
                "limit_type": cfg.limit_type,
                "thresh": cfg.postprocess_op.thresh,
                "box_thresh": cfg.postprocess_op.box_thresh,
                "max_candidates": cfg.postprocess_op.max_candidates,
                "unclip_ratio": cfg.postprocess_op.unclip_ratio,
                "use_dilation": cfg.postprocess_op.dilation_kernel is not None,
                "score_mode": cfg.postprocess_op.score_mode,
                "cls_thresh": engine.text_cls.cls_thresh,
                "cls_batch_num": engine.text_cls.cls_batch_num,
                "rec_batch_num": engine.text_rec.rec_batch_num,
            },
        },
        "images": images,
        "rec_debug": rec_debug,
    }


# --------------------------------------------------------------------------
# OpenCV / pyclipper building blocks


def f32(v):
    """float32 values as Python floats (exact: every float32 is a double)."""
    return np.asarray(v, dtype=np.float32).astype(np.float64).ravel().tolist()


def cv_ops():
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess

    rng = np.random.default_rng(20250917)
    out = {}

    # cv2.resize, INTER_LINEAR, on u8 BGR
    src = rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8)
    cases = []
    for w, h in [(17, 13), (32, 32), (7, 5), (40, 23), (9, 26), (34, 26), (1, 1), (16, 7)]:
        cases.append({"w": w, "h": h, "out": cv2.resize(src, (w, h)).ravel().tolist()})
    out["resize"] = {"h": 13, "w": 17, "src": src.ravel().tolist(), "cases": cases}

    # perspective crop (rapidocr's get_rotate_crop_image without the rot90)
    src = rng.integers(0, 256, size=(30, 36, 3), dtype=np.uint8)
    quads = [
        [[3, 4], [20, 4], [20, 12], [3, 12]],
        [[2, 5], [30, 9], [29, 17], [1, 13]],
        [[10, 2], [34, 6], [33, 27], [8, 25]],
        [[0, 0], [35, 0], [35, 29], [0, 29]],
        [[5, 20], [25, 3], [31, 10], [11, 27]],
    ]
    warps = []
    for q in quads:
        pts = np.array(q, dtype=np.float32)
        w = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
        h = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
        std = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
        m = cv2.getPerspectiveTransform(pts, std)
        dst = cv2.warpPerspective(src, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
        warps.append({"quad": q, "w": w, "h": h, "m": m.ravel().tolist(), "out": dst.ravel().tolist()})
    out["warp"] = {"h": 30, "w": 36, "src": src.ravel().tolist(), "cases": warps}

    # DB post-processing pieces on seeded random probability maps
    post = DBPostProcess(thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6, use_dilation=True)
    maps = []
    for k in range(5):
        h, w = 40 + 4 * k, 48 + 6 * k
        # text-like blobs (filled rotated rectangles and ellipses) on a noisy
        # background; values are multiples of 1/256 so JSON holds them exactly
        prob = rng.random((h, w)) * 0.28
        specks = rng.random((h, w)) < 0.01
        prob = np.where(specks, 0.31 + rng.random((h, w)) * 0.4, prob)
        for _ in range(5):
            canvas_ = np.zeros((h, w), dtype=np.uint8)
            cx, cy = rng.random() * w, rng.random() * h
            bw, bh = 3 + rng.random() * w / 2, 2 + rng.random() * h / 5
            ang = rng.random() * 180 if rng.random() < 0.5 else 0.0
            if rng.random() < 0.7:
                pts = cv2.boxPoints(((cx, cy), (bw, bh), ang)).astype(np.int32)
                cv2.fillPoly(canvas_, [pts], 1)
            else:
                cv2.ellipse(canvas_, (int(cx), int(cy)), (int(bw / 2), int(bh / 2)), ang, 0, 360, 1, -1)
            level = 0.55 + rng.random() * 0.4
            prob = np.where(canvas_ > 0, level + rng.random((h, w)) * 0.05, prob)
        prob = (np.round(np.clip(prob, 0, 1) * 256) / 256).astype(np.float32)
        mask = cv2.dilate((prob > 0.3).astype(np.uint8), np.array([[1, 1], [1, 1]]))
        contours, _ = cv2.findContours((mask * 255).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        items = []
        for c in contours:
            rect = cv2.minAreaRect(c)
            pts = cv2.boxPoints(rect)
            box, sside = post.get_mini_boxes(c)
            item = {
                "contour": c.reshape(-1, 2).tolist(),
                "rect": f32([rect[0][0], rect[0][1], rect[1][0], rect[1][1], rect[2]]),
                "box_points": f32(pts),
                "mini_box": f32(box),
                "sside": float(sside),
                "score": float(post.box_score_fast(prob, box.reshape(-1, 2))),
            }
            if sside >= 3:
                expanded = post.unclip(box)
                item["unclip"] = expanded.reshape(-1, 2).tolist()
                box2, sside2 = post.get_mini_boxes(expanded)
                item["unclip_box"] = f32(box2)
                item["unclip_sside"] = float(sside2)
            items.append(item)
        boxes, scores = post(prob[None, None], (h * 3, w * 3))
        maps.append({
            "h": h, "w": w,
            "prob_256": np.round(prob * 256).astype(np.int64).ravel().tolist(),
            "mask": "".join(str(v) for v in mask.ravel()),
            "contours": items,
            "boxes": np.asarray(boxes).tolist(),
            "scores": [float(s) for s in scores],
        })
    out["db"] = maps

    # pyclipper round-join offsets of float quadrilaterals (truncated to ints by pyclipper)
    offsets = []
    for _ in range(12):
        c = rng.random(2) * 200
        a = rng.random() * np.pi
        sx, sy = 2 + rng.random() * 80, 1 + rng.random() * 20
        d = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]], dtype=np.float64)
        quad = (np.array([[-sx, -sy], [sx, -sy], [sx, sy], [-sx, sy]]) @ d + c).astype(np.float32)
        dist = float(rng.random() * 12 + 0.3)
        off = pyclipper.PyclipperOffset()
        off.AddPath(quad, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        offsets.append({"path": f32(quad), "delta": dist, "out": off.Execute(dist)})
    out["offset"] = offsets
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    imgs = render_images()
    ref = ocr_fixtures(imgs)
    with open(os.path.join(OUT, "ocr_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    with open(os.path.join(OUT, "cv_ops.json"), "w") as f:
        json.dump(cv_ops(), f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
