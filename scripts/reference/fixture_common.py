"""Shared helpers for the mosaic-data fixture scripts (make_*_fixtures.py).

Assets are read from $MOSAIC_HOME/assets/<name>/ (MOSAIC_HOME defaults to
~/.cache/mosaic, like the Rust side). Fixtures are written under
crates/mosaic-data/tests/fixtures/<kind>/ unless an output root is given on the
command line. Tensors go to safetensors (little endian); everything else to
JSON. Paths stored in JSON are relative to $MOSAIC_HOME/assets/.
"""

import hashlib
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_FIXTURES = os.path.join(REPO_ROOT, "crates", "mosaic-data", "tests", "fixtures")


def mosaic_home():
    home = os.environ.get("MOSAIC_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "mosaic")
    return home


def assets_root():
    return os.path.join(mosaic_home(), "assets")


def asset(*parts):
    """Absolute path of an asset file; fails loudly if it is missing."""
    p = os.path.join(assets_root(), *parts)
    if not os.path.exists(p):
        sys.exit(f"missing asset {p} (set MOSAIC_HOME; run `mosaic fetch` first)")
    return p


def rel(path):
    """Path relative to the assets root, with forward slashes."""
    return os.path.relpath(path, assets_root()).replace(os.sep, "/")


def out_dir(kind, argv=None):
    """fixtures/<kind>/ (or <argv[1]>/<kind>/), created if needed."""
    argv = sys.argv if argv is None else argv
    root = argv[1] if len(argv) > 1 else DEFAULT_FIXTURES
    d = os.path.join(root, kind)
    os.makedirs(d, exist_ok=True)
    return d


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def sha256_file(path):
    with open(path, "rb") as f:
        return sha256_bytes(f.read())


def save_tensors(path, tensors, metadata=None):
    """Write a safetensors file; keys are sorted by safetensors itself.

    Every array must already have the dtype it should be stored with; arrays
    are made C-contiguous so the stored layout is row-major.
    """
    clean = {}
    for k, v in tensors.items():
        v = np.ascontiguousarray(v)
        assert v.dtype in (np.float32, np.float64, np.int64, np.uint8, np.int32), (k, v.dtype)
        clean[k] = v
    save_file(clean, path, metadata=metadata)
    os.chmod(path, 0o644)  # save_file creates 0600 files


def f32(x):
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def write_json(path, obj, compact=False):
    with open(path, "w", encoding="utf-8") as f:
        if compact:
            json.dump(obj, f, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        else:
            json.dump(obj, f, ensure_ascii=False, indent=1, allow_nan=False)
        f.write("\n")


def floats(a):
    """List of Python floats holding the exact values of a float32/float64 array.

    json writes the shortest repr of the float64, which round-trips exactly; a
    float32 value converted to float64 is exact, so parsing it back as f64 and
    casting to f32 gives the original bits.
    """
    return [float(x) for x in np.asarray(a).ravel()]


def versions():
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in [
        "numpy",
        "torch",
        "torchaudio",
        "torchvision",
        "transformers",
        "tokenizers",
        "pillow",
        "librosa",
        "scipy",
        "soundfile",
        "silero-vad",
    ]:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out
