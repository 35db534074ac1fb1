#!/usr/bin/env python3
"""faster-whisper / CTranslate2 reference transcriptions for mosaic-models (fixtures/audio/).

    MOSAIC_HOME=... .venv-ref/bin/python scripts/reference/make_whisper_fixtures.py [FIXTURES_ROOT] [--part greedy,beam,vad,zlib]

FIXTURES_ROOT defaults to crates/mosaic-models/tests/fixtures. Model: the
CTranslate2 Whisper tiny.en asset ($MOSAIC_HOME/assets/whisper-tiny-en/), run by
faster-whisper 1.2.1 on ctranslate2 4.8.5, CPU, float32, ONE thread
(cpu_threads=1: deterministic, and the speed baseline). Never touches the
network. Audio: the 10 pocketsphinx-testdata WAVs with transcripts (16 kHz) and
all 568 Asterisk en_US_f_Allison prompts (8 kHz, resampled to 16 kHz with
torchaudio.functional.resample defaults).

Files (layouts in crates/mosaic-models/tests/fixtures/README.md, `## audio/`):
  audio/whisper_tiny_en.json          per-file greedy transcription (windows, token ids, segments,
                                      text), decoding settings, suppress lists, feature-extractor
                                      comparison, WER, the checks below. Byte-identical on rerun.
  audio/whisper_tiny_en.safetensors   3 short files: 16 kHz waveform (2 of them), faster-whisper
                                      log-mel (content frames), encoder-output excerpts, raw per-step
                                      top-5 decoder logits and log-normalisers
  audio/whisper_tiny_en_timing.json   wall time per file and real-time factor (varies per run)
  audio/whisper_tiny_en_beam.json     (--part beam, ~2 min) beam_size=5 windows and segments on a subset
  audio/zlib_sizes.json               (--part zlib, instant) zlib.compress sizes of 400 generated strings
  audio/whisper_tiny_en_vad.json      (--part vad, ~1 min) vad_filter=True chunks, windows, segments, with
                                      faster-whisper's Silero ONNX and with the silero-vad asset's model

Every run re-derives faster-whisper's output with an independent write-up of
the procedure described in the README (window loop, prompt, greedy decoding with
the logits rules replayed in numpy on CTranslate2's raw logits, segment split,
no-speech skip, text decode, log-mel) and asserts identical token ids,
timestamps and text for every file, so the description is checked, not
recalled.
"""

import gzip
import importlib.metadata as md
import json
import math
import os
import platform
import re
import sys
import time
import warnings
import zlib

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import REPO_ROOT, asset, out_dir, rel, save_tensors, sha256_file, versions, write_json  # noqa: E402

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

import ctranslate2  # noqa: E402
import jiwer  # noqa: E402
import torchaudio.functional as AF  # noqa: E402
import transformers.models.whisper.feature_extraction_whisper as fe_mod  # noqa: E402
from faster_whisper import WhisperModel  # noqa: E402
from faster_whisper.audio import pad_or_trim  # noqa: E402
from faster_whisper.feature_extractor import FeatureExtractor  # noqa: E402
from faster_whisper.tokenizer import Tokenizer  # noqa: E402
from faster_whisper.transcribe import get_suppressed_tokens  # noqa: E402
from transformers import WhisperFeatureExtractor  # noqa: E402
from transformers.audio_utils import mel_filter_bank  # noqa: E402
from transformers.models.whisper.english_normalizer import EnglishTextNormalizer  # noqa: E402

MODELS_FIXTURES = os.path.join(REPO_ROOT, "crates", "mosaic-models", "tests", "fixtures")
MODEL_DIR = "whisper-tiny-en"
CPU_THREADS = 1

# The transcribe() call, exactly (everything else is faster-whisper's default).
TRANSCRIBE_KWARGS = dict(
    language="en",
    beam_size=1,
    best_of=1,
    temperature=0.0,
    condition_on_previous_text=False,
    without_timestamps=False,
    vad_filter=False,
    word_timestamps=False,
)

PS_SETS = [
    ("pocketsphinx-cards", "pocketsphinx-testdata/cards", "cards.transcription"),
    ("pocketsphinx-librivox", "pocketsphinx-testdata/librivox", "transcription"),
]
AST_DIR = "asterisk-sounds/en_US_f_Allison"
AST_TRANSCRIPTS = "asterisk-sounds/core-sounds-en.txt.gz"
SHORT_FILES = {
    "cards_001": "pocketsphinx-testdata/cards/001.wav",
    "hello_world": AST_DIR + "/hello-world.wav",
    "tt_weasels": AST_DIR + "/tt-weasels.wav",
}
AUDIO_FILES = ("cards_001", "hello_world")  # tt_weasels: features only (keeps the files small)
TOPK = 5

# Token ids (asserted against the tokenizer / vocabulary below).
EOT, SOT, NO_TIMESTAMPS, TIMESTAMP_BEGIN = 50256, 50257, 50362, 50363
N_VOCAB = 51864
BLANK = 220
MAX_LENGTH = 448
TIME_PRECISION = 0.02
INPUT_STRIDE = 2
N_FRAMES = 3000
HOP = 160
SR = 16000


def all_versions():
    v = versions()
    for name in ["faster-whisper", "ctranslate2", "av", "jiwer", "rapidfuzz", "safetensors"]:
        v[name] = md.version(name)
    return v


