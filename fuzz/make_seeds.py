#!/usr/bin/env python3
"""Writes the committed seed corpus: fuzz/corpus/<target>/seed-*. Deterministic; rerun to
regenerate. codec_decode gets valid encodings of every tag; the structured targets (inputs
decoded with `arbitrary`) get byte patterns that decode to short, varied operation lists
(or, for codec_round_trip, values)."""
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


# codec_decode: one valid encoding per tag (codec version 2, see src/codec.rs), containers
# of every kind holding the narrow element forms, and a reject.
def narrow_int(n):
    for tag, fmt in ((0x15, "<b"), (0x16, "<h"), (0x17, "<i"), (0x03, "<q")):
        try:
            return bytes([tag]) + struct.pack(fmt, n)
        except struct.error:
            continue


def narrow_str(text):
    data = text.encode()
    return (bytes([0x18, len(data)]) + data) if len(data) < 256 else body(0x05, data)


def container(tag, items):
    return bytes([tag]) + struct.pack("<I", len(items)) + b"".join(items)


clock = bytes([23, 59, 58, 1]) + struct.pack("<I", 999_999)
date = struct.pack("<H", 2024) + bytes([2, 29])
named_tz = b"\x02" + struct.pack("<q", -(5 * 3600 + 30 * 60) * 10**6) + body(0, b"EST")[1:]
top_level = [
    b"\x00", b"\x01", b"\x02",
    b"\x03" + struct.pack("<q", -42),
    b"\x04" + struct.pack("<d", -0.0),
    body(0x05, "héllo".encode()),
    body(0x06, b"\x00\xff"),
    body(0x0D, bytes(8) + b"\x80\x00"),  # 2**71
    body(0x0E, b"mutable"),
    b"\x0f" + date,
    b"\x10" + clock + b"\x00",
    b"\x11" + date + clock + named_tz,
    b"\x11" + date + clock + b"\x01" + struct.pack("<q", 0),  # timezone.utc
    b"\x12" + struct.pack("<iII", -3, 5, 7),
    body(0x13, b"-1.10E-7"),
    b"\x14" + bytes(range(16)) + b"\x01",
]
for i, s in enumerate(top_level):
    write("codec_decode", f"leaf{i}", s)
elements = [narrow_int(n) for n in (0, -128, 300, -70000, 2**40)]
elements += [narrow_str("a"), b"\x19\x02\x00\xff", b"\x00", b"\x04" + struct.pack("<d", 1.5)]
write("codec_decode", "tuple", container(0x07, elements))
write("codec_decode", "list", container(0x09, elements))
write("codec_decode", "set", container(0x0B, elements))
write("codec_decode", "frozenset", container(0x0C, [container(0x07, elements[:3])]))
pairs = [narrow_str("id"), narrow_int(7), narrow_str("tags"), container(0x09, elements[5:7])]
write("codec_decode", "dict", bytes([0x0A]) + struct.pack("<I", 2) + b"".join(pairs))
write("codec_decode", "nested", container(0x09, [container(0x07, [container(0x09, [])])]))
write("codec_decode", "pickle", body(0x08, b"\x80\x05K\x01."))
write("codec_decode", "reject-wide-element", container(0x09, [b"\x03" + struct.pack("<q", 5)]))

# Structured targets: pseudo-random bytes of a few lengths, biased to small values.
rng = random.Random(6)
for target in ("store_ops", "region_open", "codec_round_trip"):
    for i, n in enumerate((16, 64, 256, 1024)):
        write(target, f"random{i}", bytes(rng.randrange(0, 16 if j % 3 else 256) for j in range(n)))
