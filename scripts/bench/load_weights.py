"""Reference side of scripts/bench/load_weights.sh: loads every tensor of each
file with the library users would otherwise use (safetensors.torch.load_file,
torch.load), median of N runs after one warm-up. Prints `path<TAB>elements<TAB>ms as returned<TAB>ms with owned contiguous copies`."""
import statistics
import sys
import time

import torch
from safetensors.torch import load_file


def load(path, materialize=False):
    if path.endswith(".safetensors"):
        tensors = load_file(path)
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        tensors = obj if isinstance(obj, dict) else {}
    tensors = {k: t for k, t in tensors.items() if torch.is_tensor(t)}
    if materialize:
        # load_file hands back tensors over a memory map: nothing is read
        # until used. Copying into owned, contiguous memory is the work
        # Mosaic's loader does (candle tensors own their storage).
        tensors = {k: t.contiguous().clone() for k, t in tensors.items()}
    return sum(t.numel() for t in tensors.values())


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    args = sys.argv[1:]
    runs = 10
    if "--runs" in args:
        i = args.index("--runs")
        runs = int(args[i + 1])
        del args[i : i + 2]
    torch.set_num_threads(int(__import__("os").environ.get("THREADS", "2")))
    for path in args:
        elems = load(path)
        lazy = median_ms(lambda: load(path), runs)
        owned = median_ms(lambda: load(path, materialize=True), runs)
        print(f"{path}\t{elems}\t{lazy:.2f}\t{owned:.2f}")


if __name__ == "__main__":
    main()
