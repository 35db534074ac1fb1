#!/usr/bin/env python3
"""NumPy reference timing for crates/mosaic-eval/benches/retrieval.rs:
10,000 paired 512-d embeddings (B = A + 6·N(0,1), NumPy's own seeded draws),
cosine similarity matrix (f32 matmul) + the NumPy retrieval reference of
scripts/reference/make_eval_fixtures.py (stable descending argsort per row,
rank of the paired item, R@1/5/10, median rank, mAP) both ways.

    .venv-ref/bin/python scripts/bench/retrieval.py [THREADS]
"""
import os
import sys

threads = sys.argv[1] if len(sys.argv) > 1 else "2"
for v in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]:
    os.environ[v] = threads

import time  # noqa: E402

import numpy as np  # noqa: E402


def ranks_of_diagonal(sim):
    order = np.argsort(-sim, axis=1, kind="stable")
    n = sim.shape[0]
    pos = np.nonzero(order == np.arange(n)[:, None])[1] + 1
    return pos


def metrics(pos):
    return {"r1": np.mean(pos <= 1), "r5": np.mean(pos <= 5), "r10": np.mean(pos <= 10),
            "medr": np.median(pos), "map": np.mean(1.0 / pos)}


n, d = 10_000, 512
rng = np.random.default_rng(0)
a = rng.standard_normal((n, d), dtype=np.float32)
b = (a + 6.0 * rng.standard_normal((n, d), dtype=np.float32)).astype(np.float32)
print(f"numpy {np.__version__}, threads {threads}")
for run in range(1, 4):
    t0 = time.perf_counter()
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    sim = an @ bn.T
    t1 = time.perf_counter()
    i2t = metrics(ranks_of_diagonal(sim))
    t2i = metrics(ranks_of_diagonal(sim.T))
    t2 = time.perf_counter()
    print(f"run {run}: cosine matrix {t1 - t0:.3f} s + retrieval both ways {t2 - t1:.3f} s = {t2 - t0:.3f} s "
          f"(i->t R@1 {i2t['r1']:.4f} medR {i2t['medr']}; t->i R@1 {t2i['r1']:.4f})")
