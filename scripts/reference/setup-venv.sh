#!/usr/bin/env bash
# Create/refresh the reference venv (.venv-ref at the repo root) used to write
# fixture files with real torch (requirements.txt) and the data-pipeline
# references for mosaic-data: transformers image processors / Whisper features,
# tokenizers, torchaudio, librosa, Silero VAD (requirements-data.txt) and the
# model references for mosaic-models: sentence-transformers,
# efficientnet-lite-pytorch, faster-whisper / ctranslate2 / jiwer
# (requirements-models.txt), and the metric references for mosaic-eval:
# sacrebleu, rouge-score + nltk, pycocoevalcap, torchmetrics
# (requirements-eval.txt; pycocoevalcap's tokenizer also needs `java`).
# Idempotent: reruns are quick no-ops once everything pinned is installed.
#
# Usage: scripts/reference/setup-venv.sh [VENV_DIR]
# Needs python3 (3.11 tested) and PyPI access. Disk: ~7 GB (see requirements.txt
# for why the nvidia-* wheels are needed). Not used by the Rust build or CI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${1:-$root/.venv-ref}"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi

# --no-deps: install exactly the pinned set, so pip never pulls triton or other
# CUDA extras that torch's metadata asks for, and never swaps torch for another
# version to satisfy torchaudio/torchvision/transformers/sentence-transformers.
# The three files together are the full closure (checked below with pip check).
"$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
    -r "$here/requirements.txt" -r "$here/requirements-data.txt" \
    -r "$here/requirements-models.txt" -r "$here/requirements-eval.txt"

# The only unmet requirements allowed are the two torch deps we skip on purpose
# and faster-whisper's onnxruntime (only needed for its VAD, never used here),
# and rapidocr's opencv-python (opencv-python-headless provides the same cv2).
unmet="$("$venv/bin/python" -m pip check --disable-pip-version-check 2>&1 \
    | grep -v -E '^torch [^ ]+ requires (triton|nvidia-nvtx-cu12), which is not installed\.$' \
    | grep -v -E '^faster-whisper [^ ]+ requires onnxruntime, which is not installed\.$' \
    | grep -v -E '^rapidocr-onnxruntime [^ ]+ requires opencv-python, which is not installed\.$' \
    | grep -v -E '^No broken requirements found\.$' || true)"
if [[ -n "$unmet" ]]; then
    echo "pip check found unmet requirements:" >&2
    echo "$unmet" >&2
    exit 1
fi

"$venv/bin/python" - <<'PY'
import importlib.metadata
import torch, numpy, safetensors
t = torch.zeros(2)
assert t.tolist() == [0.0, 0.0]
print(f"ok: torch {torch.__version__}, numpy {numpy.__version__}, safetensors {safetensors.__version__}")
import PIL, librosa, soundfile, tokenizers, torchaudio, torchvision, transformers, silero_vad
from transformers import CLIPImageProcessorPil, WhisperFeatureExtractor
assert torchaudio.__version__.startswith(torch.__version__.split("+")[0])
print(f"ok: transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
      f"pillow {PIL.__version__}, torchaudio {torchaudio.__version__}, librosa {librosa.__version__}, "
      f"silero-vad {silero_vad.__version__}")
import sentence_transformers
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
print(f"ok: sentence-transformers {sentence_transformers.__version__}")
import efficientnet_lite_pytorch
from efficientnet_lite_pytorch import EfficientNet
print(f"ok: efficientnet-lite-pytorch {efficientnet_lite_pytorch.__version__}")
import av, ctranslate2, faster_whisper, jiwer
from faster_whisper import WhisperModel
from faster_whisper.feature_extractor import FeatureExtractor
assert "float32" in ctranslate2.get_supported_compute_types("cpu")
print(f"ok: faster-whisper {faster_whisper.__version__}, ctranslate2 {ctranslate2.__version__}, "
      f"av {av.__version__}, jiwer {importlib.metadata.version('jiwer')}")
import sacrebleu, rouge_score, nltk, torchmetrics
from rouge_score import rouge_scorer
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from torchmetrics.functional.multimodal.clip_score import _clip_score_update
print(f"ok: sacrebleu {sacrebleu.__version__}, rouge-score {importlib.metadata.version('rouge-score')}, "
      f"nltk {nltk.__version__}, pycocoevalcap {importlib.metadata.version('pycocoevalcap')}, "
      f"torchmetrics {torchmetrics.__version__}")
PY
