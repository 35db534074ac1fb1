#!/usr/bin/env bash
# Whisper tiny.en: WER and real-time factor, Mosaic vs faster-whisper, on all
# pocketsphinx-testdata and Asterisk recordings, greedy and beam 5, same
# threads. Needs the reference venv (scripts/reference/setup-venv.sh) and the
# whisper-tiny-en, pocketsphinx-testdata and asterisk-sounds assets.
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_THREADS="${BENCH_THREADS:-2}"
cargo build --release -q -p mosaic-models --example whisper_eval
.venv-ref/bin/python scripts/bench/whisper.py "$@"
