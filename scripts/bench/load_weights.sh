#!/usr/bin/env bash
# Weight loading, Mosaic vs the Python reference, on the real assets, in one
# run on this machine. Prints a Markdown table for BENCHMARKS.md.
# Needs: the assets (mosaic assets fetch minilm-l6-v2 silero-vad efficientnet-lite0)
# and the reference venv (scripts/reference/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-10}
PY=${PYTHON:-.venv-ref/bin/python}
HOME_DIR=${MOSAIC_HOME:-$HOME/.cache/mosaic}
files=(
  "$HOME_DIR/assets/minilm-l6-v2/model.safetensors"
  "$HOME_DIR/assets/silero-vad/silero_vad_16k.safetensors"
  "$HOME_DIR/assets/efficientnet-lite0/efficientnet-lite0.pth"
)
cargo build --release -q -p mosaic-core --bench load_weights
bench_bin=$(ls -t target/release/deps/load_weights-* | grep -v '\.d$' | head -1)
rust_out=$("$bench_bin" --runs "$RUNS" "${files[@]}")
py_out=$(THREADS=2 "$PY" scripts/bench/load_weights.py --runs "$RUNS" "${files[@]}")
echo "| file | elements | Mosaic ms | reference | reference ms (as returned) | reference ms (owned copy) | Mosaic / reference (owned) |"
echo "|---|---|---|---|---|---|---|"
paste <(echo "$rust_out") <(echo "$py_out") | while IFS=$'\t' read -r f e ms _f2 e2 lazy pms; do
  if [ "$e" != "$e2" ]; then echo "element counts differ for $f: $e vs $e2" >&2; exit 1; fi
  case "$f" in *.safetensors) ref="safetensors.torch.load_file";; *) ref="torch.load(weights_only=True)";; esac
  ratio=$(awk -v a="$ms" -v b="$pms" 'BEGIN { printf "%.2f", a / b }')
  echo "| $(basename "$f") | $e | $ms | $ref | $lazy | $pms | $ratio |"
done