def maxdiff(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


# ---------------------------------------------------------------------------
# Inputs


def load_pocketsphinx():
    out = []
    for set_name, d, tfile in PS_SETS:
        with open(asset(d, tfile), encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                m = re.match(r"^<s>\s*(.*?)\s*</s>\s*\(([^)]+)\)$", line)
                assert m, line
                text, fid = m.group(1), m.group(2)
                path = os.path.join(d, fid + ".wav")
                asset(path)
                out.append(dict(file=path, set=set_name, reference=" ".join(text.split())))
    return out


def load_asterisk():
    refs = {}
    with gzip.open(asset(AST_TRANSCRIPTS), "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.startswith(";"):
                continue
            k, sep, v = line.partition(":")
            assert sep, line
            refs[k.strip()] = v.strip()
    root = asset(AST_DIR)
    wavs = []
    for r, _, files in os.walk(root):
        for x in files:
            if x.endswith(".wav"):
                wavs.append(os.path.relpath(os.path.join(r, x), root).replace(os.sep, "/"))
    wavs.sort()
    out = []
    for w in wavs:
        key = w[: -len(".wav")]
        assert key in refs, key
        out.append(dict(file=AST_DIR + "/" + w, set="asterisk", reference=refs[key]))
    return out, sorted(k for k in refs if k + ".wav" not in wavs)


def read_16k(relpath):
    y, sr = sf.read(asset(relpath), dtype="float32")
    assert y.ndim == 1, relpath
    if sr == 8000:
        y = AF.resample(torch.from_numpy(y), 8000, 16000).numpy()
    assert sr in (8000, 16000), (relpath, sr)
    assert y.dtype == np.float32
    return np.ascontiguousarray(y), sr


# ---------------------------------------------------------------------------
# Log-mel: independent write-up of faster_whisper.feature_extractor.FeatureExtractor


def slaney_mel_filters_f64(n_mels=80, n_fft=400, sr=16000):
    """[n_mels, n_fft//2+1] Slaney mel filters (librosa htk=False, norm='slaney'), float64."""

    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        mel = f / (200.0 / 3)
        logstep = np.log(6.4) / 27.0
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-300) / 1000.0) / logstep, mel)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        logstep = np.log(6.4) / 27.0
        return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), (200.0 / 3) * m)

    fft = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mels = np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2)
    f = mel_to_hz(mels)
    w = np.zeros((n_mels, len(fft)))
    for i in range(n_mels):
        lo = (fft - f[i]) / (f[i + 1] - f[i])
        hi = (f[i + 2] - fft) / (f[i + 2] - f[i + 1])
        w[i] = np.maximum(0.0, np.minimum(lo, hi)) * 2.0 / (f[i + 2] - f[i])
    return w


def logmel_writeup(y, filters_f32):
    """float32 write-up: pad 160 zeros, reflect-pad 200, periodic Hann, |rfft|^2, drop last frame."""
    x = np.concatenate([y.astype(np.float32), np.zeros(HOP, np.float32)])
    x = np.pad(x, (200, 200), mode="reflect")
    n_frames = 1 + (len(x) - 400) // HOP
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)).astype(np.float32)
    idx = np.arange(400)[None, :] + HOP * np.arange(n_frames)[:, None]
    spec = np.fft.rfft(x[idx] * win, axis=-1).astype(np.complex64)  # [frames, 201]
    power = (np.abs(spec) ** 2)[:-1].T  # [201, frames-1]
    mel = filters_f32 @ power
    log = np.log10(np.maximum(mel, np.float32(1e-10)))
    log = np.maximum(log, log.max() - np.float32(8.0))
    return (log + np.float32(4.0)) / np.float32(4.0)


def hf_features(fe, y, numpy_path):
    saved = fe_mod.is_torch_available
    if numpy_path:
        fe_mod.is_torch_available = lambda: False
    try:
        return fe(y, sampling_rate=SR, return_tensors="np").input_features[0]
    finally:
        fe_mod.is_torch_available = saved


# ---------------------------------------------------------------------------
# Decoding write-up (README "Decoding procedure"), replayed on raw CT2 logits


def lse(v):
    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return -np.inf
    m = v.max()
    return float(m + np.log(np.sum(np.exp(v - m))))


class Replay:
    """Per-step logits rules of CTranslate2 Whisper greedy decoding, in numpy."""

    def __init__(self, suppress):
        self.suppress = np.array(sorted(set(suppress) | {NO_TIMESTAMPS}), dtype=np.int64)
        self.max_initial_id = TIMESTAMP_BEGIN + int(round(1.0 / TIME_PRECISION))
        self.stats = dict(steps=0, ts_rule_checks=0, ts_rule_forced=0, min_ts_rule_margin=float("inf"),
                          disabled_set_mismatches=0, max_kept_logit_diff=0.0, max_score_diff=0.0,
                          no_speech_bound_violations=0, windows=0, min_argmax_margin=float("inf"),
                          steps_margin_below_0_01=0, steps_margin_below_0_1=0)

    def disabled(self, step, tokens, raw):
        """Boolean mask of disabled ids at `step` given the ids sampled so far and the raw logits."""
        d = np.zeros(N_VOCAB, bool)
        d[self.suppress] = True  # SuppressTokens (+ <|notimestamps|> from the timestamp rules)
        check = False
        if step == 0:
            d[[BLANK, EOT]] = True  # SuppressTokensBegin (suppress_blank)
            d[:TIMESTAMP_BEGIN] = True  # first token must be a timestamp
            d[self.max_initial_id + 1:] = True  # ... <= max_initial_timestamp (1.00 s)
        else:
            last = tokens[step - 1]
            if last >= TIMESTAMP_BEGIN:
                pen = tokens[step - 2] if step - 1 > 0 else last
                if pen >= TIMESTAMP_BEGIN:
                    d[TIMESTAMP_BEGIN:] = True  # pair closed (or the initial one): text or EOT next
                else:
                    d[:EOT] = True  # closing timestamp after text: timestamp >= last, or EOT
                    d[TIMESTAMP_BEGIN:last] = True
                    check = True
            else:
                check = True
                for t in reversed(tokens[:step]):
                    if t >= TIMESTAMP_BEGIN:
                        d[TIMESTAMP_BEGIN:t + 1] = True  # after text: timestamp > the last one
                        break
        if check:
            masked = np.where(d, -np.inf, raw.astype(np.float64))
            ts = lse(masked[TIMESTAMP_BEGIN:])
            text = float(np.max(masked[:TIMESTAMP_BEGIN]))
            self.stats["ts_rule_checks"] += 1
            if np.isfinite(ts) and np.isfinite(text):
                self.stats["min_ts_rule_margin"] = min(self.stats["min_ts_rule_margin"], abs(ts - text))
            if ts > text:
                d[:TIMESTAMP_BEGIN] = True
                self.stats["ts_rule_forced"] += 1
        return d

    def run(self, raw_logits, proc_logits, tokens, ended_eot, score, no_speech_prob):
        """Greedy argmax on masked raw logits must give `tokens` (+ EOT); checks score and no-speech."""
        self.stats["windows"] += 1
        lowest = np.finfo(np.float32).min
        n = len(tokens) + (1 if ended_eot else 0)
        cum = 0.0
        win_margin = float("inf")
        for s in range(n):
            raw = raw_logits[s]
            d = self.disabled(s, tokens, raw)
            masked = np.where(d, -np.inf, raw.astype(np.float64))
            choice = int(np.argmax(masked))
            want = tokens[s] if s < len(tokens) else EOT
            assert choice == want, (s, choice, want)
            allowed = masked[np.isfinite(masked)]
            if allowed.size > 1:
                top2 = np.partition(allowed, -2)[-2:]
                margin = float(top2[1] - top2[0])  # best minus runner-up logit
                win_margin = min(win_margin, margin)
                self.stats["min_argmax_margin"] = min(self.stats["min_argmax_margin"], margin)
                self.stats["steps_margin_below_0_01"] += margin < 0.01
                self.stats["steps_margin_below_0_1"] += margin < 0.1
            logp = masked - lse(masked)
            cum += float(logp[choice])
            proc = proc_logits[s]
            if not np.array_equal(proc == lowest, d):
                self.stats["disabled_set_mismatches"] += 1
            keep = ~d
            self.stats["max_kept_logit_diff"] = max(self.stats["max_kept_logit_diff"], maxdiff(proc[keep], raw[keep]))
            self.stats["steps"] += 1
        # CT2 greedy score: sum of log-probs of all sampled ids incl. EOT, / len(tokens)**length_penalty
        ours = cum / max(len(tokens), 1)
        self.stats["max_score_diff"] = max(self.stats["max_score_diff"], abs(ours - score))
        # no_speech_prob: softmax of the step-0 logits (before any suppression) at <|nocaptions|>.
        # The raw run has <|notimestamps|> disabled, so that one term is missing from the
        # normaliser here: ours can only be >= CT2's (checked), not equal.
        r0 = raw_logits[0].astype(np.float64)
        r0 = np.where(r0 == lowest, -np.inf, r0)
        ns = float(np.exp(r0[NO_SPEECH] - lse(r0)))
        if ns < no_speech_prob * (1 - 1e-5):
            self.stats["no_speech_bound_violations"] += 1
        return win_margin


