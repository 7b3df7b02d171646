"""Append-only JSONL files that long jobs (eval, export, build) resume from after an interruption.

A job killed mid-write leaves an unterminated last line; :func:`complete_lines` cuts it off the file so appends
continue on a clean line. :func:`exclusive` keeps two runs from appending to the same folder at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


def complete_lines(path: Path) -> list[str]:
    """The file's complete lines (decoded); an unterminated last line is cut from the file itself."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    return data.decode("utf-8", errors="replace").splitlines()


@contextlib.contextmanager
def exclusive(folder: Path, what: str = "run") -> Iterator[None]:
    """Hold ``folder/.lock`` for the block; a second holder gets a clear ValueError instead of waiting."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(f"another {what} is writing to {folder}; wait for it or use another --out") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
