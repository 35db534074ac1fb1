"""Reference for crates/mosaic-ocr/benches/ocr.rs: rapidocr-onnxruntime 1.4.4
on the same rendered images (batch 1, one image per call, after a warm-up),
with onnxruntime limited to BENCH_THREADS intra-op threads (default 1: tract
runs on one thread); BENCH_ORT_THREADS (default 2) gives a second row."""
import json, os, time
from pathlib import Path

from rapidocr_onnxruntime import RapidOCR

repo = Path(__file__).resolve().parents[2]
home = Path(os.environ.get("MOSAIC_HOME", Path.home() / ".cache/mosaic")) / "assets" / "pp-ocrv4"
fixtures = repo / "crates/mosaic-ocr/tests/fixtures"
images = [e["file"] for e in json.load(open(fixtures / "ocr_reference.json"))["images"]]


def bench(f, min_secs=2.0):
    t = time.perf_counter()
    n = 0
    while time.perf_counter() - t < min_secs or n < 3:
        f()
        n += 1
    return (time.perf_counter() - t) / n


def run(threads):
    t = time.perf_counter()
    engine = RapidOCR(
        det_model_path=str(home / "ch_PP-OCRv4_det_infer.onnx"),
        cls_model_path=str(home / "ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        rec_model_path=str(home / "ch_PP-OCRv4_rec_infer.onnx"),
        intra_op_num_threads=threads,
        inter_op_num_threads=1,
    )
    print(f"rapidocr ({threads} thread{'s' if threads > 1 else ''}) load: {(time.perf_counter() - t) * 1e3:.0f} ms")
    total = 0.0
    for f in images:
        path = str(fixtures / f)
        engine(path)
        dt = bench(lambda: engine(path))
        total += dt
        print(f"rapidocr ({threads}t) {f}: {dt * 1e3:.1f} ms/image")
    print(f"rapidocr ({threads}t) mean: {total / len(images) * 1e3:.1f} ms/image")


run(int(os.environ.get("BENCH_THREADS", "1")))
run(int(os.environ.get("BENCH_ORT_THREADS", "2")))