NO_SPEECH = None  # set in main from the tokenizer (<|nocaptions|> for tiny.en)


def raw_logits_for(model, enc, tokens):
    """Raw per-step logits for a known id sequence: force it (and EOT) as a hard prefix.

    Prefix steps only get <|notimestamps|> disabled (no other rule fires before
    the prefix ends: the timestamp rules start at step > len(prefix), the
    initial-timestamp rule only at step 0 without a prefix), so the returned
    logits are the decoder's raw outputs but for that one id.
    """
    # ctranslate2 4.8.5 returns the prefix in the sequence and counts it in the
    # decoding length (max_length // 2): stop right after the forced EOT.
    r = model.generate(enc, [[SOT] + list(tokens) + [EOT]], beam_size=1, max_length=2 * (len(tokens) + 2),
                       return_logits_vocab=True, suppress_tokens=[], suppress_blank=False)[0]
    out = [np.asarray(x, dtype=np.float32) for x in r.logits[0]]
    lowest = np.finfo(np.float32).min
    for s in range(len(tokens) + 1):
        dis = np.flatnonzero(out[s] == lowest)
        assert dis.tolist() == [NO_TIMESTAMPS], (s, dis[:10])
    return out


def split_segments(tokens, seek, time_offset, segment_size, segment_duration):
    """faster-whisper _split_segments_by_timestamps, written out."""
    segs = []
    single_ts_ending = len(tokens) >= 2 and tokens[-2] < TIMESTAMP_BEGIN <= tokens[-1]
    consecutive = [i for i in range(1, len(tokens)) if tokens[i] >= TIMESTAMP_BEGIN and tokens[i - 1] >= TIMESTAMP_BEGIN]
    if consecutive:
        slices = list(consecutive)
        if single_ts_ending:
            slices.append(len(tokens))
        last = 0
        for cur in slices:
            sl = tokens[last:cur]
            segs.append(dict(start=time_offset + (sl[0] - TIMESTAMP_BEGIN) * TIME_PRECISION,
                             end=time_offset + (sl[-1] - TIMESTAMP_BEGIN) * TIME_PRECISION,
                             tokens=list(sl)))
            last = cur
        if single_ts_ending:
            seek += segment_size
        else:
            seek += (tokens[last - 1] - TIMESTAMP_BEGIN) * INPUT_STRIDE
    else:
        duration = segment_duration
        ts = [t for t in tokens if t >= TIMESTAMP_BEGIN]
        if ts and ts[-1] != TIMESTAMP_BEGIN:
            duration = (ts[-1] - TIMESTAMP_BEGIN) * TIME_PRECISION
        segs.append(dict(start=time_offset, end=time_offset + duration, tokens=list(tokens)))
        seek += segment_size
    return segs, seek


def writeup_transcribe(model, hf_tok, feats, suppress, replay):
    """The whole transcribe() loop for our options, from features to segments."""
    content_frames = feats.shape[-1] - 1
    seek = 0
    windows, segments = [], []
    while seek < content_frames:
        time_offset = seek * (HOP / SR)
        segment_size = min(N_FRAMES, content_frames - seek)
        segment_duration = segment_size * (HOP / SR)
        mel = pad_or_trim(feats[:, seek:seek + segment_size])
        enc = model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])))
        r = model.generate(enc, [[SOT]], beam_size=1, patience=1, length_penalty=1, repetition_penalty=1,
                           no_repeat_ngram_size=0, max_length=MAX_LENGTH, return_scores=True,
                           return_no_speech_prob=True, return_logits_vocab=True, suppress_blank=True,
                           suppress_tokens=list(suppress), max_initial_timestamp_index=50)[0]
        tokens = list(r.sequences_ids[0])
        ended_eot = len(tokens) < MAX_LENGTH // 2
        proc = [np.asarray(x, dtype=np.float32) for x in r.logits[0]]
        assert len(proc) == len(tokens) + (1 if ended_eot else 0)
        raw = raw_logits_for(model, enc, tokens)
        margin = replay.run(raw, proc, tokens, ended_eot, r.scores[0], r.no_speech_prob)
        avg_logprob = r.scores[0] * len(tokens) / (len(tokens) + 1)
        text_all = hf_tok.decode([t for t in tokens if t < EOT]).strip()
        tb = text_all.encode("utf-8")
        compression_ratio = len(tb) / len(zlib.compress(tb))
        win = dict(seek=seek, segment_size=segment_size, tokens=tokens, ended_with_eot=ended_eot,
                   no_speech_prob=r.no_speech_prob, avg_logprob=avg_logprob, compression_ratio=compression_ratio,
                   min_logit_margin=margin)
        if r.no_speech_prob > 0.6 and not (avg_logprob > -1.0):
            win["skipped_no_speech"] = True
            seek += segment_size
            win["next_seek"] = seek
            windows.append(win)
            continue
        win["skipped_no_speech"] = False
        segs, new_seek = split_segments(tokens, seek, time_offset, segment_size, segment_duration)
        for s in segs:
            text = hf_tok.decode([t for t in s["tokens"] if t < EOT])
            if s["start"] == s["end"] or not text.strip():
                continue
            s["text"] = text
            s["seek"] = seek
            segments.append(s)
        seek = new_seek
        win["next_seek"] = seek
        windows.append(win)
    return windows, segments, enc


