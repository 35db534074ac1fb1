"""PyTorch DataLoader reference for the loader benchmark: the same
Fashion-MNIST PNGs, decoded with PIL, converted to RGB, scaled and
normalised to [3, 28, 28] float32, shuffled, batched, with the same number
of worker processes."""
import json, os, sys, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

home = Path(os.environ.get("MOSAIC_HOME", Path.home() / ".cache/mosaic"))
root = home / "datasets/fashion-mnist"
workers = int(os.environ.get("BENCH_WORKERS", "2"))
batch = int(os.environ.get("BENCH_BATCH", "256"))
torch.set_num_threads(1)


class Manifest(torch.utils.data.Dataset):
    def __init__(self, path):
        self.rows = [json.loads(l) for l in open(path)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        img = Image.open(root / self.rows[i]["image"]).convert("RGB")
        x = np.asarray(img, dtype=np.float32) / 255.0
        x = (x - 0.286) / 0.353
        return torch.from_numpy(x.transpose(2, 0, 1).copy())


ds = Manifest(root / "manifest.jsonl")
dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                 generator=torch.Generator().manual_seed(0), persistent_workers=False)
for epoch in range(2):
    t = time.perf_counter()
    n = 0
    for b in dl:
        n += b.shape[0]
    dt = time.perf_counter() - t
    print(f"pytorch DataLoader epoch {epoch}: {n} samples in {dt:.2f} s = {n / dt:.0f} samples/s ({workers} workers, batch {batch})")
