"""Writing a file all or nothing: the project's one atomic writer.

A reader must see either the old file or the whole new one, never half of it, even when the
writer is killed mid-way (kill -9, a full disk, Ctrl-C). So the bytes go to a hidden temporary
file beside the destination, are flushed and fsync'ed, and ``os.replace`` renames it over the
destination: on POSIX a rename within a folder is atomic.

Temporary names are ``.<name>.tmp-<pid>-<random>``. No lookup in dlstack matches them
(:func:`is_partial`), so what a killed writer leaves is ignored, then removed by whoever tidies
that folder (the run record, the dataset cache); an exception removes it at once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["TMP_MARK", "atomic_file", "atomic_write_bytes", "is_partial"]

TMP_MARK = ".tmp-"


def is_partial(path: Path) -> bool:
    """Whether ``path`` is the temporary file of an atomic write (never to be read)."""
    return path.name.startswith(".") and TMP_MARK in path.name


@contextlib.contextmanager
def atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """Open a temporary file for writing that becomes ``dest`` when the block ends cleanly."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a random name opened exclusively ("x"), not mkstemp: the file gets the umask's mode
    # (readable by the group, like any other file the user writes), not mkstemp's 0600
    tmp = dest.parent / f".{dest.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as f:
        f.write(data)