# ---------------------------------------------------------------------------
# WER


def norm_simple(s):
    s = s.lower()
    s = re.sub(r"\[[^\]]*\]", " ", s)  # bracketed annotations ([ascending tones], [@])
    s = re.sub(r"[^a-z0-9' ]+", " ", s)
    words = [w.strip("'") for w in s.split()]
    return " ".join(w for w in words if w)


def wer_block(items, norm):
    refs, hyps, skipped = [], [], []
    for it in items:
        r, h = norm(it["reference"]), norm(it["text"])
        if not r:
            skipped.append(it["file"])
            continue
        refs.append(r)
        hyps.append(h)
    o = jiwer.process_words(refs, hyps)
    n_ref = o.hits + o.substitutions + o.deletions
    return dict(files=len(refs), ref_words=n_ref, substitutions=o.substitutions, deletions=o.deletions,
                insertions=o.insertions, hits=o.hits, wer=o.wer,
                sentence_exact=sum(1 for r, h in zip(refs, hyps) if r == h),
                skipped_empty_reference=skipped)


# ---------------------------------------------------------------------------
# Beam search (audio/whisper_tiny_en_beam.json) and VAD (audio/whisper_tiny_en_vad.json)

# faster-whisper's defaults except temperature: beam_size=5, patience=1, length_penalty=1,
# condition_on_previous_text=True; one temperature (0.0) so no sampled fallback can make the
# output irreproducible. Everything else default.
BEAM_KWARGS = dict(language="en", beam_size=5, best_of=5, patience=1, length_penalty=1, temperature=0.0,
                   condition_on_previous_text=True, without_timestamps=False, vad_filter=False,
                   word_timestamps=False)
BEAM_AST_STRIDE = 24  # every 24th Asterisk prompt (sorted by path), plus the multi-window files below
BEAM_EXTRA = [AST_DIR + "/demo-congrats.wav", AST_DIR + "/demo-instruct.wav"]


class RecordWindows:
    """Records every generate_with_fallback call of faster-whisper (one per window, in order)."""

    def __init__(self):
        from faster_whisper import transcribe as fwt
        self.fwt = fwt
        self.orig = fwt.WhisperModel.generate_with_fallback
        self.calls = []
        rec = self

        def wrapped(model, encoder_output, prompt, tokenizer, options):
            r = rec.orig(model, encoder_output, prompt, tokenizer, options)
            result, avg_logprob, temperature, compression_ratio = r
            rec.calls.append(dict(prompt=list(prompt), tokens=list(result.sequences_ids[0]),
                                  score=float(result.scores[0]), avg_logprob=float(avg_logprob),
                                  temperature=float(temperature), compression_ratio=float(compression_ratio),
                                  no_speech_prob=float(result.no_speech_prob)))
            return r

        fwt.WhisperModel.generate_with_fallback = wrapped

    def take(self):
        c, self.calls = self.calls, []
        return c


def seg_record(s):
    return dict(seek=s.seek, start=s.start, end=s.end, text=s.text, tokens=list(s.tokens),
                temperature=s.temperature, avg_logprob=s.avg_logprob,
                compression_ratio=s.compression_ratio, no_speech_prob=s.no_speech_prob)


def make_beam(out):
    mdir = os.path.dirname(asset(MODEL_DIR, "model.bin"))
    wm = WhisperModel(mdir, device="cpu", compute_type="float32", cpu_threads=CPU_THREADS)
    rec = RecordWindows()
    ps = load_pocketsphinx()
    ast, _ = load_asterisk()
    items = ps + [a for i, a in enumerate(ast) if i % BEAM_AST_STRIDE == 0]
    items += [a for a in ast if a["file"] in BEAM_EXTRA and a not in items]
    t0 = time.time()
    files = []
    for it in items:
        y, sr = read_16k(it["file"])
        segs, info = wm.transcribe(y, **BEAM_KWARGS)
        segs = list(segs)
        windows = rec.take()
        for w in windows:
            assert w["temperature"] == 0.0
            w["skipped_no_speech"] = bool(w["no_speech_prob"] > 0.6 and not (w["avg_logprob"] > -1.0))
        files.append(dict(file=it["file"], set=it["set"], reference=it["reference"], n_samples_16k=len(y),
                          windows=windows, segments=[seg_record(s) for s in segs],
                          text="".join(s.text for s in segs)))
    secs = time.time() - t0
    # The same files greedily (beam 1, everything else equal), to show where beam search differs.
    g_kwargs = dict(BEAM_KWARGS, beam_size=1, best_of=1)
    differ = []
    for f in files:
        y, _ = read_16k(f["file"])
        g = list(wm.transcribe(y, **g_kwargs)[0])
        rec.take()
        if [list(s.tokens) for s in g] != [s["tokens"] for s in f["segments"]]:
            differ.append(f["file"])
    doc = dict(
        description=("faster-whisper beam search (beam_size=5) of a subset of the real recordings with the "
                     "CTranslate2 Whisper tiny.en asset: every window's prompt, ids, score, avg_logprob, "
                     "compression ratio and no-speech probability (recorded from generate_with_fallback), "
                     "and the segments. See README.md (## audio/, beam search)."),
        versions=all_versions(),
        load="faster_whisper.WhisperModel(dir, device='cpu', compute_type='float32', cpu_threads=1)",
        transcribe_kwargs=BEAM_KWARGS,
        effective_options={k: (list(v) if isinstance(v, tuple) else v)
                           for k, v in vars(info.transcription_options).items()},
        selection=(f"all {len(ps)} pocketsphinx files, every {BEAM_AST_STRIDE}th Asterisk prompt (index in the "
                   f"path-sorted list), and {', '.join(BEAM_EXTRA)} (several windows: previous-text prompts)"),
        seconds_to_transcribe=round(secs, 1),
        files_where_greedy_differs=differ,
        files=files,
    )
    write_json(os.path.join(out, "whisper_tiny_en_beam.json"), doc, compact=True)
    rec.fwt.WhisperModel.generate_with_fallback = rec.orig
    print(f"beam: {len(files)} files in {secs:.0f} s; greedy differs on {len(differ)}")


