#!/usr/bin/env python3
"""Writes the committed seed corpus: fuzz/corpus/<target>/seed-*. Deterministic; rerun to
regenerate. codec_decode gets valid encodings of every tag; the structured targets (inputs
decoded with `arbitrary`) get byte patterns that decode to short, varied operation lists."""
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    path = os.path.join(HERE, "corpus", target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "seed-" + name), "wb") as f:
        f.write(data)


def body(tag, data):
    return bytes([tag]) + struct.pack("<I", len(data)) + data


# codec_decode: one valid encoding per tag, a flat tuple of all scalars, and a reject.
scalars = [
    b"\x00", b"\x01", b"\x02",
    b"\x03" + struct.pack("<q", -42),
    b"\x04" + struct.pack("<d", -0.0),
    body(0x05, "héllo".encode()),
    body(0x06, b"\x00\xff"),
]
for i, s in enumerate(scalars):
    write("codec_decode", f"scalar{i}", s)
write("codec_decode", "tuple", b"\x07" + struct.pack("<I", len(scalars)) + b"".join(scalars))
write("codec_decode", "pickle", body(0x08, b"\x80\x05K\x01."))
write("codec_decode", "nested-tuple", b"\x07\x01\x00\x00\x00\x07\x00\x00\x00\x00")

# Structured targets: pseudo-random bytes of a few lengths, biased to small values.
rng = random.Random(6)
for target in ("store_ops", "region_open"):
    for i, n in enumerate((16, 64, 256, 1024)):
        write(target, f"random{i}", bytes(rng.randrange(0, 16 if j % 3 else 256) for j in range(n)))
