"""Durable writes, written once: temp file in the target's directory, every
byte written (a short write is an error, never a truncated file), fsync,
rename into place only after the caller's checks passed, then (optionally)
fsync of the directory so the rename survives a crash.

Used by the runtime's state files, the image layout (blobs, index.json),
archives and bundles.  Imports nothing but the builtin ``posix`` (not even
``os``, ~0.9 ms, nor ``tempfile``): the runtime's hot path loads it.
"""

from __future__ import annotations

import posix

TMP_PREFIX = ".ocipy-tmp-"


def _dirname(path: str) -> str:
    head = path.rpartition("/")[0]
    return head if head else ("/" if path.startswith("/") else ".")


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of `data` to `fd`; a write that makes no progress raises EIO."""
    view = memoryview(data)
    while view:
        written = posix.write(fd, view)
        if written <= 0:  # cannot happen for a regular file; never loop forever
            raise OSError(5, "short write")
        view = view[written:]


def fsync_dir(path: str) -> None:
    fd = posix.open(path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        posix.fsync(fd)
    finally:
        posix.close(fd)


def unlink_quietly(path: str) -> None:
    """Remove a file of ours on a failure path; never raises."""
    try:
        posix.unlink(path)
    except OSError:
        pass


class AtomicFile:
    """A new file that appears at its target only by :meth:`commit`.

    ``write()`` goes straight to a temp file (``TMP_PREFIX`` + random) in
    ``directory``; ``commit(target)`` fsyncs it (unless ``sync=False``, for
    scratch files), sets ``mode``, renames it to ``target`` and fsyncs the
    target's directory (unless ``sync_dir=False``: the caller batches that).
    ``abort()`` (also on leaving a ``with`` block without a commit) removes the
    temp file.  The target may be chosen at commit time: a blob's name is its
    digest, known only once every byte has been hashed.
    """

    def __init__(self, directory: str, mode: int = 0o644, prefix: str = TMP_PREFIX) -> None:
        flags = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC
        while True:
            self.tmp = f"{directory.rstrip('/')}/{prefix}{posix.urandom(6).hex()}"
            try:
                self.fd: int = posix.open(self.tmp, flags, 0o600)
                break
            except FileExistsError:
                continue
        self.mode = mode
        self.size = 0
        self.done = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        write_all(self.fd, data)
        n = len(data)
        self.size += n
        return n

    def fileno(self) -> int:
        return self.fd

    def commit(self, target: str, *, sync: bool = True, sync_dir: bool = True) -> None:
        try:
            if sync:
                posix.fsync(self.fd)
            posix.fchmod(self.fd, self.mode)
            posix.close(self.fd)
            self.fd = -1
            posix.rename(self.tmp, target)
            self.done = True
            if sync_dir:
                fsync_dir(_dirname(target))
        finally:
            self.abort()

    def abort(self) -> None:
        if self.fd >= 0:
            posix.close(self.fd)
            self.fd = -1
        if not self.done:
            unlink_quietly(self.tmp)
            self.done = True

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def write_file(path: str, payload: bytes, mode: int = 0o600, *, sync_dir: bool = False,
               prefix: str | None = None, sync: bool = True) -> None:
    """Replace `path` with `payload` atomically (see :class:`AtomicFile`); the old
    file stays as it was on any failure, and the temp file is removed.  `sync`
    False: a file nothing reads after a crash (still whole, or not there)."""
    f = AtomicFile(_dirname(path), mode, prefix if prefix is not None else f".{path.rpartition('/')[2]}.")
    with f:
        f.write(payload)
        f.commit(path, sync=sync, sync_dir=sync_dir)