VAD_KWARGS = dict(language="en", beam_size=1, best_of=1, temperature=0.0, condition_on_previous_text=False,
                  without_timestamps=False, vad_filter=True, word_timestamps=False)
VAD_CONCAT = [("pocketsphinx-testdata/librivox/sense_and_sensibility_01_austen_64kb-0880.wav", 3.0),
              ("pocketsphinx-testdata/cards/001.wav", 2.5),
              ("pocketsphinx-testdata/librivox/sense_and_sensibility_01_austen_64kb-0930.wav", 0.0)]
VAD_REAL = [AST_DIR + "/demo-instruct.wav"]


class JitVad:
    """The silero-vad package's TorchScript model (the Mosaic `silero-vad` asset, v6.2) behind
    faster-whisper's SileroVADModel interface: same padding, same zeroed last 64 samples, the
    64-sample context of the previous window, state carried across windows."""

    def __init__(self, path):
        self.model = torch.jit.load(path).eval()

    def __call__(self, audio, num_samples=512, context_size_samples=64):
        assert audio.ndim == 1 and audio.shape[0] % num_samples == 0
        batched = audio.reshape(-1, num_samples)
        batched[-1, -context_size_samples:] = 0  # as faster-whisper's in-place context write does
        self.model.reset_states()
        with torch.no_grad():
            probs = [float(self.model(torch.from_numpy(np.ascontiguousarray(w)), SR)) for w in batched]
        return np.array(probs, dtype=np.float32)[:, None]


def make_vad(out):
    import faster_whisper.vad as fwv
    mdir = os.path.dirname(asset(MODEL_DIR, "model.bin"))
    wm = WhisperModel(mdir, device="cpu", compute_type="float32", cpu_threads=CPU_THREADS)
    rec = RecordWindows()
    chunks_seen = []
    orig_gst = fwv.get_speech_timestamps

    def gst(audio, vad_options=None, sampling_rate=16000, **kw):
        r = orig_gst(audio, vad_options, sampling_rate, **kw)
        chunks_seen.append([dict(start=int(c["start"]), end=int(c["end"])) for c in r])
        return r

    from faster_whisper import transcribe as fwt
    fwt.get_speech_timestamps = gst
    parts = []
    for path, gap in VAD_CONCAT:
        y, sr = read_16k(path)
        assert sr == SR
        parts += [y, np.zeros(int(round(gap * SR)), np.float32)]
    concat = np.concatenate(parts)
    inputs = [("concat", concat, dict(recipe=[dict(file=p, silence_after_s=g) for p, g in VAD_CONCAT],
                                     note="16 kHz WAVs (soundfile float32) joined with that many 0.0 samples"))]
    for f in VAD_REAL:
        y, _ = read_16k(f)
        inputs.append((os.path.basename(f)[:-4], y, dict(file=f)))
    orig_model = fwv.get_vad_model
    jit = JitVad(asset("silero-vad", "silero_vad.jit"))
    runs = {}
    for variant, getter in [("faster_whisper_onnx", orig_model), ("silero_vad_jit", lambda: jit)]:
        fwv.get_vad_model = getter
        for name, y, meta in inputs:
            chunks_seen.clear()
            segs, info = wm.transcribe(y.copy(), **VAD_KWARGS)
            segs = list(segs)
            windows = rec.take()
            assert len(chunks_seen) == 1
            runs.setdefault(name, dict(meta, n_samples_16k=len(y)))[variant] = dict(
                speech_chunks=chunks_seen[0], duration_after_vad=info.duration_after_vad,
                windows=[dict(prompt=w["prompt"], tokens=w["tokens"], no_speech_prob=w["no_speech_prob"],
                              avg_logprob=w["avg_logprob"]) for w in windows],
                segments=[seg_record(s) for s in segs], text="".join(s.text for s in segs))
        # Without VAD, for comparison.
    fwv.get_vad_model = orig_model
    fwt.get_speech_timestamps = orig_gst
    for name, y, meta in inputs:
        segs = list(wm.transcribe(y.copy(), **dict(VAD_KWARGS, vad_filter=False))[0])
        rec.take()
        runs[name]["no_vad"] = dict(segments=[seg_record(s) for s in segs], text="".join(s.text for s in segs))
    rec.fwt.WhisperModel.generate_with_fallback = rec.orig
    doc = dict(
        description=("faster-whisper vad_filter=True (greedy, temperature 0) on a concatenation of real "
                     "recordings with inserted digital silence and on real Asterisk prompts, twice: with "
                     "faster-whisper's own Silero model (assets/silero_vad_v6.onnx, not the weights Mosaic "
                     "ships) and with the silero-vad package's TorchScript model (= the Mosaic silero-vad "
                     "asset) swapped in through faster_whisper.vad.get_vad_model. See README.md (## audio/, VAD)."),
        versions=dict(all_versions(), silero_vad=md.version("silero-vad"), onnxruntime=md.version("onnxruntime")),
        transcribe_kwargs=VAD_KWARGS,
        vad_options={k: ("inf" if v == float("inf") else v) for k, v in vars(fwv.VadOptions()).items()},
        silero_vad_jit_sha256=sha256_file(asset("silero-vad", "silero_vad.jit")),
        inputs=runs,
    )
    write_json(os.path.join(out, "whisper_tiny_en_vad.json"), doc, compact=False)
    for name, r in runs.items():
        print(name, {k: (v.get("speech_chunks"), v["text"]) for k, v in r.items() if isinstance(v, dict) and "text" in v})


# ---------------------------------------------------------------------------


