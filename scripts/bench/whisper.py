"""Whisper tiny.en WER and real-time factor, Mosaic vs faster-whisper, same files, same threads.

    MOSAIC_HOME=... BENCH_THREADS=2 .venv-ref/bin/python scripts/bench/whisper.py [--beam-sizes 1,5] [--blocks 6]

Mosaic runs as `target/release/examples/whisper_eval` (build it first: scripts/bench/whisper.sh does),
faster-whisper 1.2.1 / CTranslate2 4.8.5 in this process (float32, cpu_threads=BENCH_THREADS). Both
transcribe every pocketsphinx-testdata recording with a transcript (10) and every Asterisk
en_US_f_Allison prompt (568) with language en, temperature 0 only, no previous-text prompt, no VAD,
the given beam size. The file list is cut into blocks and the two systems alternate block by
block, so both see the same machine load on average (this VM is shared). Timing: wall time of
transcribe per file (features + encoder + decoding; audio decoding/resampling and model loading
excluded), one untimed warm-up call per process.

WER is corpus-level (S + D + I) / reference words, files with an empty normalised reference left
out, with two normalisations of both sides: `simple` (the fixtures' one, computed by Mosaic
itself for its own output and re-computed here as a check) and `whisper_english`
(transformers' EnglishTextNormalizer, OpenAI's English normaliser: numbers to digits,
contractions expanded, ...).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

repo = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(repo / "scripts" / "reference"))
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("BENCH_THREADS", "2"))

import make_whisper_fixtures as ref  # noqa: E402  (inputs, transcripts, simple normaliser)
import jiwer  # noqa: E402
from faster_whisper import WhisperModel  # noqa: E402
from transformers.models.whisper.english_normalizer import EnglishTextNormalizer  # noqa: E402

threads = int(os.environ.get("BENCH_THREADS", "2"))


def arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def wer(items, texts, norm):
    refs, hyps = [], []
    for it, h in zip(items, texts):
        r = norm(it["reference"])
        if r:
            refs.append(r)
            hyps.append(norm(h))
    o = jiwer.process_words(refs, hyps)
    return dict(wer=o.wer, files=len(refs), ref_words=o.hits + o.substitutions + o.deletions,
                substitutions=o.substitutions, deletions=o.deletions, insertions=o.insertions)


def main():
    beams = [int(b) for b in arg("--beam-sizes", "1,5").split(",")]
    blocks = int(arg("--blocks", "6"))
    exe = repo / "target" / "release" / "examples" / "whisper_eval"
    assert exe.exists(), f"build {exe} first (scripts/bench/whisper.sh)"
    items = ref.load_pocketsphinx() + ref.load_asterisk()[0]
    audio = [ref.read_16k(it["file"])[0] for it in items]
    mdir = ref.asset("whisper-tiny-en")
    wm = WhisperModel(mdir, device="cpu", compute_type="float32", cpu_threads=threads)
    list(wm.transcribe(audio[0], language="en")[0])  # warm-up
    eng = EnglishTextNormalizer({})
    results = {}
    for beam in beams:
        kw = dict(language="en", beam_size=beam, best_of=1, temperature=0.0, condition_on_previous_text=False,
                  without_timestamps=False, vad_filter=False, word_timestamps=False)
        fw_text, fw_secs, mo_text, mo_secs = [None] * len(items), [0.0] * len(items), [None] * len(items), [0.0] * len(items)
        mo_wer_rust = {}
        n = len(items)
        bounds = [round(i * n / blocks) for i in range(blocks + 1)]
        for b in range(blocks):
            lo, hi = bounds[b], bounds[b + 1]
            with tempfile.TemporaryDirectory() as td:
                lst = Path(td) / "files.txt"
                lst.write_text("\n".join(it["file"] for it in items[lo:hi]) + "\n")
                out = Path(td) / "out.json"
                env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
                subprocess.run([str(exe), "--beam-size", str(beam), "--files", str(lst), "--out", str(out)],
                               env=env, check=True, stderr=subprocess.DEVNULL)
                doc = json.loads(out.read_text())
            for i, f in enumerate(doc["files"]):
                assert f["file"] == items[lo + i]["file"]
                mo_text[lo + i] = f["text"]
                mo_secs[lo + i] = f["seconds"]
            for s, w in doc["wer"].items():
                acc = mo_wer_rust.setdefault(s, [0, 0])
                acc[0] += w["substitutions"] + w["deletions"] + w["insertions"]
                acc[1] += w["ref_words"]
            for i in range(lo, hi):
                t0 = time.perf_counter()
                segs = list(wm.transcribe(audio[i], **kw)[0])
                fw_secs[i] = time.perf_counter() - t0
                fw_text[i] = "".join(s.text for s in segs)
            print(f"beam {beam}: block {b + 1}/{blocks} done", flush=True)
        res = {}
        for name, pred in [("pocketsphinx", lambda it: it["set"].startswith("pocketsphinx")),
                           ("asterisk", lambda it: it["set"] == "asterisk")]:
            idx = [i for i, it in enumerate(items) if pred(it)]
            sub = [items[i] for i in idx]
            audio_s = sum(len(audio[i]) / 16000 for i in idx)
            res[name] = dict(
                audio_s=audio_s,
                mosaic=dict(seconds=sum(mo_secs[i] for i in idx),
                            wer_simple_by_mosaic=mo_wer_rust[name][0] / mo_wer_rust[name][1],
                            wer_simple=wer(sub, [mo_text[i] for i in idx], ref.norm_simple),
                            wer_whisper_english=wer(sub, [mo_text[i] for i in idx], eng)),
                faster_whisper=dict(seconds=sum(fw_secs[i] for i in idx),
                                    wer_simple=wer(sub, [fw_text[i] for i in idx], ref.norm_simple),
                                    wer_whisper_english=wer(sub, [fw_text[i] for i in idx], eng)),
                same_text_files=sum(1 for i in idx if mo_text[i] == fw_text[i]), files=len(idx))
        tot_audio = sum(len(a) for a in audio) / 16000
        res["all"] = dict(audio_s=tot_audio, mosaic_seconds=sum(mo_secs), faster_whisper_seconds=sum(fw_secs),
                          mosaic_rtf=sum(mo_secs) / tot_audio, faster_whisper_rtf=sum(fw_secs) / tot_audio,
                          same_text_files=sum(1 for a, b in zip(mo_text, fw_text) if a == b), files=len(items))
        results[beam] = res
    print(json.dumps(results, indent=1))
    print()
    print("| decoding | set | files | WER Mosaic (simple / Whisper norm.) | WER faster-whisper (simple / Whisper norm.) "
          "| same text | RTF Mosaic | RTF faster-whisper | Mosaic / faster-whisper |")
    print("|---|---|---|---|---|---|---|---|---|")
    for beam, res in results.items():
        label = "greedy" if beam == 1 else f"beam {beam}"
        for name in ["pocketsphinx", "asterisk"]:
            r = res[name]
            m, f = r["mosaic"], r["faster_whisper"]
            print(f"| {label} | {name} | {r['files']} | {100 * m['wer_simple_by_mosaic']:.1f} % / "
                  f"{100 * m['wer_whisper_english']['wer']:.1f} % | {100 * f['wer_simple']['wer']:.1f} % / "
                  f"{100 * f['wer_whisper_english']['wer']:.1f} % | {r['same_text_files']}/{r['files']} | "
                  f"{m['seconds'] / r['audio_s']:.3f} | {f['seconds'] / r['audio_s']:.3f} | "
                  f"{m['seconds'] / f['seconds']:.2f} |")
        a = res["all"]
        print(f"| {label} | all | {a['files']} | | | {a['same_text_files']}/{a['files']} | {a['mosaic_rtf']:.3f} | "
              f"{a['faster_whisper_rtf']:.3f} | {a['mosaic_seconds'] / a['faster_whisper_seconds']:.2f} |")
    out = repo / "target" / "bench-whisper.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"\n(results: {out})")


if __name__ == "__main__":
    main()
