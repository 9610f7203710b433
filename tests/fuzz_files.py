"""Hostile fastnn files, for fuzzing the four loaders (fastnn.load, fastnn.inference.load,
Trainer.from_checkpoint, Ensemble.load).

``hostile(rng, kind)`` turns a valid file of ``kind`` ('model', 'checkpoint', 'ensemble') into
a mutated one and says how: bit flips, byte splices, truncation, member renames (to names that
are not UTF-8 too), duplicates and drops, compression bombs of every zip method (deflate,
bzip2, lzma) with true or lying declared sizes, huge shapes, bad JSON numbers (1e400, a
400-digit integer, NaN, Infinity, negative counts), broken ``.npy`` headers and a corrupt
central directory. tests/test_fuzz.py draws from it with hypothesis; a long campaign runs as

    python tests/fuzz_files.py --cases 100000          # or: pytest -m fuzz tests/test_fuzz.py

and reports the cases, the outcome per loader and exception type, the peak memory
(resource.getrusage) and the time. The target: no exception other than ModelFormatError,
peak memory under 200 MB.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import lzma
import os
import resource
import struct
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from collections import Counter

import numpy as np

#: Inflated size of the bombs (bytes): far above any cap a loader derives for the small files.
BOMB_BYTES = 64 << 20
KINDS = ("model", "checkpoint", "ensemble")


# ------------------------------------------------------------------ valid files
@functools.cache
def valid_file(kind):
    """The bytes of a small, valid fastnn file of ``kind`` (built once)."""
    import fastnn as fnn

    folder = tempfile.mkdtemp(prefix="fastnn-fuzz-")
    path = os.path.join(folder, f"{kind}.fnn")
    model = fnn.Sequential([fnn.layers.Dense(4, activation="relu"), fnn.layers.BatchNorm(), fnn.layers.Dropout(0.2),
                            fnn.layers.Dense(3, activation="softmax")], input_dim=5, seed=0)
    if kind == "model":
        model.save(path)
    elif kind == "checkpoint":
        trainer = fnn.Trainer(model, "cross_entropy", fnn.optim.Adam(1e-2), augment=fnn.augment.GaussianNoise(0.1))
        trainer.fit(np.ones((6, 5), np.float32), np.arange(6) % 3, epochs=1, verbose=0)
        trainer.save_checkpoint(path)
    else:
        other = fnn.Sequential([fnn.layers.Dense(3, activation="softmax")], input_dim=5, seed=1)
        fnn.Ensemble([model, other]).save(path)
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    os.rmdir(folder)
    return data


def members(data):
    """[(name, bytes)] of a valid archive."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def build(entries):
    """A zip of ``entries`` [(name, bytes, method)] (duplicates allowed: zipfile only warns)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w") as zf:
            for name, payload, method in entries:
                zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), payload, compress_type=method)
    return buf.getvalue()


# ------------------------------------------------------------------ bombs
@functools.cache
def _bomb_stream(method):
    """(compressed bytes, CRC) of BOMB_BYTES zeros, compressed as a zip member of ``method``."""
    import bz2

    chunk = bytes(1 << 20)
    if method == zipfile.ZIP_DEFLATED:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        prefix = b""
    elif method == zipfile.ZIP_BZIP2:
        c = bz2.BZ2Compressor(9)
        prefix = b""
    else:
        props = lzma._encode_filter_properties({"id": lzma.FILTER_LZMA1, "dict_size": 1 << 20})
        c = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA1, "dict_size": 1 << 20}])
        prefix = struct.pack("<BBH", 9, 4, len(props)) + props
    out = bytearray(prefix)
    crc = 0
    for _ in range(BOMB_BYTES // len(chunk)):
        out += c.compress(chunk)
        crc = zlib.crc32(chunk, crc)
    out += c.flush()
    return bytes(out), crc


def bomb_zip(entries, target, method, declared):
    """``entries`` with member ``target`` replaced by a bomb of ``method`` declaring ``declared``
    inflated bytes (the truth, BOMB_BYTES, or a lie)."""
    raw, crc = _bomb_stream(method)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w") as zf:
            for name, payload, m in entries:
                if name != target:
                    zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), payload, compress_type=m)
                    continue
                info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
                info.compress_type = method
                info.file_size, info.compress_size, info.CRC = declared, len(raw), crc
                # write the header and the stored raw stream by hand, as zipfile would
                info.header_offset = buf.tell()
                buf.write(info.FileHeader(zip64=False))
                buf.write(raw)
                zf.start_dir = buf.tell()
                zf.filelist.append(info)
                zf.NameToInfo[info.filename] = info
    return buf.getvalue()


# ------------------------------------------------------------------ mutations
def _json_members(entries):
    return [i for i, (name, _, _) in enumerate(entries) if name.endswith(".json")]


_BAD_NUMBERS = ["1e400", "-1e400", "1" + "0" * 400, "NaN", "Infinity", "-Infinity", "-1", "0", "2.5", "1e18",
                "18446744073709551616", "true", "null", "\"x\"", "[]", "{}", "4294967296"]


def _mutate_json(rng, text):
    """Replace one random number, string or literal in JSON ``text`` by a bad value."""
    import re

    spots = [m.span() for m in re.finditer(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\"[^\"]*\"|true|false|null", text)]
    if not spots:
        return text + "}"
    start, end = spots[rng.integers(len(spots))]
    return text[:start] + _BAD_NUMBERS[rng.integers(len(_BAD_NUMBERS))] + text[end:]


def _huge_shape(rng, text):
    doc = json.loads(text)
    big = int(rng.choice([2**31, 2**40, 10**12, 2**62, 2**64 + 1]))
    if "model" in doc:
        layers = doc["model"]["layers"]
        layer = layers[rng.integers(len(layers))]
        if "units" in layer.get("config", {}):
            layer["config"]["units"] = big
        else:
            doc["model"]["input_dim"] = big
        if doc.get("arrays"):
            doc["arrays"][rng.integers(len(doc["arrays"]))]["shape"] = [big]
    elif "state" in doc:
        doc["state"]["optimizer"]["shape"] = [big]
    else:
        doc["members"] = [f"members/{i}.fnn" for i in range(int(min(big, 5000)))]
    return json.dumps(doc)


def _bad_npy(rng, payload):
    choices = [
        payload[:10] + b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,",  # unclosed header
        payload[:8] + struct.pack("<H", 60000) + payload[10:],  # header length past the end
        b"\x93NUMPY\x09\x00" + payload[8:],  # unknown version
        payload.replace(b"'<f4'", b"'|O' ") if b"'<f4'" in payload else payload[:20],
        payload.replace(b"False", b"True "),  # fortran order
        payload.replace(b"'shape': (", b"'shape': (99999999999, "),
        payload[:10] + b"{'descr': __import__('os'), 'shape': ()}\n",
        payload[:10] + b"\xff\xfe" * 20,
    ]
    return choices[rng.integers(len(choices))]


def _central_directory(rng, data):
    raw = bytearray(data)
    end = raw.rfind(b"PK\x05\x06")
    if end < 0:
        return bytes(raw)
    field = int(rng.choice([10, 12, 16]))  # entries, size, offset of the central directory
    width = 2 if field == 10 else 4
    raw[end + field:end + field + width] = rng.integers(0, 256, width, dtype=np.uint8).tobytes()
    return bytes(raw)


def flag_names_utf8(data, byte=0xFF, every=False):
    """Flag the first member name (``every``: every one) as UTF-8 while making its first byte
    ``byte`` (0xFF: invalid UTF-8), in the local header and the central directory."""
    raw = bytearray(data)
    for sig, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        pos = raw.find(sig)
        while pos >= 0:
            flags = struct.unpack_from("<H", raw, pos + flag_at)[0] | 0x800
            struct.pack_into("<H", raw, pos + flag_at, flags)
            raw[pos + name_at] = byte
            pos = raw.find(sig, pos + 4) if every else -1
    return bytes(raw)


def hostile(rng, kind):
    """(mutation name, bytes) of a hostile variant of the valid ``kind`` file, drawn with ``rng``."""
    data = valid_file(kind)
    entries = [(n, p, zipfile.ZIP_DEFLATED if n.endswith(".json") else zipfile.ZIP_STORED) for n, p in members(data)]
    how = MUTATIONS[rng.integers(len(MUTATIONS))]
    if how == "bitflip":
        raw = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(len(raw) * 8))
            raw[pos // 8] ^= 1 << (pos % 8)
        return how, bytes(raw)
    if how == "splice":
        raw = bytearray(data)
        pos, n = int(rng.integers(len(raw))), int(rng.integers(1, 64))
        raw[pos:pos + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return how, bytes(raw)
    if how == "truncate":
        return how, data[:int(rng.integers(len(data)))]
    if how == "garbage":
        return how, rng.integers(0, 256, int(rng.integers(0, 2048)), dtype=np.uint8).tobytes()
    if how == "central_directory":
        return how, _central_directory(rng, data)
    if how == "non_utf8_name":
        return how, flag_names_utf8(data)
    i = int(rng.integers(len(entries)))
    name, payload, method = entries[i]
    if how == "rename":
        new = rng.choice(["model.json", "ensemble.json", "checkpoint.json", "arrays/0.w.npy", "../x", "",
                          "members/9.fnn", "optimizer/m.npy", "a" * 300])
        entries[i] = (str(new), payload, method)
    elif how == "duplicate":
        entries.insert(int(rng.integers(len(entries) + 1)), (name, payload if rng.random() < 0.5 else b"{}", method))
    elif how == "drop":
        del entries[i]
    elif how == "recompress":
        entries[i] = (name, payload, int(rng.choice([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])))
    elif how == "bomb":
        method = int(rng.choice([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]))
        declared = int(rng.choice([BOMB_BYTES, len(payload), 100, 0]))
        return f"bomb-{method}-{'true' if declared == BOMB_BYTES else 'lie'}", bomb_zip(entries, name, method, declared)
    elif how in ("bad_json_number", "huge_shape"):
        j = _json_members(entries)
        j = j[int(rng.integers(len(j)))] if j else i
        name, payload, method = entries[j]
        text = payload.decode("utf-8", "replace")
        try:
            text = _mutate_json(rng, text) if how == "bad_json_number" else _huge_shape(rng, text)
        except (ValueError, KeyError, TypeError, IndexError):
            text = text[::-1]
        entries[j] = (name, text.encode(), method)
    elif how == "bad_npy":
        arrays = [k for k, (n, _, _) in enumerate(entries) if n.endswith(".npy")]
        k = arrays[int(rng.integers(len(arrays)))] if arrays else i
        name, payload, method = entries[k]
        entries[k] = (name, _bad_npy(rng, payload), method)
    elif how == "nested":  # an ensemble member (or any member) replaced by a hostile file of another kind
        inner_how, inner = hostile(rng, str(rng.choice(("model", "checkpoint"))))
        how = f"nested-{inner_how}"
        entries[i] = (name, inner, zipfile.ZIP_STORED)
    return how, build(entries)


MUTATIONS = ("bitflip", "splice", "truncate", "garbage", "central_directory", "non_utf8_name", "rename", "duplicate",
             "drop", "recompress", "bomb", "bad_json_number", "huge_shape", "bad_npy", "nested")


# ------------------------------------------------------------------ loaders and campaign
def loaders():
    """{name: (kind of file it reads, function of a path)}."""
    import fastnn as fnn
    import fastnn.inference

    return {"fastnn.load": ("model", lambda p: fnn.load(p, device="reference")),
            "fastnn.inference.load": ("model", fastnn.inference.load),
            "Trainer.from_checkpoint": ("checkpoint", lambda p: fnn.Trainer.from_checkpoint(p, device="reference")),
            "Ensemble.load": ("ensemble", lambda p: fnn.Ensemble.load(p, device="reference"))}


def outcome(load, path):
    """'ok', 'ModelFormatError' or the name of any other exception ``load(path)`` raised."""
    from fastnn import ModelFormatError

    try:
        load(path)
    except ModelFormatError:
        return "ModelFormatError"
    except Exception as exc:  # noqa: BLE001 - what the campaign is looking for
        return f"{type(exc).__module__}.{type(exc).__name__}: {str(exc)[:120]}"
    return "ok"


def peak_rss_mb():
    """Peak resident memory of this process so far, MB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def campaign(cases, seed=0, report=print):
    """Run ``cases`` hostile files through the loaders (round robin); returns the summary dict."""
    table = loaders()
    names = list(table)
    rng = np.random.default_rng(seed)
    counts, bad = Counter(), []
    folder = tempfile.mkdtemp(prefix="fastnn-fuzz-")
    path = os.path.join(folder, "case.fnn")
    for kind in KINDS:
        valid_file(kind)
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        _bomb_stream(method)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    for case in range(cases):
        loader = names[case % len(names)]
        kind, load = table[loader]
        how, data = hostile(rng, kind)
        with open(path, "wb") as f:
            f.write(data)
        result = outcome(load, path)
        counts[(loader, result.split(":")[0])] += 1
        if result not in ("ok", "ModelFormatError"):
            bad.append((case, loader, how, result))
        if report and (case + 1) % 10000 == 0:
            report(f"{case + 1} cases, {len(bad)} unexpected, peak RSS {peak_rss_mb():.0f} MB, "
                   f"{time.perf_counter() - start:.0f} s")
    os.unlink(path) if os.path.exists(path) else None
    os.rmdir(folder)
    summary = {"cases": cases, "seed": seed, "outcomes": {f"{k[0]} -> {k[1]}": v for k, v in sorted(counts.items())},
               "unexpected": bad[:50], "n_unexpected": len(bad), "peak_rss_mb_before": round(rss_before, 1),
               "peak_rss_mb": round(peak_rss_mb(), 1), "seconds": round(time.perf_counter() - start, 1)}
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = campaign(args.cases, args.seed)
    print(json.dumps(summary, indent=1))
    return 0 if summary["n_unexpected"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
