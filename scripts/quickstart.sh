#!/usr/bin/env bash
# The main job from a fresh machine: installs the one system program it
# uses (espeak-ng, for spoken captions), builds Mosaic, then runs
# `mosaic quickstart`, which fetches Fashion-MNIST and MiniLM, trains an
# image–text model, a LiT model and a speech tower, evaluates them and
# writes runs/quickstart/report.{json,md} with curve PNGs.
# Extra arguments go to `mosaic quickstart` (e.g. --steps 600 --no-speech).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v espeak-ng >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq --no-install-recommends espeak-ng >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends espeak-ng >/dev/null; }
fi
cargo run --release -q -p mosaic-cli -- quickstart "$@"
