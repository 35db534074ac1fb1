#!/usr/bin/env python3
"""Audio parity fixtures for mosaic-data (fixtures/audio/).

    MOSAIC_HOME=... .venv-ref/bin/python scripts/reference/make_audio_fixtures.py [FIXTURES_ROOT]

References:
  * soundfile.read(path, dtype="float32")                (WAV decode, int16 / 32768)
  * transformers WhisperFeatureExtractor, numpy path     (log-mel features)
  * torchaudio.functional.resample(w, 8000, 16000)       (8 kHz Asterisk prompts)
  * librosa.feature.melspectrogram / mfcc                (defaults, sr=16000)
  * silero-vad 6.2.3: the packaged TorchScript model + get_speech_timestamps,
    and a plain-torch forward over silero_vad_16k.safetensors (the asset the
    Rust side loads), whose weights are NOT the ones inside the .jit.

Files (layouts in README.md next to them):
  audio/waveforms.json            per-WAV sample counts, sums, first samples; all 568 Asterisk files summarised
  audio/whisper_features.safetensors
  audio/whisper.json              extractor settings, frame counts, torch-vs-numpy deltas, recipes
  audio/resample.safetensors      torchaudio 8k->16k outputs, kernel
  audio/librosa.safetensors       mel [128,T] and mfcc [13,T] of one file
  audio/librosa.json              parameters and shapes
  audio/silero_vad.json           per-window probabilities + timestamps (jit and safetensors weights)
"""

import math
import os
import sys
import warnings

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import (  # noqa: E402
    asset,
    assets_root,
    f32,
    floats,
    out_dir,
    rel,
    save_tensors,
    sha256_file,
    versions,
    write_json,
)

warnings.filterwarnings("ignore")

import torch  # noqa: E402

torch.set_num_threads(1)  # deterministic reduction order for the torch paths

import librosa  # noqa: E402
import torchaudio.functional as AF  # noqa: E402
import transformers.models.whisper.feature_extraction_whisper as fe_mod  # noqa: E402
from transformers import WhisperFeatureExtractor  # noqa: E402

PS_FILES = [
    "pocketsphinx-testdata/cards/001.wav",
    "pocketsphinx-testdata/cards/002.wav",
    "pocketsphinx-testdata/cards/003.wav",
    "pocketsphinx-testdata/cards/004.wav",
    "pocketsphinx-testdata/cards/005.wav",
    "pocketsphinx-testdata/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
    "pocketsphinx-testdata/librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    "pocketsphinx-testdata/librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
    "pocketsphinx-testdata/librivox/sense_and_sensibility_01_austen_64kb-0920.wav",
    "pocketsphinx-testdata/librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
]
AST = "asterisk-sounds/en_US_f_Allison/"
AST_FILES = [
    AST + "digits/1.wav",
    AST + "digits/7.wav",
    AST + "letters/a.wav",
    AST + "tt-weasels.wav",
    AST + "hello-world.wav",
]
WHISPER_128_FILE = PS_FILES[0]
LIBROSA_FILE = PS_FILES[6]
SILERO_FILES = [PS_FILES[4], PS_FILES[5], PS_FILES[7]]
SILERO_GAP_SAMPLES = 8000  # 0.5 s of zeros between concatenated recordings
LONG40_SAMPLES = 40 * 16000


def read(relpath):
    y, sr = sf.read(asset(relpath), dtype="float32")
    assert y.ndim == 1
    return y, sr


def n_keep(n_samples):
    return min(math.ceil(n_samples / 160) + 4, 3000)


# ---------------------------------------------------------------------------
# Whisper


def whisper_numpy(fe, y):
    """Default __call__, but forced onto the numpy STFT path."""
    saved = fe_mod.is_torch_available
    fe_mod.is_torch_available = lambda: False
    try:
        return fe(y, sampling_rate=16000, return_tensors="np").input_features[0]
    finally:
        fe_mod.is_torch_available = saved


