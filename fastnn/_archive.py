"""The one reader and writer of fastnn's zip archives: model files, training checkpoints and
ensembles (``.fnn``).

An archive is a zip whose manifest (``model.json`` or ``ensemble.json``) names its ``format``,
``format_version`` and ``kind`` ('model', 'checkpoint' or 'ensemble'; files written before the
kind was recorded are told apart by their members). Reading is hardened against hostile bytes:

- the file is opened once; encrypted members, duplicate member names and names that are not
  text are refused before any member is read;
- every member is inflated by fastnn itself, in chunks, with a cap the caller derives from what
  it expects (an array's shape and dtype, a JSON size limit): a compression bomb of any zip
  method (stored, deflate, bzip2, lzma) stops at the cap, before the memory is spent;
- JSON refuses NaN, Infinity, numbers that overflow a float and integers of more than 40 digits;
- ``.npy`` headers are parsed from bounded bytes and must match the expected shape and dtype;
- every failure, whatever layer of the standard library raised it, becomes a
  ``ModelFormatError`` naming the file and what is wrong with it.

Writing goes through ``fastnn._files.atomic_write`` (temporary file, fsync, rename).
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import io
import json
import lzma
import math
import os
import struct
import zipfile
import zlib

import numpy as np

from ._files import atomic_write
from .errors import ModelFormatError

#: The kinds of archive fastnn writes, with the noun its messages use.
KINDS = {"model": "model file", "checkpoint": "training checkpoint", "ensemble": "ensemble file"}
#: What reads each kind.
LOADERS = {"model": "fastnn.load", "checkpoint": "fastnn.Trainer.from_checkpoint", "ensemble": "fastnn.Ensemble.load"}
#: Largest JSON member read (bytes).
MAX_JSON_BYTES = 1 << 20
#: Largest ``.npy`` header read (bytes); fastnn writes headers of 128 bytes.
MAX_NPY_HEADER = 1 << 16
#: Most members an archive may hold.
MAX_MEMBERS = 4096
#: Longest integer literal accepted in JSON (digits): 128-bit generator states have 39.
MAX_INT_DIGITS = 40
_CHUNK = 1 << 16
#: What the standard library raises on damaged or hostile bytes (wrapped into ModelFormatError).
_DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError,
           OSError, UnicodeDecodeError, OverflowError, RecursionError, struct.error, RuntimeError,
           ValueError, TypeError, KeyError, IndexError)


def format_error(path, what, owner, noun="model file"):
    """The ModelFormatError saying that ``path`` is not a valid fastnn ``noun``, and why."""
    return ModelFormatError(f"{owner}: {path!s} is not a valid fastnn {noun}: {what}.")


class _Fail(Exception):
    """Internal: raised by ArchiveReader.fail and turned into ModelFormatError at the boundary."""


class ArchiveReader:
    """An open fastnn archive, checked as it is read (see the module docstring).

    Use as ``with ArchiveReader(path, owner, noun) as ar: ...``; every exception the body
    raises from damaged bytes leaves the block as a ModelFormatError naming ``path``.
    ``stream``: a seekable binary file object read instead of ``path`` (which then only names
    it in messages).

    >>> import fastnn as fnn, os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "m.fnn")
    >>> fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0).save(p)
    >>> with ArchiveReader(p, "doc") as ar:
    ...     ar.read_json("model.json")["kind"], ar.names[:2]
    ('model', ['model.json', 'arrays/0.w.npy'])
    """

    def __init__(self, path, owner, noun="model file", stream=None):
        self.path, self.owner, self.noun = os.fspath(path) if stream is None else str(path), owner, noun
        if stream is None and not os.path.isfile(self.path):
            raise FileNotFoundError(f"{owner}: no file at {self.path!r}.")
        self._stream = stream
        self._zf = None

    # ------------------------------------------------------------ context
    def __enter__(self):
        # opening is not reading: a PermissionError is the caller's to see as it is
        self._own = self._stream is None
        self._src = src = open(self.path, "rb") if self._own else self._stream
        try:
            self.size = src.seek(0, io.SEEK_END)
            src.seek(0)
            self._zf = zipfile.ZipFile(src)
            infos = self._zf.infolist()
            if len(infos) > MAX_MEMBERS:
                self.fail(f"it has {len(infos)} members, more than {MAX_MEMBERS}")
            seen = set()
            for info in infos:
                if info.filename in seen:
                    self.fail(f"the member name {info.filename!r} occurs twice")
                seen.add(info.filename)
                if info.flag_bits & 0x1:
                    self.fail("it has encrypted members")
            self.names = [info.filename for info in infos]
            self._infos = {info.filename: info for info in infos}
        except BaseException as exc:
            self._close()
            self._translate(exc)
            raise
        return self

    def __exit__(self, kind, exc, tb):
        self._close()
        if exc is not None:
            self._translate(exc)
        return False

    def _close(self):
        with contextlib.suppress(Exception):
            if self._zf is not None:
                self._zf.close()
        if getattr(self, "_own", False):
            with contextlib.suppress(Exception):
                self._src.close()

    def _translate(self, exc):
        if isinstance(exc, _Fail):
            raise format_error(self.path, str(exc), self.owner, self.noun) from None
        if isinstance(exc, ModelFormatError):
            return
        if isinstance(exc, (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError)):
            raise format_error(self.path, f"the zip archive is damaged or not a zip archive ({exc})", self.owner,
                               self.noun) from None
        if isinstance(exc, _DAMAGE):
            raise format_error(self.path, f"damaged content ({type(exc).__name__}: {exc})", self.owner,
                               self.noun) from None

    def fail(self, what):
        """Raise the ModelFormatError saying that this file is invalid because of ``what``."""
        raise _Fail(what)

    def fail_kind(self, found, expected, missing=None):
        """Refuse a file of kind ``found`` where ``expected`` was asked for, naming the loader
        that reads it; ``missing``: the manifest member of ``expected`` that the file lacks."""
        def noun(kind):
            return ("an " if KINDS[kind][0] in "aeiou" else "a ") + KINDS[kind]

        lacks = f"it has no {missing} member: " if missing else ""
        self.fail(f"{lacks}it is {noun(found)}, not {noun(expected)}; read it with {LOADERS[found]}")

    # ------------------------------------------------------------ members
    def info(self, name):
        """The ZipInfo of member ``name`` (fails when it is missing)."""
        info = self._infos.get(name)
        if info is None:
            self.fail(f"it has no {name} member")
        return info

    def kind_of(self, manifest, members=()):
        """The kind a manifest declares, or for files written before kinds were recorded, the
        one its members show (``members``: {member name: kind})."""
        kind = manifest.get("kind")
        if kind is None:
            return next((k for name, k in dict(members).items() if name in self._infos), None)
        if not isinstance(kind, str) or kind not in KINDS:
            self.fail(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        return kind

    def read_bytes(self, name, cap):
        """The inflated bytes of member ``name``, at most ``cap`` of them: the declared size is
        checked first and the inflation stops at the cap, so a bomb never spends the memory."""
        info = self.info(name)
        if info.file_size > cap:
            self.fail(f"{name} is {info.file_size} bytes, over the {cap} limit")
        method = info.compress_type
        partial = method == zipfile.ZIP_DEFLATED  # zlib keeps unread input in unconsumed_tail
        if method == zipfile.ZIP_STORED:
            inflate = None
        elif method == zipfile.ZIP_DEFLATED:
            inflate = zlib.decompressobj(-15)
        elif method == zipfile.ZIP_BZIP2:
            inflate = bz2.BZ2Decompressor()
        elif method == zipfile.ZIP_LZMA:
            inflate = None  # built from the member's own header below
        else:
            self.fail(f"{name} uses zip compression method {method}, which fastnn does not read")
        if info.compress_size > self.size:
            self.fail(f"the zip archive is damaged ({name} declares {info.compress_size} compressed bytes in a file of "
                      f"{self.size})")
        raw = _raw_member(self._zf, info)
        out = bytearray()
        limit = info.file_size
        with raw:
            if method == zipfile.ZIP_LZMA:
                head = raw.read(4)
                if len(head) < 4:
                    self.fail(f"{name} has a truncated lzma header")
                psize = struct.unpack("<H", head[2:4])[0]
                props = raw.read(psize)
                filt = lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)  # what zipfile does too
                # a match never reaches further back than the output's length: a dictionary of the
                # capped size decodes every valid stream, and a declared 4 GiB one is never allocated
                filt["dict_size"] = min(filt.get("dict_size", 1 << 12), max(limit, 1 << 12))
                inflate = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt])
            while True:
                chunk = raw.read(_CHUNK)
                if not chunk:
                    break
                if inflate is None:
                    out += chunk
                else:
                    data = chunk
                    while True:
                        out += inflate.decompress(data, limit + 1 - len(out))
                        if len(out) > limit:
                            break
                        if partial:
                            data = inflate.unconsumed_tail
                            if not data:
                                break
                        else:
                            if inflate.needs_input or inflate.eof:
                                break
                            data = b""
                if len(out) > limit:
                    self.fail(f"the zip archive is damaged ({name} inflates to more than the {limit} bytes it "
                              f"declares)")
        if len(out) != limit:
            self.fail(f"the zip archive is damaged ({name} inflates to {len(out)} bytes; it declares {limit})")
        if zlib.crc32(out) & 0xFFFFFFFF != info.CRC:
            self.fail(f"the zip archive is damaged ({name} fails its CRC check)")
        return bytes(out)

    def read_json(self, name, fmt=None, max_version=None):
        """The JSON value of member ``name`` (at most MAX_JSON_BYTES), strictly parsed; with
        ``fmt``, an object whose ``format`` is ``fmt`` and ``format_version`` in [1, max_version]."""
        data = self.read_bytes(name, MAX_JSON_BYTES)
        try:
            value = json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float,
                               parse_int=_bounded_int)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nesting bomb
            self.fail(f"{name} is not valid JSON ({exc})")
        if fmt is None:
            return value
        if not isinstance(value, dict) or value.get("format") != fmt:
            self.fail(f"{name} does not declare the {fmt} format")
        version = value.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= max_version:
            self.fail(f"format_version {version!r} is not supported by this fastnn (it reads 1..{max_version}); "
                      f"upgrade fastnn")
        return value

    def read_array(self, name, shape, dtype, finite=True):
        """The ``.npy`` member ``name``, which must hold exactly ``shape`` of ``dtype`` (and,
        with ``finite``, no NaN or inf): a C-contiguous, writable array."""
        shape = tuple(int(d) for d in shape)
        dtype = np.dtype(dtype)
        expected = math.prod(shape) * dtype.itemsize
        if expected > self.size:
            self.fail(f"{name} would need {expected} bytes, more than the file's {self.size}")
        info = self._infos.get(name)
        if info is None:
            self.fail(f"the array member {name!r} is missing")
        if info.file_size > expected + MAX_NPY_HEADER:
            self.fail(f"{name} is {info.file_size} bytes; {list(shape)} {dtype} needs {expected}")
        data = self.read_bytes(name, expected + MAX_NPY_HEADER)
        f = io.BytesIO(data)
        try:
            major, _ = np.lib.format.read_magic(f)
            if major == 1:
                header = np.lib.format.read_array_header_1_0(f)
            elif major in (2, 3):
                header = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unknown .npy version {major}")
        except Exception as exc:  # noqa: BLE001 - numpy's header parser raises many kinds (tokenize, syntax, ...)
            self.fail(f"{name} is not a .npy array ({type(exc).__name__}: {exc})")
        got_shape, fortran, got_dtype = header
        if got_dtype != dtype or tuple(got_shape) != shape:
            self.fail(f"{name} holds {got_dtype} {tuple(got_shape)}; the architecture needs {dtype} {shape}")
        offset = f.tell()
        if len(data) - offset != expected:
            self.fail(f"{name} holds {len(data) - offset} bytes of data; {dtype} {shape} needs {expected}")
        arr = np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape, order="F" if fortran else "C")
        arr = np.array(arr, order="C", copy=True)
        if finite and not np.isfinite(arr).all():
            self.fail(f"{name} contains NaN or inf")
        return arr

    def check_members(self, allowed):
        """Fail when the archive holds a member not in ``allowed``."""
        allowed = set(allowed)
        unexpected = [n for n in self.names if n not in allowed]
        if unexpected:
            self.fail(f"unexpected members {unexpected[:3]}")


def _raw_member(zf, info):
    """The member's bytes as stored (still compressed), read through zipfile's local-header checks."""
    raw = copy.copy(info)
    raw.compress_type = zipfile.ZIP_STORED
    raw.file_size = info.compress_size
    raw.CRC = None  # checked on the inflated bytes instead
    return zf.open(raw)


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number fastnn accepts")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} overflows a float")
    return value


def _bounded_int(text):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits, more than {MAX_INT_DIGITS}")
    return int(text)


def check_json_text(owner, name, text):
    """Raise ValueError unless ``text`` is JSON that ArchiveReader.read_json reads back: what
    fastnn writes, fastnn reads (size limit, no NaN/Infinity, integers of at most 40 digits)."""
    size = len(text.encode("utf-8"))
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{owner}: {name} would be {size} bytes, over the {MAX_JSON_BYTES} a reader accepts; "
                         f"keep the metadata or history smaller.")
    try:
        json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except ValueError as exc:
        raise ValueError(f"{owner}: {name} would hold a value no reader accepts ({exc}).") from None


def write_archive(path, members, owner="fastnn"):
    """Write ``members`` ([(name, str | bytes | ndarray)]) as a fastnn archive to ``path``
    atomically: text is deflated, arrays are stored as ``.npy`` and bytes are stored as given.
    Everything is checked before the file is opened (JSON members with check_json_text)."""
    write_check(members, owner)
    with atomic_write(path, owner=owner) as f:
        write_archive_to(f, members)


def write_check(members, owner="fastnn"):
    """Raise ValueError for members an ArchiveReader would refuse: duplicate names, unreadable JSON."""
    names = [name for name, _ in members]
    if len(set(names)) != len(names):
        raise ValueError(f"{owner}: duplicate member names in {names}.")
    for name, value in members:
        if isinstance(value, str) and name.endswith(".json"):
            check_json_text(owner, name, value)


def write_archive_to(f, members):
    """Write ``members`` (as write_archive, after write_check) to the binary file object ``f``."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, value in members:
            if isinstance(value, str):
                zf.writestr(name, value, compress_type=zipfile.ZIP_DEFLATED)
            elif isinstance(value, (bytes, bytearray)):
                zf.writestr(name, bytes(value))
            else:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(value), allow_pickle=False)
                zf.writestr(name, buf.getvalue())


def file_kind(path):
    """'model', 'checkpoint' or 'ensemble': what the fastnn archive at ``path`` holds (by its
    manifest's kind, or its members for older files). Raises ModelFormatError for anything else.

    >>> import fastnn as fnn, os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "m.fnn")
    >>> fnn.Sequential([fnn.layers.Dense(2)], input_dim=3, seed=0).save(p)
    >>> file_kind(p)
    'model'
    """
    with ArchiveReader(path, "fastnn.file_kind", "fastnn file") as ar:
        if "ensemble.json" in ar.names:
            manifest = ar.read_json("ensemble.json")
            default = "ensemble"
        else:
            manifest = ar.read_json("model.json")
            default = "checkpoint" if "checkpoint.json" in ar.names else "model"
        if not isinstance(manifest, dict):
            ar.fail("its manifest is not a JSON object")
        return ar.kind_of(manifest) or default


__all__ = ["KINDS", "LOADERS", "MAX_JSON_BYTES", "ArchiveReader", "check_json_text", "file_kind", "format_error",
           "write_archive", "write_archive_to", "write_check"]
