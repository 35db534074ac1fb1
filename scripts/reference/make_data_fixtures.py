#!/usr/bin/env python3
"""Write every mosaic-data parity fixture (image, audio, text, align).

    MOSAIC_HOME=~/.cache/mosaic .venv-ref/bin/python scripts/reference/make_data_fixtures.py [FIXTURES_ROOT] [--only image,audio,...]

FIXTURES_ROOT defaults to crates/mosaic-data/tests/fixtures. Each part is a
separate script (make_{image,audio,text,align}_fixtures.py) run in its own
process, so they can also be run one by one. Needs the assets skimage-photos,
pocketsphinx-testdata, asterisk-sounds, minilm-l6-v2, whisper-tiny-en and
silero-vad under $MOSAIC_HOME/assets/, and the venv from setup-venv.sh.
Outputs are deterministic: rerunning rewrites byte-identical files.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PARTS = ["image", "audio", "text", "align"]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--only")]
    only = PARTS
    for a in sys.argv[1:]:
        if a.startswith("--only"):
            only = a.split("=", 1)[1].split(",") if "=" in a else PARTS
    for part in only:
        script = os.path.join(HERE, f"make_{part}_fixtures.py")
        print(f"== {part}", flush=True)
        subprocess.run([sys.executable, script, *args], check=True)


if __name__ == "__main__":
    main()