def whisper_default(fe, y):
    """Default __call__ with torch installed (the torch.stft path)."""
    return fe(y, sampling_rate=16000, return_tensors="np").input_features[0]


def slaney_mel_filters(n_mels, n_fft=400, sr=16000, fmax=8000.0):
    """[n_fft//2+1, n_mels] float64, written from the formulas in README.md."""

    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        mel = 3.0 * f / 200.0
        logstep = 27.0 / np.log(6.4)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-300) / 1000.0) * logstep, mel)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        logstep = np.log(6.4) / 27.0
        return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), 200.0 * m / 3.0)

    mel_pts = np.linspace(hz_to_mel(0.0), hz_to_mel(fmax), n_mels + 2)
    f_pts = mel_to_hz(mel_pts)
    fft_f = np.linspace(0, sr // 2, n_fft // 2 + 1)
    fdiff = np.diff(f_pts)
    slopes = f_pts[None, :] - fft_f[:, None]
    down = -slopes[:, :-2] / fdiff[:-1]
    up = slopes[:, 2:] / fdiff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    return fb * (2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels]))[None, :]


def whisper_ref(y, filters):
    """Independent numpy write-up of WhisperFeatureExtractor's numpy path."""
    x = np.zeros(480000, np.float32)
    x[: min(len(y), 480000)] = y[:480000]
    x = np.pad(x, (200, 200), mode="reflect").astype(np.float64)
    n = np.arange(400)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / 400)  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(x, 400)[::160]  # 3001 frames
    spec = np.fft.rfft(frames * window, axis=1).astype(np.complex64)
    power = np.abs(spec, dtype=np.float64) ** 2  # [3001, 201]
    mel = np.maximum(1e-10, filters.T @ power.T)  # [n_mels, 3001]
    logm = np.log10(mel).astype(np.float32)[:, :-1]
    logm = np.maximum(logm, logm.max() - np.float32(8.0))
    return (logm + np.float32(4.0)) / np.float32(4.0)


def resample_ref_f64(y, orig=8000, new=16000, width_zc=6, rolloff=0.99):
    """torchaudio sinc_interp_hann resample written out in float64."""
    g = math.gcd(orig, new)
    o, nw = orig // g, new // g
    base = min(o, nw) * rolloff
    width = math.ceil(width_zc * o / base)
    idx = np.arange(-width, width + o, dtype=np.float64) / o
    t = (np.arange(0, -nw, -1, dtype=np.float64)[:, None] / nw + idx[None, :]) * base
    t = np.clip(t, -width_zc, width_zc)
    win = np.cos(t * math.pi / width_zc / 2) ** 2
    t = t * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(t == 0, 1.0, np.sin(t) / t)
    k = k * win * (base / o)  # [nw, 2*width + o]
    xp = np.concatenate([np.zeros(width), y.astype(np.float64), np.zeros(width + o)])
    n_blocks = (len(xp) - k.shape[1]) // o + 1
    out = np.empty((n_blocks, nw))
    for j in range(nw):
        out[:, j] = np.convolve(xp, k[j][::-1], mode="valid")[::o][:n_blocks]
    return out.reshape(-1)[: math.ceil(nw * len(y) / o)]


# ---------------------------------------------------------------------------
# Silero VAD


