#!/usr/bin/env python3
"""Write small PyTorch checkpoint fixtures for mosaic-core's .pth reader tests.

Run with the reference venv (see setup-venv.sh):

    .venv-ref/bin/python scripts/reference/make_pth_fixtures.py [OUT_DIR]

OUT_DIR defaults to crates/mosaic-core/tests/fixtures/pth/. Files written:

  zip_state_dict.pth     torch.save default (zip) format, flat state dict
  legacy_state_dict.pth  same dict, _use_new_zipfile_serialization=False
  nested_checkpoint.pth  legacy format, {"epoch", "state_dict", "optimizer"}
  bad_opcode.pth         legacy_state_dict.pth with one opcode byte set to 0xFF
  expected.json          dtype / shape / logical row-major values per tensor

All values are fixed (no RNG). Byte-for-byte output is NOT reproducible across
runs: the legacy format names storages by their C pointer (str(storage._cdata)),
so regenerate expected.json together with the .pth files.

expected.json layout:

  {
    "torch_version": "...",
    "files": {
      "<file>.pth": {
        "format": "zip" | "legacy",
        "tensors": {
          "<dotted.key>": {
            "dtype": "float32",      # torch dtype name without "torch."
            "shape": [2, 3],         # [] for 0-dim tensors
            "stride": [3, 1],        # element strides as saved
            "storage_offset": 0,     # element offset into the storage
            "values": [...]          # logical row-major order; f16/bf16 as
                                     # the exact float they hold
          }, ...
        },
        "scalars": {"<dotted.key>": value, ...}   # non-tensor leaves
      }
    },
    "bad_opcode": {"file": "bad_opcode.pth", "source": "legacy_state_dict.pth",
                   "offset": N, "original_byte": 128, "new_byte": 255}
  }

Keys inside nested dicts are joined with "." (e.g. "state_dict.fc.weight").
"""

import io
import json
import os
import pickle
import sys
from collections import OrderedDict

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO_ROOT, "crates", "mosaic-core", "tests", "fixtures", "pth")
MAX_FILE_BYTES = 10 * 1024


def make_state_dict():
    # Two views into the same 10-element storage, both with nonzero offsets.
    base = torch.arange(10, dtype=torch.float32)  # 0..9
    shared_a = base[2:6]  # offset 2, values 2..5
    shared_b = base[5:]  # offset 5, values 5..9 (overlaps shared_a at 5.0)

    # Non-contiguous: transpose of a 3x4 -> shape [4, 3], stride [1, 4].
    noncontig = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
    assert not noncontig.is_contiguous()

    sd = OrderedDict()
    sd["layer.0.weight"] = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    sd["layer.0.bias"] = torch.tensor([0.5, -1.5, 2.25, 1024.0], dtype=torch.float16)
    sd["layer.1.weight"] = torch.tensor([1.0, -2.5, 3.140625], dtype=torch.bfloat16)
    sd["layer.1.index"] = torch.tensor([0, -1, 2, 2**40, -(2**62)], dtype=torch.int64)
    sd["scale"] = torch.tensor(3.141592653589793, dtype=torch.float64)  # 0-dim
    sd["mask"] = torch.tensor([True, False, True], dtype=torch.bool)
    sd["bytes"] = torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8)
    sd["layer.2.weight_t"] = noncontig
    sd["shared.a"] = shared_a
    sd["shared.b"] = shared_b
    return sd


def make_nested_checkpoint():
    state_dict = OrderedDict()
    state_dict["fc.weight"] = torch.tensor([[1.0, -2.0], [0.25, 4.0]], dtype=torch.float32)
    state_dict["fc.bias"] = torch.tensor([0.125, -0.5], dtype=torch.float32)
    return {"epoch": 3, "state_dict": state_dict, "optimizer": {"lr": 0.1}}


def describe(obj, prefix=""):
    """Flatten nested dicts into ({dotted: tensor_info}, {dotted: scalar})."""
    tensors, scalars = {}, {}
    for key, value in obj.items():
        path = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            if value.dtype in (torch.float16, torch.bfloat16):
                values = value.to(torch.float64).reshape(-1).tolist()
            else:
                values = value.reshape(-1).tolist()  # reshape copies in logical order
            tensors[path] = {
                "dtype": str(value.dtype).removeprefix("torch."),
                "shape": list(value.shape),
                "stride": list(value.stride()),
                "storage_offset": value.storage_offset(),
                "values": values,
            }
        elif isinstance(value, dict):
            t, s = describe(value, prefix=f"{path}.")
            tensors.update(t)
            scalars.update(s)
        else:
            scalars[path] = value
    return tensors, scalars


