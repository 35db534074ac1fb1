#!/usr/bin/env python3
"""DTW and subtitle fixtures for mosaic-data (fixtures/align/).

    MOSAIC_HOME=... .venv-ref/bin/python scripts/reference/make_align_fixtures.py [FIXTURES_ROOT]

DTW reference: librosa.sequence.dtw on real MFCC sequences of two Asterisk
recordings of the same text (8 kHz, librosa.feature.mfcc(y, sr=8000,
n_mfcc=13) defaults), once with defaults and once with
global_constraints=True, band_rad=0.25; plus a tiny integer sequence pair
where ties are frequent (checks the tie-breaking order).

Subtitles: hand-written SRT / WebVTT files and the cues a parser should
produce (subtitles_expected.json, written by hand: no library reference).

Files:
  align/dtw.safetensors     "<case>/X" f32 [13,N], "<case>/Y" f32 [13,M], "<case>/C" f64 [N,M],
                            "<case>/<variant>/D" f64 [N,M], "<case>/<variant>/wp" i64 [K,2],
                            "<case>/<variant>/steps" i32 [N,M]
  align/dtw.json            cases, calls, final costs, path lengths
  align/sample.srt, align/sample_crlf_bom.srt, align/sample.vtt, align/subtitles_expected.json
"""

import os
import sys

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import asset, out_dir, save_tensors, versions, write_json  # noqa: E402

import librosa  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402

AST = "asterisk-sounds/en_US_f_Allison/"
PAIRS = {
    "glorious": (AST + "confbridge-begin-glorious-a.wav", AST + "confbridge-begin-glorious-b.wav"),
    "minute": (AST + "minute.wav", AST + "queue-minute.wav"),
}
VARIANTS = {
    "default": {},
    "band": {"global_constraints": True, "band_rad": 0.25},
    "band010": {"global_constraints": True, "band_rad": 0.1},
}


def dtw_ref(C, band_rad=None):
    """Independent re-implementation of librosa's default DTW (checks README.md)."""
    C = C.copy()
    n, m = C.shape
    if band_rad is not None:
        r = int(np.round(band_rad * min(n, m)))  # numpy round: half to even
        off = abs(n - m)
        i, j = np.indices(C.shape)
        if n < m:
            C[(j - i >= r + off) | (j - i <= -r)] = np.inf
        else:
            C[(j - i >= r) | (j - i <= -r - off)] = np.inf
    D = np.full((n + 1, m + 1), np.inf)
    D[1, 1] = C[0, 0]
    steps = np.zeros((n + 1, m + 1), np.int32)
    for a in range(1, n + 1):
        for b in range(1, m + 1):
            for k, (da, db) in enumerate(((1, 1), (0, 1), (1, 0))):  # diag, left, up
                cost = D[a - da, b - db] + C[a - 1, b - 1]
                if cost < D[a, b]:  # strict: earlier step wins ties
                    D[a, b] = cost
                    steps[a, b] = k
    D, steps = D[1:, 1:], steps[1:, 1:]
    a, b = n - 1, m - 1
    wp = [(a, b)]
    while (a, b) != (0, 0):
        da, db = ((1, 1), (0, 1), (1, 0))[steps[a, b]]
        a, b = a - da, b - db
        if min(a, b) < 0:
            break
        wp.append((a, b))
    return D, np.array(wp), steps


def mfcc(relpath):
    y, sr = sf.read(asset(relpath), dtype="float32")
    assert sr == 8000
    return librosa.feature.mfcc(y=y, sr=8000, n_mfcc=13)


SRT = (
    "1\n"
    "00:00:01,000 --> 00:00:03,500\n"
    "Hello world.\n"
    "\n"
    "2\n"
    "00:00:04,000 --> 00:00:06,250\n"
    "Two lines\n"
    "of text.\n"
    "\n"
    "7\n"
    "00:01:02,003 --> 01:00:00,000\n"
    "<i>Italic</i> and <b>bold</b> \u2014 \u00fcn\u00efc\u00f6d\u00e9.\n"
    "\n"
    "\n"
)

VTT = (
    "WEBVTT - Mosaic test file\n"
    "\n"
    "NOTE This is a comment\n"
    "spanning two lines\n"
    "\n"
    "STYLE\n"
    "::cue { color: yellow }\n"
    "\n"
    "intro\n"
    "00:00.500 --> 00:02.000 align:start position:10%\n"
    "Short timestamp form (mm:ss.ttt).\n"
    "\n"
    "00:00:02.500 --> 00:00:04.000\n"
    "<v Roger Bingham>We are in New York City</v>\n"
    "\n"
    "3\n"
    "01:02:03.004 --> 01:02:05.678 line:0\n"
    "Hours present\n"
    "second line\n"
)