class SileroTorch(torch.nn.Module):
    """Plain-torch forward of silero-vad's 16 kHz net, same ops as the .jit
    (_model.forward + the wrapper's 64-sample context)."""

    def __init__(self, sd):
        super().__init__()
        self.sd = {k: torch.as_tensor(v) for k, v in sd.items()}
        self.reset_states()

    def reset_states(self):
        self.context = torch.zeros(1, 64)
        self.state = None

    def forward(self, chunk):  # chunk [512] f32
        sd = self.sd
        x = torch.cat([self.context, chunk[None]], dim=1)  # [1, 576]
        self.context = x[:, -64:]
        x = torch.nn.functional.pad(x, (0, 64), mode="reflect")  # [1, 640]
        x = torch.nn.functional.conv1d(x[:, None], sd["stft_conv.weight"], None, stride=128)  # [1,258,4]
        mag = torch.sqrt(x[:, :129] ** 2 + x[:, 129:] ** 2)
        h = mag
        for i, stride in zip(range(1, 5), (1, 2, 2, 1)):
            h = torch.relu(
                torch.nn.functional.conv1d(h, sd[f"conv{i}.weight"], sd[f"conv{i}.bias"], stride=stride, padding=1)
            )
        h = h.squeeze(-1)  # [1,128]
        if self.state is None:
            hx = cx = torch.zeros(1, 128)
        else:
            hx, cx = self.state
        gates = (
            h @ sd["lstm_cell.weight_ih"].T
            + sd["lstm_cell.bias_ih"]
            + hx @ sd["lstm_cell.weight_hh"].T
            + sd["lstm_cell.bias_hh"]
        )
        i, f, g, o = gates.chunk(4, dim=1)
        cx = torch.sigmoid(f) * cx + torch.sigmoid(i) * torch.tanh(g)
        hx = torch.sigmoid(o) * torch.tanh(cx)
        self.state = (hx, cx)
        y = torch.nn.functional.conv1d(torch.relu(hx)[:, :, None], sd["final_conv.weight"], sd["final_conv.bias"])
        return torch.sigmoid(y).squeeze(1).mean(dim=1)  # [1]


def jit_state_as_safetensors_names(jit_model):
    sd = {k: v.detach().clone() for k, v in jit_model._model.state_dict().items()}
    out = {"stft_conv.weight": sd["stft.forward_basis_buffer"]}
    for i in range(4):
        out[f"conv{i + 1}.weight"] = sd[f"encoder.{i}.reparam_conv.weight"]
        out[f"conv{i + 1}.bias"] = sd[f"encoder.{i}.reparam_conv.bias"]
    for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        out[f"lstm_cell.{k}"] = sd[f"decoder.rnn.{k}"]
    out["final_conv.weight"] = sd["decoder.decoder.2.weight"]
    out["final_conv.bias"] = sd["decoder.decoder.2.bias"]
    return out


def window_probs(model_call, reset, wav):
    """Exactly the loop inside silero_vad.get_speech_timestamps (16 kHz)."""
    reset()
    probs = []
    t = torch.from_numpy(wav)
    for s in range(0, len(wav), 512):
        chunk = t[s : s + 512]
        if len(chunk) < 512:
            chunk = torch.nn.functional.pad(chunk, (0, 512 - len(chunk)))
        probs.append(float(model_call(chunk)))
    return probs


