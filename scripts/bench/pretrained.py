"""References for benches/pretrained.rs, same inputs, same thread count:
sentence-transformers (MiniLM), PyTorch efficientnet-lite-pytorch
(EfficientNet-Lite0), faster-whisper / CTranslate2 (Whisper tiny.en, greedy), the silero-vad
package (TorchScript model + get_speech_timestamps)."""
import json, os, time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

threads = int(os.environ.get("BENCH_THREADS", "2"))
torch.set_num_threads(threads)
home = Path(os.environ.get("MOSAIC_HOME", Path.home() / ".cache/mosaic")) / "assets"
repo = Path(__file__).resolve().parents[2]


def bench(f, min_secs=2.0):
    f()
    t = time.perf_counter()
    n = 0
    while time.perf_counter() - t < min_secs or n < 3:
        f()
        n += 1
    return (time.perf_counter() - t) / n


os.environ["HF_HUB_OFFLINE"] = "1"
from sentence_transformers import SentenceTransformer

real = json.load(open(repo / "crates/mosaic-data/tests/fixtures/text/sentences.json"))["real"]
st = SentenceTransformer(str(home / "minilm-l6-v2"), device="cpu")
for b in (1, 8):
    batch = real[:b]
    with torch.inference_mode():
        dt = bench(lambda: st.encode(batch, batch_size=b))
    print(f"minilm batch {b}: {dt * 1e3:.2f} ms/batch, {b / dt:.1f} sentences/s (sentence-transformers)")

from efficientnet_lite_pytorch import EfficientNet

net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(home / "efficientnet-lite0/efficientnet-lite0.pth")).eval()
x = torch.randn(1, 3, 224, 224)
for b in (1, 8):
    xb = x.repeat(b, 1, 1, 1)
    with torch.inference_mode():
        dt = bench(lambda: net(xb))
    print(f"efficientnet-lite0 batch {b}: {dt * 1e3:.2f} ms/batch, {b / dt:.1f} images/s (PyTorch)")

from faster_whisper import WhisperModel

wm = WhisperModel(str(home / "whisper-tiny-en"), device="cpu", compute_type="float32", cpu_threads=threads)
audio = [sf.read(home / f"pocketsphinx-testdata/librivox/{f}", dtype="float32")[0] for f in ("sense_and_sensibility_01_austen_64kb-0870.wav", "sense_and_sensibility_01_austen_64kb-0920.wav")]
secs = sum(len(a) for a in audio) / 16000


def run():
    for a in audio:
        segs, _ = wm.transcribe(a, language="en", beam_size=1, best_of=1, temperature=0.0, condition_on_previous_text=False, vad_filter=False)
        list(segs)


dt = bench(run, 3.0)
print(f"whisper-tiny-en greedy: {dt:.2f} s for {secs:.1f} s of audio, real-time factor {dt / secs:.3f} (faster-whisper, float32)")

from silero_vad import get_speech_timestamps, load_silero_vad

vad = load_silero_vad(onnx=False)
tensors = [torch.from_numpy(a) for a in audio]


def run_vad():
    for a in tensors:
        get_speech_timestamps(a, vad, sampling_rate=16000)


with torch.inference_mode():
    dt = bench(run_vad)
print(f"silero-vad: {dt * 1e3:.2f} ms for {secs:.1f} s of audio, real-time factor {dt / secs:.4f} (silero-vad package, TorchScript)")
