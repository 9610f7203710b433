"""Atomic file writing: a temporary file in the target's folder, fsync, then rename, so a
reader sees the old file or the new one, never half of one, and a failure loses nothing.

Guarantees of ``atomic_write``:

- the temporary file is removed on every error (including KeyboardInterrupt);
- the temporaries a killed save left beside the same target (fastnn's own name pattern,
  ``.fastnn-tmp-<random>-<name>``, or the older ``.tmp-<random>-<name>``) are removed by the
  next save to that target, when they are older than the running save;
- the file gets the mode an ordinary ``open`` would give it (``0o666`` less the umask), or
  keeps the mode of the file it replaces;
- a target that is a directory is refused with IsADirectoryError before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile

#: Prefix of fastnn's temporary files (a random part and the target's name follow).
TEMP_PREFIX = ".fastnn-tmp-"
#: The random part mkstemp puts in a name.
_RANDOM = r"[a-z0-9_]{8}"


def _umask():
    """The process's umask, read without changing it where the OS tells it (Linux)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (there is no read-only call)
    os.umask(mask)
    return mask


def _stale_pattern(name):
    return re.compile(rf"(?:{re.escape(TEMP_PREFIX)}|\.tmp-){_RANDOM}-{re.escape(name)}")


def remove_stale_temporaries(folder, name, before):
    """Remove the temporaries of earlier, killed saves of ``folder/name``: files whose name is
    fastnn's temporary pattern for ``name`` and whose modification time is before ``before``.
    Returns the paths removed."""
    pattern = _stale_pattern(name)
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not pattern.fullmatch(entry.name):
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_mtime < before:
                    os.unlink(entry.path)
                    removed.append(entry.path)
    return removed


def check_target(path, owner="fastnn"):
    """Raise IsADirectoryError when ``path`` is a directory, FileNotFoundError when its folder
    does not exist; returns that folder. atomic_write checks this first; a caller about to do
    long work (the CLI before training) checks it before."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{owner}: {path!r} is a directory; give a file name, such as "
                                f"{os.path.join(path, 'model.fnn')!r}.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{owner}: the folder {folder} does not exist; create it first.")
    return folder


@contextlib.contextmanager
def atomic_write(path, mode="wb", owner="fastnn"):
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` atomically
    (see the module docstring for the guarantees). ``owner`` names the caller in errors."""
    path = os.fspath(path)
    folder = check_target(path, owner)
    name = os.path.basename(path)
    try:
        target_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        target_mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix="-" + name, dir=folder)
    try:
        started = os.fstat(fd).st_mtime
        remove_stale_temporaries(folder, name, started)
        with contextlib.suppress(OSError):
            os.fchmod(fd, target_mode)
        with os.fdopen(fd, mode) as f:
            fd = None
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