def silero_fixtures(d, waves):
    from safetensors.torch import load_file as load_st
    from silero_vad import get_speech_timestamps, get_speech_timestamps_from_probs, load_silero_vad

    jit = load_silero_vad()  # silero_vad/data/silero_vad.jit (same bytes as the asset)
    st_path = asset("silero-vad", "silero_vad_16k.safetensors")
    st = load_st(st_path)
    jit_sd = jit_state_as_safetensors_names(jit)
    weights_equal = {k: bool(torch.equal(st[k], jit_sd[k])) for k in st}
    m_st = SileroTorch(st)
    m_jitw = SileroTorch(jit_sd)

    long_parts = PS_FILES + PS_FILES
    pieces = []
    for i, p in enumerate(long_parts):
        if i:
            pieces.append(np.zeros(SILERO_GAP_SAMPLES, np.float32))
        pieces.append(waves[p][0])
    long_wav = np.concatenate(pieces)
    inputs = [(p, waves[p][0]) for p in SILERO_FILES] + [("long_concat", long_wav)]

    defaults = dict(
        threshold=0.5,
        neg_threshold="None -> max(threshold - 0.15, 0.01) = 0.35",
        sampling_rate=16000,
        window_size_samples=512,
        context_samples=64,
        min_speech_duration_ms=250,
        max_speech_duration_s="inf",
        min_silence_duration_ms=100,
        speech_pad_ms=30,
        min_silence_at_max_speech=98,
        use_max_poss_sil_at_max_speech=True,
        return_seconds=False,
    )
    cases = []
    for name, wav in inputs:
        p_jit = window_probs(lambda c: jit(c, 16000).item(), jit.reset_states, wav)
        ts_jit = get_speech_timestamps(torch.from_numpy(wav), jit, sampling_rate=16000)
        p_st = window_probs(lambda c: m_st(c).item(), m_st.reset_states, wav)
        ts_st = get_speech_timestamps_from_probs(p_st, sampling_rate=16000, audio_length_samples=len(wav))
        p_jw = window_probs(lambda c: m_jitw(c).item(), m_jitw.reset_states, wav)
        assert ts_jit == get_speech_timestamps_from_probs(p_jit, sampling_rate=16000, audio_length_samples=len(wav))
        cases.append(
            {
                "name": name,
                "file": name if name != "long_concat" else None,
                "n_samples": int(len(wav)),
                "n_windows": len(p_jit),
                "jit": {"probs": p_jit, "timestamps": ts_jit},
                "safetensors_weights": {"probs": p_st, "timestamps": ts_st},
                "max_abs_diff_jit_vs_torch_reimpl_with_jit_weights": float(np.max(np.abs(np.array(p_jw) - p_jit))),
                "max_abs_diff_jit_vs_safetensors_weights": float(np.max(np.abs(np.array(p_st) - p_jit))),
            }
        )
    write_json(
        os.path.join(d, "silero_vad.json"),
        {
            "generator": "scripts/reference/make_audio_fixtures.py",
            "versions": versions(),
            "jit_model": "silero_vad package data/silero_vad.jit (identical to silero-vad/silero_vad.jit asset)",
            "jit_sha256": sha256_file(asset("silero-vad", "silero_vad.jit")),
            "safetensors_file": rel(st_path),
            "safetensors_sha256": sha256_file(st_path),
            "safetensors_tensor_equal_to_jit": weights_equal,
            "get_speech_timestamps_defaults": defaults,
            "long_concat_recipe": {
                "files": long_parts,
                "gap_samples_between_files": SILERO_GAP_SAMPLES,
                "gap_value": 0.0,
                "note": "files read with soundfile dtype=float32, concatenated in this order with "
                "8000 zero samples between consecutive files (none at the ends)",
                "n_samples": int(len(long_wav)),
            },
            "cases": cases,
        },
        compact=False,
    )


# ---------------------------------------------------------------------------


