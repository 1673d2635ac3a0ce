#!/usr/bin/env python3
"""gen_quant_fixtures.py - golden data for tests/test_quant.c.

For each weight type: random blocks (random quant bytes, random but finite
scales) and the f32 values PyPI's `gguf` package (ggml's Python port of the
dequantizers) decodes them to.  Deterministic (fixed seed).

Usage:  pip install gguf numpy
        python3 tests/golden/gen_quant_fixtures.py tests/golden/quant

File format (little-endian), one file per type, <name>.bin:
    char     magic[8]      "ENGQFIX1"
    char     version[16]   "gguf X.Y.Z", NUL padded: the package that made it
    uint32   type          ggml type id
    uint32   n_elems
    uint32   n_bytes
    uint8    data[n_bytes] the blocks
    float32  want[n_elems] their values according to gguf
"""
import struct
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

try:
    from importlib.metadata import version as pkg_version
    GGUF_VERSION = pkg_version("gguf")
except Exception:  # pragma: no cover
    GGUF_VERSION = getattr(gguf, "__version__", "unknown")

rng = np.random.default_rng(20261128)


def rand_f16(n):
    """Finite halves of varied sign and magnitude, as raw bytes."""
    v = rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-4, 0.5, n)
    return v.astype(np.float16).view(np.uint8).reshape(n, 2)


# (type, blocks, offsets of f16 fields within a block)
FORMATS = [
    (T.Q4_0, 64, [0]),
    (T.Q4_1, 64, [0, 2]),
    (T.Q5_0, 64, [0]),
    (T.Q5_1, 64, [0, 2]),
    (T.Q8_0, 64, [0]),
    (T.Q2_K, 8, [80, 82]),
    (T.Q3_K, 8, [108]),
    (T.Q4_K, 8, [0, 2]),
    (T.Q5_K, 8, [0, 2]),
    (T.Q6_K, 8, [208]),
]


def quant_blocks(qtype, nblk, f16_offsets):
    blck, size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (nblk, size), dtype=np.uint8)
    for off in f16_offsets:
        raw[:, off:off + 2] = rand_f16(nblk)
    return raw.reshape(-1), nblk * blck


def float_data(qtype, n):
    if qtype == T.F32:
        v = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(np.float32)
        return v.view(np.uint8), n
    if qtype == T.F16:
        h = rng.integers(0, 0x10000, n, dtype=np.uint32).astype(np.uint16)
        h = np.where((h & 0x7C00) == 0x7C00, h & 0x83FF, h)  # no inf/NaN
        h[:6] = [0x0000, 0x8000, 0x0001, 0x03FF, 0x7BFF, 0xFBFF]
        return h.astype(np.uint16).view(np.uint8), n
    if qtype == T.BF16:
        v = (rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)).astype(np.float32)
        h = (v.view(np.uint32) >> 16).astype(np.uint16)
        return h.view(np.uint8), n
    raise ValueError(qtype)


def write(outdir, qtype, data, n):
    want = dequantize(data, qtype).astype(np.float32).reshape(-1)
    assert want.size == n, (qtype, want.size, n)
    name = qtype.name.lower().replace("_k", "_K")
    head = b"ENGQFIX1" + f"gguf {GGUF_VERSION}".encode().ljust(16, b"\0")[:16]
    head += struct.pack("<III", int(qtype), n, data.size)
    (outdir / f"{name}.bin").write_bytes(head + data.tobytes() + want.astype("<f4").tobytes())


def main():
    outdir = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/golden/quant")
    outdir.mkdir(parents=True, exist_ok=True)
    for qtype, nblk, offs in FORMATS:
        data, n = quant_blocks(qtype, nblk, offs)
        write(outdir, qtype, data, n)
    for qtype in (T.F32, T.F16, T.BF16):
        data, n = float_data(qtype, 256)
        write(outdir, qtype, data, n)
    print(f"wrote fixtures with gguf {GGUF_VERSION} to {outdir}")


if __name__ == "__main__":
    main()