def make_zlib(out):
    """audio/zlib_sizes.json: len(zlib.compress(s)) for 400 strings (faster-whisper's compression ratio)."""
    import random
    rng = random.Random(20240611)
    words = "the a of to and you thank so uh um he she it was is in on one two three . , ! ? ♪ ok yes no".split()
    cases = []
    for i in range(400):
        kind = i % 4
        if kind == 0:  # text-like: few words, repeated phrases likely
            vocab = rng.sample(words, rng.randint(2, len(words)))
            s = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 150)))
        elif kind == 1:  # a phrase repeated (hallucination loops)
            phrase = " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))
            s = (" " + phrase) * rng.randint(1, 80)
        elif kind == 2:  # random letters (few matches; stored or fixed blocks)
            s = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ABC.,") for _ in range(rng.randint(0, 500)))
        else:  # long runs and near-runs
            s = "".join(rng.choice("aab") * rng.randint(1, 120) for _ in range(rng.randint(1, 8)))
        b = s.encode("utf-8")
        cases.append([s, len(zlib.compress(b))])
    write_json(os.path.join(out, "zlib_sizes.json"), dict(
        description="len(zlib.compress(s.encode('utf-8'))) (level 6) for generated strings: text-like word "
                    "sequences, repeated phrases, random letters, character runs",
        zlib_version=zlib.ZLIB_RUNTIME_VERSION, python=platform.python_version(), cases=cases), compact=True)


def parse_args():
    """[FIXTURES_ROOT] [--part greedy,beam,vad,zlib] (default: all parts)."""
    args = sys.argv[1:]
    parts = {"greedy", "beam", "vad", "zlib"}
    root = MODELS_FIXTURES
    i = 0
    while i < len(args):
        if args[i] == "--part":
            parts = set(args[i + 1].split(","))
            assert parts <= {"greedy", "beam", "vad", "zlib"}, parts
            i += 2
        else:
            root = args[i]
            i += 1
    return root, parts


def main():
    root, parts = parse_args()
    out = out_dir("audio", [sys.argv[0], root])
    if "zlib" in parts:
        make_zlib(out)
    if "beam" in parts:
        make_beam(out)
    if "vad" in parts:
        make_vad(out)
    if "greedy" in parts:
        make_greedy(out)


