"""Crash-safe files: atomic writes and a lock on an output folder.

A file written with :func:`atomic_write_bytes` (or its text / JSON / CSV / figure variants)
is either the old version or the complete new one, whatever kills the process: the bytes go
to a temporary file in the same folder, are flushed to disk, then ``os.replace`` renames it
over the target (atomic on POSIX). :func:`atomic_directory` does the same for a folder of
files (a checkpoint). :class:`DirectoryLock` keeps two processes from writing one output
folder at the same time (``fcntl.flock`` on ``<folder>/.oxide-rl.lock``; the lock goes away
with the process, even on ``SIGKILL``).

Example:
    >>> import tempfile, json, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with DirectoryLock(folder):
    ...     _ = atomic_write_json(folder / "result.json", {"n": 3})
    >>> json.loads((folder / "result.json").read_text())
    {'n': 3}
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

LOCK_NAME = ".oxide-rl.lock"

# Fault injection for tests: called as ``hook(stage, path)`` with stage "write" (half of the
# bytes written to the temporary file) or "replace" (just before the rename). A test hook that
# raises simulates a kill at that write point.
_FAULT_HOOK: Callable[[str, Path], None] | None = None


def _fault(stage: str, path: Path) -> None:
    if _FAULT_HOOK is not None:
        _FAULT_HOOK(stage, path)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    Args:
        path: the target file; its folder must exist.
        data: the complete contents.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> p = atomic_write_bytes(pathlib.Path(tempfile.mkdtemp()) / "x.bin", b"abc")
        >>> p.read_bytes()
        b'abc'
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            half = len(data) // 2
            fh.write(data[:half])
            _fault("write", path)
            fh.write(data[half:])
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        _fault("replace", path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (plus a newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def atomic_write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file (``header`` then ``rows``) to ``path`` atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def atomic_save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig`` into memory, then write the image to ``path`` atomically."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", **kwargs)
    return atomic_write_bytes(path, buffer.getvalue())


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name, then rename it to ``path`` in one step.

    Yields the temporary folder to fill; on success it becomes ``path`` (which must not
    exist), on any exception it is removed. A reader never sees a half-written ``path``.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "checkpoint"
        >>> with atomic_directory(target) as tmp:
        ...     _ = (tmp / "a.txt").write_text("a")
        >>> sorted(p.name for p in target.iterdir())
        ['a.txt']
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{str(path)!r} already exists.")
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        for child in tmp.iterdir():
            if child.is_file():
                with open(child, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(tmp)
        _fault("replace", path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)


def remove_stale_temporaries(directory: str | Path) -> None:
    """Delete temporary files and folders left in ``directory`` by a killed atomic write."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for child in directory.glob(".*.tmp"):
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


def check_output_folder(path: str | Path, *, option: str = "--out") -> Path:
    """Raise ``ValueError`` unless ``path`` is an existing folder or can be created as one.

    Example:
        >>> import tempfile
        >>> check_output_folder(tempfile.mkstemp()[1])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Invalid --out '...': it is a file; give a folder (it is created if missing).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"Invalid {option} {str(path)[:200]!r}: it is a file; give a folder "
                         "(it is created if missing).")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"Invalid {option} {str(path)[:200]!r}: {str(parent)[:200]!r} is a file, "
                                 "not a folder.")
            if not os.access(parent, os.W_OK | os.X_OK) and not path.exists():
                raise ValueError(f"Invalid {option} {str(path)[:200]!r}: cannot create it in {str(parent)[:200]!r} "
                                 "(permission denied).")
            break
    return path


class DirectoryLock:
    """An exclusive lock on an output folder, held by one process at a time.

    Args:
        directory: the folder (created if missing).
        wait: block until the other process is done instead of refusing.

    Raises:
        ValueError: another process holds the lock (and ``wait`` is false).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with DirectoryLock(folder):
        ...     DirectoryLock(folder).acquire()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Another oxide-rl process (pid ...) is writing ... wait for it to finish or use another --out.
    """

    def __init__(self, directory: str | Path, *, wait: bool = False) -> None:
        self.directory = Path(directory)
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        import fcntl

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ValueError(f"Another oxide-rl process (pid {holder}) is writing {str(self.directory)!r}; "
                             "wait for it to finish or use another --out.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_json_dict(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` if it is missing, unreadable, damaged or not an object.

    For files this package writes atomically (results, configs, checkpoint metadata): a missing or
    damaged one means "not finished", never an error.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