SUBS_EXPECTED = {
    "note": "hand-written expectation (no library reference). Times in milliseconds; text lines "
    "joined with \\n, markup kept verbatim; id is the cue number/identifier line or null.",
    "sample.srt": [
        {"id": "1", "start_ms": 1000, "end_ms": 3500, "settings": None, "text": "Hello world."},
        {"id": "2", "start_ms": 4000, "end_ms": 6250, "settings": None, "text": "Two lines\nof text."},
        {
            "id": "7",
            "start_ms": 62003,
            "end_ms": 3600000,
            "settings": None,
            "text": "<i>Italic</i> and <b>bold</b> \u2014 \u00fcn\u00efc\u00f6d\u00e9.",
        },
    ],
    "sample_crlf_bom.srt": "same cues as sample.srt (file = UTF-8 BOM + sample.srt with CRLF line endings)",
    "sample.vtt": [
        {
            "id": "intro",
            "start_ms": 500,
            "end_ms": 2000,
            "settings": "align:start position:10%",
            "text": "Short timestamp form (mm:ss.ttt).",
        },
        {
            "id": None,
            "start_ms": 2500,
            "end_ms": 4000,
            "settings": None,
            "text": "<v Roger Bingham>We are in New York City</v>",
        },
        {"id": "3", "start_ms": 3723004, "end_ms": 3725678, "settings": "line:0", "text": "Hours present\nsecond line"},
    ],
}


def main():
    d = out_dir("align")
    tensors, meta = {}, {"generator": "scripts/reference/make_align_fixtures.py", "versions": versions(), "cases": {}}
    cases = {name: (mfcc(a), mfcc(b), {"x_file": a, "y_file": b}) for name, (a, b) in PAIRS.items()}
    ties_x = np.array([[0, 1, 1, 2, 3, 3, 3, 4]], np.float32)
    ties_y = np.array([[0, 1, 2, 2, 3, 4, 4]], np.float32)
    cases["ties"] = (ties_x, ties_y, {"note": "1-D integer sequences, many equal-cost steps"})
    for name, (X, Y, info) in cases.items():
        C = cdist(X.T.astype(np.float64), Y.T.astype(np.float64), metric="euclidean")
        tensors[f"{name}/X"] = np.ascontiguousarray(X, np.float32)
        tensors[f"{name}/Y"] = np.ascontiguousarray(Y, np.float32)
        tensors[f"{name}/C"] = C
        entry = dict(info, X_shape=list(X.shape), Y_shape=list(Y.shape), variants={})
        for vname, kw in VARIANTS.items():
            D, wp, steps = librosa.sequence.dtw(X=X, Y=Y, metric="euclidean", return_steps=True, **kw)
            D2, wp2 = librosa.sequence.dtw(X=X, Y=Y, metric="euclidean", **kw)
            assert np.array_equal(D, D2) and np.array_equal(wp, wp2)
            Dr, wpr, stepsr = dtw_ref(C, kw.get("band_rad") if kw.get("global_constraints") else None)
            assert np.array_equal(D, Dr) and np.array_equal(wp, wpr) and np.array_equal(steps, stepsr), (name, vname)
            tensors[f"{name}/{vname}/D"] = np.ascontiguousarray(D, np.float64)
            tensors[f"{name}/{vname}/wp"] = np.ascontiguousarray(wp, np.int64)
            tensors[f"{name}/{vname}/steps"] = np.ascontiguousarray(steps, np.int32)
            entry["variants"][vname] = {
                "call": "librosa.sequence.dtw(X=X, Y=Y, metric='euclidean'"
                + "".join(f", {k}={v!r}" for k, v in kw.items())
                + ")",
                "final_cost": float(D[-1, -1]),
                "path_len": int(len(wp)),
                "path_order": "wp[0] = (N-1, M-1) ... wp[-1] = (0, 0)",
                "n_inf_in_D": int(np.isinf(D).sum()),
            }
        meta["cases"][name] = entry
    save_tensors(os.path.join(d, "dtw.safetensors"), tensors)
    write_json(os.path.join(d, "dtw.json"), meta)

    with open(os.path.join(d, "sample.srt"), "w", encoding="utf-8", newline="") as f:
        f.write(SRT)
    with open(os.path.join(d, "sample_crlf_bom.srt"), "w", encoding="utf-8", newline="") as f:
        f.write("\ufeff" + SRT.replace("\n", "\r\n"))
    with open(os.path.join(d, "sample.vtt"), "w", encoding="utf-8", newline="") as f:
        f.write(VTT)
    write_json(os.path.join(d, "subtitles_expected.json"), SUBS_EXPECTED)
    print(f"align fixtures -> {d}")


if __name__ == "__main__":
    main()