def make_greedy(out):
    global NO_SPEECH
    mdir = os.path.dirname(asset(MODEL_DIR, "model.bin"))
    cfg = json.load(open(os.path.join(mdir, "config.json")))

    wm = WhisperModel(mdir, device="cpu", compute_type="float32", cpu_threads=CPU_THREADS)
    model = wm.model
    assert not model.is_multilingual
    hf_tok = wm.hf_tokenizer
    tok = Tokenizer(hf_tok, False, task="transcribe", language="en")
    NO_SPEECH = tok.no_speech
    assert (tok.eot, tok.sot, tok.no_timestamps, tok.timestamp_begin) == (EOT, SOT, NO_TIMESTAMPS, TIMESTAMP_BEGIN)
    assert tok.sot_sequence == [SOT]
    assert hf_tok.encode(" ", add_special_tokens=False).ids == [BLANK]
    vocab = open(os.path.join(mdir, "vocabulary.txt"), encoding="utf-8").read().split("\n")
    vocab = [v for v in vocab if v != ""]
    assert len(vocab) == N_VOCAB and vocab[TIMESTAMP_BEGIN] == "<|0.00|>" and vocab[-1] == "<|30.00|>"
    suppress = list(get_suppressed_tokens(tok, [-1]))
    assert sorted(suppress) == sorted(cfg["suppress_ids"]), "faster-whisper list != config suppress_ids"
    assert cfg["suppress_ids_begin"] == [BLANK, EOT]
    assert wm.feat_kwargs == {}  # no preprocessor_config.json: FeatureExtractor defaults
    fe = wm.feature_extractor
    replay = Replay(suppress)

    special = {}
    for name in ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                 "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|nospeech|>", "<|notimestamps|>"]:
        special[name] = hf_tok.token_to_id(name)

    # mel filters: faster-whisper vs transformers vs write-up
    hf_fe = WhisperFeatureExtractor()
    fw_filters = fe.mel_filters  # float32 [80,201]
    hf_filters = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0,
                                 max_frequency=8000.0, sampling_rate=SR, norm="slaney", mel_scale="slaney").T
    my_filters = slaney_mel_filters_f64()
    filters_check = dict(fw_vs_transformers=maxdiff(fw_filters, hf_filters),
                         fw_vs_writeup_f64=maxdiff(fw_filters, my_filters),
                         fw_f64_source_vs_writeup=maxdiff(FeatureExtractor.get_mel_filters(SR, 400, 80), my_filters))
    my_filters32 = my_filters.astype(np.float32)

    ps = load_pocketsphinx()
    ast, ast_missing = load_asterisk()
    items = ps + ast

    # warm-up (not timed)
    y0, _ = read_16k(items[0]["file"])
    list(wm.transcribe(y0, **TRANSCRIBE_KWARGS)[0])

    feat_cmp = dict(files=0, content_max_abs_diff_torch=0.0, content_max_abs_diff_numpy=0.0,
                    content_max_abs_diff_writeup=0.0, files_over_30s=[], pad_value_fw=0.0,
                    pad_value_hf_min=float("inf"), pad_value_hf_max=-float("inf"))
    timing = []
    results = []
    tensors = {}
    short_json = {}
    t_all = time.time()
    for k, it in enumerate(items):
        y, sr = read_16k(it["file"])
        n = len(y)
        # --- faster-whisper, timed (transcribe is lazy: consume the generator) ---
        t0 = time.perf_counter()
        segs, info = wm.transcribe(y, **TRANSCRIBE_KWARGS)
        segs = list(segs)
        dt = time.perf_counter() - t0
        timing.append(dict(file=it["file"], duration_s=n / SR, seconds=round(dt, 4)))

        # --- features: faster-whisper vs write-up vs transformers ---
        feats = fe(y)
        cf = feats.shape[-1] - 1
        assert feats.dtype == np.float32 and feats.shape == (80, n // HOP + 1)
        mine = logmel_writeup(y, my_filters32)
        feat_cmp["content_max_abs_diff_writeup"] = max(feat_cmp["content_max_abs_diff_writeup"], maxdiff(feats, mine))
        c = min(cf, N_FRAMES)
        if n > 30 * SR:
            feat_cmp["files_over_30s"].append(it["file"])
        else:
            hf_t = hf_features(hf_fe, y, numpy_path=False)
            hf_n = hf_features(hf_fe, y, numpy_path=True)
            feat_cmp["files"] += 1
            feat_cmp["content_max_abs_diff_torch"] = max(feat_cmp["content_max_abs_diff_torch"], maxdiff(feats[:, :c], hf_t[:, :c]))
            feat_cmp["content_max_abs_diff_numpy"] = max(feat_cmp["content_max_abs_diff_numpy"], maxdiff(feats[:, :c], hf_n[:, :c]))
            if c < N_FRAMES:
                feat_cmp["pad_value_hf_min"] = min(feat_cmp["pad_value_hf_min"], float(hf_n[:, c + 2:].min()))
                feat_cmp["pad_value_hf_max"] = max(feat_cmp["pad_value_hf_max"], float(hf_n[:, c + 2:].max()))

        # --- write-up of the whole loop; must reproduce faster-whisper exactly ---
        windows, my_segs, enc = writeup_transcribe(model, hf_tok, feats, suppress, replay)
        assert len(my_segs) == len(segs), (it["file"], len(my_segs), len(segs))
        for a, b in zip(my_segs, segs):
            assert a["tokens"] == list(b.tokens), it["file"]
            assert a["start"] == b.start and a["end"] == b.end, it["file"]
            assert a["text"] == b.text and a["seek"] == b.seek, it["file"]
        for w in windows:
            for b in segs:
                if b.seek == w["seek"]:
                    assert b.no_speech_prob == w["no_speech_prob"] and b.avg_logprob == w["avg_logprob"]
                    assert b.compression_ratio == w["compression_ratio"] and b.temperature == 0.0

        text = "".join(s.text for s in segs)
        rec = dict(file=it["file"], set=it["set"], reference=it["reference"], sample_rate=sr, n_samples_16k=n,
                   content_frames=cf,
                   windows=[dict(seek=w["seek"], segment_size=w["segment_size"], tokens=w["tokens"],
                                 ended_with_eot=w["ended_with_eot"], no_speech_prob=w["no_speech_prob"],
                                 avg_logprob=w["avg_logprob"], compression_ratio=w["compression_ratio"],
                                 skipped_no_speech=w["skipped_no_speech"], next_seek=w["next_seek"],
                                 min_logit_margin=round(w["min_logit_margin"], 4))
                            for w in windows],
                   segments=[dict(seek=s.seek, start=s.start, end=s.end, text=s.text, tokens=list(s.tokens))
                             for s in segs],
                   text=text)
        results.append(rec)

        # --- the 3 short files: plain ctranslate2 generate, features, encoder, raw logits ---
        for key, path in SHORT_FILES.items():
            if path != it["file"]:
                continue
            assert n <= 30 * SR
            mel = pad_or_trim(feats[:, :cf])
            sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None]))
            prompt = tok.sot_sequence  # wm.get_prompt(tok, [], without_timestamps=False) == [50257]
            assert wm.get_prompt(tok, [], without_timestamps=False) == prompt == [SOT]
            r = model.generate(sv, [prompt], beam_size=1, return_scores=True, max_length=MAX_LENGTH,
                               return_no_speech_prob=True)[0]
            ids = list(r.sequences_ids[0])
            assert ids == windows[0]["tokens"], (key, ids, windows[0]["tokens"])
            # the same decode on transformers WhisperFeatureExtractor features (numpy path):
            # content frames nearly equal, but its padding frames are log-mel of silence, not 0.0
            hf_mel = hf_features(hf_fe, y, numpy_path=True)
            sv_hf = ctranslate2.StorageView.from_array(np.ascontiguousarray(hf_mel[None]))
            r_hf = model.generate(sv_hf, [prompt], beam_size=1, return_scores=True, max_length=MAX_LENGTH,
                                  return_no_speech_prob=True)[0]
            enc_hf = np.asarray(model.encode(sv_hf))
            enc_np = np.asarray(enc)  # the last window's encoder output == the only window
            assert enc_np.shape == (1, 1500, 384)
            enc2 = np.asarray(model.encode(sv))
            raw = raw_logits_for(model, model.encode(sv), ids)
            steps = len(ids) + 1
            top_ids = np.zeros((steps, TOPK), np.int64)
            top_val = np.zeros((steps, TOPK), np.float32)
            lse_all = np.zeros(steps, np.float32)
            for s in range(steps):
                v = raw[s].copy()
                order = np.argsort(-v, kind="stable")[:TOPK]
                top_ids[s] = order
                top_val[s] = v[order]
                keep = np.ones(N_VOCAB, bool)
                keep[NO_TIMESTAMPS] = False
                lse_all[s] = lse(v[keep])
            if key in AUDIO_FILES:
                tensors[f"{key}/audio_16k"] = y
            tensors[f"{key}/features"] = np.ascontiguousarray(feats[:, :cf])
            tensors[f"{key}/encoder_output_first8"] = enc_np[0, :8]
            tensors[f"{key}/encoder_output_row_mean"] = enc_np[0].mean(axis=1, dtype=np.float64).astype(np.float32)
            tensors[f"{key}/tokens"] = np.array(ids, np.int64)
            tensors[f"{key}/raw_logits_top5_ids"] = top_ids
            tensors[f"{key}/raw_logits_top5"] = top_val
            tensors[f"{key}/raw_logits_logsumexp"] = lse_all
            short_json[key] = dict(
                file=path, n_samples_16k=n, content_frames=cf, prompt=prompt,
                generate_call=("model.generate(StorageView(pad_or_trim(features[:, :content_frames])[None]), "
                               "[[50257]], beam_size=1, return_scores=True, max_length=448, "
                               "return_no_speech_prob=True)  # other args at ctranslate2 defaults"),
                tokens=ids, tokens_text=[vocab[i] for i in ids], score=r.scores[0], no_speech_prob=r.no_speech_prob,
                equals_transcribe_first_window=True,
                encoder_twice_max_abs_diff=maxdiff(enc_np, enc2),
                with_transformers_features=dict(
                    tokens=list(r_hf.sequences_ids[0]), score=r_hf.scores[0], no_speech_prob=r_hf.no_speech_prob,
                    features_max_abs_diff=maxdiff(hf_mel, mel),
                    encoder_output_max_abs_diff=maxdiff(enc_hf, enc_np)),
                raw_logits_step0_argmax_without_rules=int(np.argmax(np.where(raw[0] == np.finfo(np.float32).min, -np.inf, raw[0]))),
                raw_step0_no_speech_logit=float(raw[0][NO_SPEECH]),
                has_audio_16k=key in AUDIO_FILES,
            )
        if (k + 1) % 50 == 0:
            print(f"{k + 1}/{len(items)} files, {time.time() - t_all:.0f} s", flush=True)

    rs = replay.stats
    assert rs["disabled_set_mismatches"] == 0, rs
    assert rs["max_kept_logit_diff"] == 0.0, rs
    assert rs["no_speech_bound_violations"] == 0, rs
    assert rs["max_score_diff"] < 1e-4, rs

    # WER
    eng = EnglishTextNormalizer({})
    wer = {}
    for name, sel in [("pocketsphinx", lambda r: r["set"].startswith("pocketsphinx")),
                      ("asterisk", lambda r: r["set"] == "asterisk")]:
        sub = [r for r in results if sel(r)]
        wer[name] = dict(simple=wer_block(sub, norm_simple), whisper_english=wer_block(sub, eng))

    total_audio = sum(t["duration_s"] for t in timing)
    total_time = sum(t["seconds"] for t in timing)

    n_windows = sum(len(r["windows"]) for r in results)
    doc = dict(
        description=("faster-whisper greedy transcription of every pocketsphinx-testdata WAV with a transcript "
                     "and every Asterisk en_US_f_Allison prompt with the CTranslate2 Whisper tiny.en asset. "
                     "Layout and the exact decoding procedure: README.md (## audio/)."),
        versions=all_versions(),
        model=dict(dir=rel(mdir), model_bin_sha256=sha256_file(os.path.join(mdir, "model.bin")),
                   tokenizer_json_sha256=sha256_file(os.path.join(mdir, "tokenizer.json")),
                   config_json=cfg, vocabulary_size=N_VOCAB, is_multilingual=False,
                   load=dict(call="faster_whisper.WhisperModel(dir, device='cpu', compute_type='float32', cpu_threads=1)",
                             compute_type="float32", cpu_threads=CPU_THREADS)),
        transcribe_kwargs=TRANSCRIBE_KWARGS,
        effective_options={k: (list(v) if isinstance(v, tuple) else v)
                           for k, v in vars(info.transcription_options).items()},
        tokens=dict(special=special, eot=EOT, sot=SOT, no_timestamps=NO_TIMESTAMPS, no_speech=NO_SPEECH,
                    timestamp_begin=TIMESTAMP_BEGIN, timestamp_end=N_VOCAB - 1, blank=BLANK,
                    prompt=[SOT], suppress_tokens=sorted(suppress), suppress_ids_begin=cfg["suppress_ids_begin"],
                    max_initial_timestamp_id=TIMESTAMP_BEGIN + 50,
                    non_speech_tokens=list(tok.non_speech_tokens)),
        audio=dict(pocketsphinx="16 kHz int16 WAV read by soundfile.read(path, dtype='float32') (x / 32768)",
                   asterisk=("8 kHz int16 WAV, soundfile float32, then torchaudio.functional.resample(x, 8000, 16000) "
                             "with defaults (sinc_interp_hann, lowpass_filter_width=6, rolloff=0.99)"),
                   asterisk_transcripts_without_wav=ast_missing),
        features=dict(
            extractor="faster_whisper.feature_extractor.FeatureExtractor() defaults (80 mels, n_fft 400, hop 160, 16 kHz)",
            mel_filters=filters_check,
            comparison_vs_transformers_WhisperFeatureExtractor=feat_cmp,
        ),
        checks=dict(
            writeup_reproduces_transcribe="all files: window tokens, segment tokens/start/end/text/seek identical",
            replay=dict(rs, note=("greedy argmax over raw CT2 logits masked by the README rules reproduces every "
                                  "sampled id incl. EOT; disabled sets equal CT2's (logit == float32 lowest) at every "
                                  "step; kept logits bit-equal; score = sum of log-softmax(masked)[id] incl. EOT / "
                                  "len(ids); no_speech_prob: the raw run lacks the <|notimestamps|> logit, so only 'softmax without it >= CT2 value' is checked")),
            total_windows=n_windows,
            windows_skipped_no_speech=sum(1 for r in results for w in r["windows"] if w["skipped_no_speech"]),
            windows_hit_max_length=sum(1 for r in results for w in r["windows"] if not w["ended_with_eot"]),
            files_with_multiple_windows=[r["file"] for r in results if len(r["windows"]) > 1],
            files_with_no_segments=[r["file"] for r in results if not r["segments"]],
        ),
        wer=dict(normalisations=dict(
            simple=("lowercase; drop [...] annotations; every char outside [a-z0-9' ] -> space; split on "
                    "whitespace; strip leading/trailing apostrophes; numbers NOT spelled out"),
            whisper_english=("transformers.models.whisper.english_normalizer.EnglishTextNormalizer({}) "
                             "(OpenAI Whisper's English normaliser, empty spelling map: numbers -> digits, "
                             "brackets removed, contractions expanded)")),
            method="jiwer.process_words(references, hypotheses): corpus-level WER = (S + D + I) / reference words; "
                   "files whose normalised reference is empty are left out",
            **wer),
        short_files=short_json,
        files=results,
    )
    write_json(os.path.join(out, "whisper_tiny_en.json"), doc, compact=True)
    save_tensors(os.path.join(out, "whisper_tiny_en.safetensors"), tensors)
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    write_json(os.path.join(out, "whisper_tiny_en_timing.json"), dict(
        note=("wall time of faster_whisper transcribe() per file (feature extraction + encoder + greedy decoding, "
              "generator consumed), after one untimed warm-up call; model load excluded. Varies per run."),
        cpu=cpu, nproc=os.cpu_count(), cpu_threads=CPU_THREADS, platform=platform.platform(),
        versions=all_versions(),
        total_audio_s=total_audio, total_transcribe_s=round(total_time, 3),
        real_time_factor=round(total_time / total_audio, 5),
        by_set={s: dict(audio_s=sum(t["duration_s"] for t, r in zip(timing, results) if r["set"] == s),
                        transcribe_s=round(sum(t["seconds"] for t, r in zip(timing, results) if r["set"] == s), 3))
                for s in ["pocketsphinx-cards", "pocketsphinx-librivox", "asterisk"]},
        files=timing))
    print(json.dumps(dict(wer=wer, rtf=total_time / total_audio, replay=rs, feat=feat_cmp, filters=filters_check,
                          windows=n_windows), indent=1, default=str)[:6000])
    for f in ["whisper_tiny_en.json", "whisper_tiny_en.safetensors", "whisper_tiny_en_timing.json"]:
        print(f, os.path.getsize(os.path.join(out, f)))


if __name__ == "__main__":
    main()