def main():
    d = out_dir("audio")
    root = assets_root()

    # --- waveforms --------------------------------------------------------
    waves = {}
    wf = {"pocketsphinx": [], "asterisk_used": [], "asterisk_all": []}
    for p in PS_FILES + AST_FILES:
        y, sr = read(p)
        i16, _ = sf.read(asset(p), dtype="int16")
        assert np.array_equal(y, i16.astype(np.float32) / 32768.0)
        waves[p] = (y, sr)
        info = sf.info(asset(p))
        (wf["pocketsphinx"] if p in PS_FILES else wf["asterisk_used"]).append(
            {
                "file": p,
                "sha256": sha256_file(asset(p)),
                "sample_rate": sr,
                "channels": info.channels,
                "subtype": info.subtype,
                "n_samples": int(len(y)),
                "sum_f64": float(y.astype(np.float64).sum()),
                "sum_i16": int(i16.astype(np.int64).sum()),
                "first64": floats(y[:64]),
            }
        )
    ast_dir = asset("asterisk-sounds", "en_US_f_Allison")
    for dirpath, _, files in sorted(os.walk(ast_dir)):
        for fn in sorted(files):
            if fn.endswith(".wav"):
                p = os.path.join(dirpath, fn)
                y, sr = sf.read(p, dtype="float32")
                wf["asterisk_all"].append([rel(p), sr, int(len(y)), float(y.astype(np.float64).sum())])
    wf["asterisk_all"].sort()
    write_json(
        os.path.join(d, "waveforms.json"),
        {
            "reader": 'soundfile.read(path, dtype="float32"): PCM_16 sample / 32768.0 (exact in f32)',
            "asterisk_all_columns": ["file", "sample_rate", "n_samples", "sum_f64"],
            **wf,
        },
    )

    # --- Whisper -------------------------------------------------------------
    fe80 = WhisperFeatureExtractor(feature_size=80)
    fe128 = WhisperFeatureExtractor(feature_size=128)
    tensors = {"mel_filters_80": fe80.mel_filters.astype(np.float64)}  # [201, 80]
    meta = {"files": {}, "self_check": {}}
    for nm, fe in ((80, fe80), (128, fe128)):
        own = slaney_mel_filters(nm)
        meta["self_check"][f"mel_filters_{nm}_max_abs_diff_vs_formula"] = float(np.abs(own - fe.mel_filters).max())
    worst = 0.0
    for p in PS_FILES:
        y = waves[p][0]
        feats = whisper_numpy(fe80, y)
        assert feats.shape == (80, 3000) and feats.dtype == np.float32
        k = n_keep(len(y))
        tensors[f"80/{p}"] = f32(feats[:, :k])
        tensors[f"80_col2999/{p}"] = f32(feats[:, 2999])
        tfeats = whisper_default(fe80, y)
        worst = max(worst, float(np.abs(whisper_ref(y, fe80.mel_filters).astype(np.float64) - feats).max()))
        meta["files"][p] = {
            "n_samples": int(len(y)),
            "frames_stored": k,
            "torch_path_max_abs_diff": float(np.abs(tfeats.astype(np.float64) - feats).max()),
            "col2999_unique": sorted(set(float(v) for v in feats[:, 2999])),
        }
    meta["self_check"]["whisper_numpy_path_max_abs_diff_vs_writeup"] = worst
    y = waves[PS_FILES[0]][0]
    tensors[f"80_torch_path/{PS_FILES[0]}"] = f32(whisper_default(fe80, y)[:, : n_keep(len(y))])
    y = waves[WHISPER_128_FILE][0]
    f128 = whisper_numpy(fe128, y)
    assert f128.shape == (128, 3000)
    tensors[f"128/{WHISPER_128_FILE}"] = f32(f128[:, : n_keep(len(y))])
    tensors[f"128_col2999/{WHISPER_128_FILE}"] = f32(f128[:, 2999])

    # 40 s input: concatenated recordings, trimmed to 30 s by the extractor.
    cat = np.concatenate([waves[p][0] for p in PS_FILES + PS_FILES])[:LONG40_SAMPLES]
    assert len(cat) == LONG40_SAMPLES
    f40 = whisper_numpy(fe80, cat)
    f30 = whisper_numpy(fe80, cat[:480000])
    assert np.array_equal(f40, f30)
    tensors["80_long40/first100"] = f32(f40[:, :100])
    tensors["80_long40/last100"] = f32(f40[:, 2900:])
    meta["long40"] = {
        "recipe": "np.concatenate([soundfile float32 of f] for f in files + files)[:640000]",
        "files": PS_FILES,
        "n_samples": LONG40_SAMPLES,
        "stored": "80_long40/first100 = frames 0..99, 80_long40/last100 = frames 2900..2999",
        "equals_features_of_first_480000_samples": True,
        "torch_path_max_abs_diff": float(np.abs(whisper_default(fe80, cat).astype(np.float64) - f40).max()),
    }

    # --- torchaudio resample (Asterisk 8 kHz -> 16 kHz) --------------------------
    rs = {}
    rs_meta = {}
    for p in AST_FILES:
        y, sr = waves[p]
        assert sr == 8000
        y16 = AF.resample(torch.from_numpy(y)[None], 8000, 16000)[0].numpy()
        assert y16.dtype == np.float32 and len(y16) == 2 * len(y)
        rs[f"resampled/{p}"] = f32(y16)
        ref64 = resample_ref_f64(y)
        assert len(ref64) == len(y16)
        rs_diff = float(np.abs(ref64 - y16).max())
        feats = whisper_numpy(fe80, y16)
        tensors[f"80/{p}@16k"] = f32(feats[:, : n_keep(len(y16))])
        tensors[f"80_col2999/{p}@16k"] = f32(feats[:, 2999])
        rs_meta[p] = {
            "n_in": int(len(y)),
            "n_out": int(len(y16)),
            "whisper_frames_stored": n_keep(len(y16)),
            "max_abs_diff_vs_float64_writeup": rs_diff,
        }
    gcd = math.gcd(8000, 16000)
    kernel, width = AF.functional._get_sinc_resample_kernel(
        8000, 16000, gcd, 6, 0.99, "sinc_interp_hann", None, torch.device("cpu"), torch.float32
    )
    rs["kernel_f32"] = f32(kernel.numpy())  # [2, 1, 15]
    kernel64, _ = AF.functional._get_sinc_resample_kernel(
        8000, 16000, gcd, 6, 0.99, "sinc_interp_hann", None, torch.device("cpu"), torch.float64
    )
    rs["kernel_f64"] = kernel64.numpy().astype(np.float64)
    save_tensors(os.path.join(d, "resample.safetensors"), rs)
    meta["resample"] = {
        "call": "torchaudio.functional.resample(torch.from_numpy(y)[None], 8000, 16000)[0]",
        "defaults": {"lowpass_filter_width": 6, "rolloff": 0.99, "resampling_method": "sinc_interp_hann"},
        "gcd": gcd,
        "width": int(width),
        "kernel_shape": list(kernel.shape),
        "files": rs_meta,
    }
    save_tensors(os.path.join(d, "whisper_features.safetensors"), tensors)
    meta["extractor"] = {k: v for k, v in fe80.to_dict().items() if k != "mel_filters"}
    meta["call"] = (
        'WhisperFeatureExtractor(feature_size=N)(y, sampling_rate=16000, return_tensors="np")'
        ".input_features[0], numpy STFT path (is_torch_available patched to False)"
    )
    meta["frames_stored_rule"] = "min(ceil(n_samples / 160) + 4, 3000) leading frames"
    write_json(os.path.join(d, "whisper.json"), meta)

    # --- librosa ----------------------------------------------------------------
    y = waves[LIBROSA_FILE][0]
    mel = librosa.feature.melspectrogram(y=y, sr=16000)
    mfcc = librosa.feature.mfcc(y=y, sr=16000, n_mfcc=13)
    assert mel.dtype == np.float32 and mfcc.dtype == np.float32
    save_tensors(os.path.join(d, "librosa.safetensors"), {"mel": mel, "mfcc": mfcc})
    write_json(
        os.path.join(d, "librosa.json"),
        {
            "file": LIBROSA_FILE,
            "calls": {
                "mel": "librosa.feature.melspectrogram(y=y, sr=16000)",
                "mfcc": "librosa.feature.mfcc(y=y, sr=16000, n_mfcc=13)",
            },
            "effective_params": {
                "n_fft": 2048,
                "hop_length": 512,
                "win_length": 2048,
                "window": "hann (scipy.signal.get_window, fftbins=True: periodic)",
                "center": True,
                "pad_mode": "constant (zeros)",
                "power": 2.0,
                "n_mels": 128,
                "fmin": 0.0,
                "fmax": 8000.0,
                "htk": False,
                "norm": "slaney",
                "mfcc": {"dct_type": 2, "norm": "ortho", "lifter": 0, "power_to_db": {"ref": 1.0, "amin": 1e-10, "top_db": 80.0}},
            },
            "shapes": {"mel": list(mel.shape), "mfcc": list(mfcc.shape)},
            "n_samples": int(len(y)),
        },
    )

    # --- Silero -----------------------------------------------------------------
    silero_fixtures(d, waves)
    print(f"audio fixtures -> {d} (assets {root})")


if __name__ == "__main__":
    main()
