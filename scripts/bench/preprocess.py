"""Python reference for benches/preprocess.rs: transformers' CLIP image
processor (PIL backend, the parity reference) and its torchvision default,
WhisperFeatureExtractor (numpy and torch paths) and the `tokenizers`
bindings, on the same real files, single thread."""
import json, os, time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image
from tokenizers import Tokenizer
from transformers import CLIPImageProcessor, CLIPImageProcessorPil, WhisperFeatureExtractor

torch.set_num_threads(1)
home = Path(os.environ.get("MOSAIC_HOME", Path.home() / ".cache/mosaic")) / "assets"
repo = Path(__file__).resolve().parents[2]


def bench(f, min_secs=3.0):
    f()
    t = time.perf_counter()
    n = 0
    while time.perf_counter() - t < min_secs:
        f()
        n += 1
    return n, time.perf_counter() - t


files = sorted(p for p in (home / "skimage-photos").iterdir() if p.suffix in (".png", ".jpg"))
blobs = [p.read_bytes() for p in files]
import io

for name, proc in [("pil", CLIPImageProcessorPil()), ("torchvision", CLIPImageProcessor())]:
    def run():
        for b in blobs:
            proc(Image.open(io.BytesIO(b)), return_tensors="np")
    n, dt = bench(run)
    print(f"clip_preprocess[{name}]: {dt * 1000 / (n * len(blobs)):.2f} ms/image ({len(blobs)} photos)")

y, sr = sf.read(home / "pocketsphinx-testdata/librivox/sense_and_sensibility_01_austen_64kb-0880.wav", dtype="float32")
fe = WhisperFeatureExtractor()
import transformers.feature_extraction_sequence_utils  # noqa: F401
n, dt = bench(lambda: fe(y, sampling_rate=16000, return_tensors="np"))
print(f"whisper_log_mel[torch path]: {dt * 1000 / n:.2f} ms per 30 s window")
n, dt = bench(lambda: fe._np_extract_fbank_features(np.pad(y, (0, 480000 - len(y)))[None], "cpu"))
print(f"whisper_log_mel[numpy path]: {dt * 1000 / n:.2f} ms per 30 s window")

tok = Tokenizer.from_file(str(home / "minilm-l6-v2/tokenizer.json"))
tok.enable_truncation(128)
tok.enable_padding()
real = json.load(open(repo / "crates/mosaic-data/tests/fixtures/text/sentences.json"))["real"]
n, dt = bench(lambda: tok.encode_batch(real))
print(f"tokenize_batch: {dt * 1000 / n:.3f} ms per {len(real)} sentences")