def legacy_pickle_offset(data: bytes) -> int:
    """Byte offset where the main (object) pickle starts in a legacy .pth.

    _legacy_save writes, back to back: pickle(MAGIC_NUMBER), pickle(PROTOCOL_VERSION),
    pickle(sys_info), pickle(obj), pickle(storage_keys), then raw storages.
    Unpickling the first three leaves the stream at the start of pickle(obj).
    """
    f = io.BytesIO(data)
    magic = pickle.load(f)
    assert magic == 0x1950A86A20F9469CFC6C, magic
    assert pickle.load(f) == 1001  # PROTOCOL_VERSION
    sys_info = pickle.load(f)
    assert isinstance(sys_info, dict) and "little_endian" in sys_info
    return f.tell()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    os.makedirs(out, exist_ok=True)

    sd = make_state_dict()
    ckpt = make_nested_checkpoint()

    zip_path = os.path.join(out, "zip_state_dict.pth")
    legacy_path = os.path.join(out, "legacy_state_dict.pth")
    nested_path = os.path.join(out, "nested_checkpoint.pth")
    bad_path = os.path.join(out, "bad_opcode.pth")

    torch.save(sd, zip_path)
    torch.save(sd, legacy_path, _use_new_zipfile_serialization=False)
    torch.save(ckpt, nested_path, _use_new_zipfile_serialization=False)

    # bad_opcode.pth: corrupt the first opcode of the main (state-dict) pickle.
    # That pickle begins right after the magic-number, protocol-version and
    # sys_info pickles (offset found by unpickling those three). Its first byte
    # is the PROTO opcode 0x80 (protocol 2, followed by 0x02); we overwrite it
    # with 0xFF, which is not an opcode in any pickle protocol, so an unpickler
    # must fail right there. Everything else (including the three header pickles
    # and the storage data) is untouched.
    legacy = bytearray(open(legacy_path, "rb").read())
    bad_offset = legacy_pickle_offset(bytes(legacy))
    original = legacy[bad_offset]
    assert original == 0x80 and legacy[bad_offset + 1] == 2, (original, legacy[bad_offset + 1])
    legacy[bad_offset] = 0xFF
    with open(bad_path, "wb") as f:
        f.write(legacy)

    expected = {"torch_version": torch.__version__.split("+")[0], "files": {}}
    for name, fmt, obj in [
        ("zip_state_dict.pth", "zip", sd),
        ("legacy_state_dict.pth", "legacy", sd),
        ("nested_checkpoint.pth", "legacy", ckpt),
    ]:
        path = os.path.join(out, name)
        # Round-trip with the restricted loader: what we describe is what torch reads.
        loaded = torch.load(path, weights_only=True)
        tensors, scalars = describe(loaded)
        ref_tensors, ref_scalars = describe(obj)
        assert tensors == ref_tensors, name
        assert scalars == ref_scalars, name
        expected["files"][name] = {"format": fmt, "tensors": tensors, "scalars": scalars}

    # The views must really share storage after loading.
    loaded = torch.load(zip_path, weights_only=True)
    assert loaded["shared.a"].untyped_storage().data_ptr() == loaded["shared.b"].untyped_storage().data_ptr()
    assert (loaded["shared.a"].storage_offset(), loaded["shared.b"].storage_offset()) == (2, 5)
    assert loaded["layer.2.weight_t"].stride() == (1, 4)

    try:
        torch.load(bad_path, weights_only=False)
    except pickle.UnpicklingError:
        pass
    else:
        raise AssertionError("bad_opcode.pth unexpectedly loaded")

    expected["bad_opcode"] = {
        "file": "bad_opcode.pth",
        "source": "legacy_state_dict.pth",
        "offset": bad_offset,
        "original_byte": original,
        "new_byte": 0xFF,
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")

    for name in sorted(os.listdir(out)):
        size = os.path.getsize(os.path.join(out, name))
        assert size < MAX_FILE_BYTES, (name, size)
        print(f"{size:6d}  {name}")
    print(f"bad_opcode.pth: byte {bad_offset} 0x{original:02x} -> 0xff")


if __name__ == "__main__":
    main()
