"""Layers (layer.md): safe application of tar changesets, and writing new ones.

Applying
--------
:class:`Applier` applies layers in order onto a root filesystem directory.
Nothing is ever created, changed or read outside that directory:

* every path is resolved by the kernel with ``openat2(RESOLVE_IN_ROOT)``
  relative to an ``O_PATH`` fd of the rootfs, so ``..`` and symlinks planted
  by earlier entries or layers cannot lead out of it;
* the last component is never followed: files are created with
  ``O_CREAT|O_EXCL|O_NOFOLLOW`` (an existing path is unlinked first, as
  layer.md's "changeset over existing files" says), so writing through a
  planted symlink, device node or fifo is impossible;
* names with ``..`` components, absolute names, hardlinks to absolute or
  ``..`` targets and non-directory duplicate entries are rejected with an
  :class:`ImageError` naming the layer and the entry;
* a cap on the expanded size (``max_size``) stops decompression bombs and
  huge sparse entries before they fill the disk.

Already-resolved parent directory fds are cached (tar entries come grouped by
directory) and the cache is dropped whenever a directory or symlink is removed,
so a cached fd never stands for a path whose meaning changed.

Writing
-------
:class:`LayerWriter` streams a tar (PAX) through gzip/zstd/none into a blob,
computing the blob digest and the diff_id on the way.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import zlib
from typing import IO, Any

from ocipy.errors import ImageError, KernelError
from ocipy.spec import digest as _digest

CHUNK = 1 << 20
RAW_CHUNK = 1 << 18
ZSTD_FEED = 1 << 12  # bounded output per zstd call: a 4 KiB zstd input expands to at most ~180 MiB
DEFAULT_MAX_SIZE = 32 << 30
WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"

_O_PATH = 0o10000000
_RESOLVE_IN_ROOT = 0x10
_RESOLVE_NO_MAGICLINKS = 0x02
_DIR_FLAGS = _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_ZERO_BLOCK = bytes(512)


def max_size_default() -> int:
    env = os.environ.get("OCIPY_MAX_UNPACK_SIZE")
    if env:
        return parse_size(env)
    return DEFAULT_MAX_SIZE


def parse_size(text: str) -> int:
    """'512M', '2G', '1048576' -> bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if t and t[-1] in "KMGT":
        mult = 1 << (10 * ("KMGT".index(t[-1]) + 1))
        t = t[:-1]
    try:
        value = int(float(t) * mult)
    except ValueError:
        raise ImageError(f"size {text!r}: not a number of bytes (e.g. 512M, 4G)") from None
    if value <= 0:
        raise ImageError(f"size {text!r}: must be positive")
    return value


class LayerStream:
    """The decompressed content of a layer blob as a forward-only file.

    ``read(n)`` returns exactly n bytes unless the stream ends; ``seek`` may
    only move forward (tarfile's sequential reads need nothing else).  The
    decompressed bytes are hashed for the diff_id and counted against
    ``budget`` (a one-element list shared by all layers of an unpack).
    """

    def __init__(self, raw: Any, compression: str, what: str, budget: list[int],
                 diff_algorithm: str | None = "sha256") -> None:
        self.raw = raw
        self.compression = compression
        self.what = what
        self.budget = budget
        self.pos = 0
        self._buf = b""
        self._off = 0
        self._eof = False
        self.last_block = b""
        self._hash = _digest.hasher(diff_algorithm) if diff_algorithm and compression != "none" else None
        self._diff_alg = diff_algorithm
        self._zstd_pending = b""
        if compression == "gzip":
            self._z: Any = zlib.decompressobj(31)
        elif compression == "zstd":
            import zstandard

            self._zd = zstandard.ZstdDecompressor()
            self._z = self._zd.decompressobj()
        elif compression == "none":
            self._z = None
        else:
            raise ImageError(f"{what}: unknown compression {compression!r}")

    # -- decompression ---------------------------------------------------------

    def _raw_read(self, n: int) -> bytes:
        data: bytes = self.raw.read(n)
        return data

    def _produce(self) -> bytes:
        """The next chunk of decompressed data, b'' at the end (checked for truncation)."""
        if self._eof:
            return b""
        z = self._z
        if z is None:
            out = self._raw_read(CHUNK)
            if not out:
                self._eof = True
        elif self.compression == "gzip":
            out = b""
            while not out:
                if z.unconsumed_tail:
                    src = z.unconsumed_tail
                elif z.eof:
                    rest = z.unused_data or self._raw_read(RAW_CHUNK)
                    while rest and not rest.strip(b"\0"):
                        rest = self._raw_read(RAW_CHUNK)  # zero padding after the last member
                    if not rest:
                        self._eof = True
                        return b""
                    z = self._z = zlib.decompressobj(31)  # another gzip member follows
                    src = rest
                else:
                    src = self._raw_read(RAW_CHUNK)
                    if not src:
                        raise ImageError(f"{self.what}: truncated gzip stream (unexpected end of data)")
                try:
                    out = z.decompress(src, CHUNK)
                except zlib.error as e:
                    raise ImageError(f"{self.what}: corrupt gzip stream: {e}") from None
        else:
            import zstandard

            out = b""
            while not out:
                if z.eof:
                    rest = z.unused_data + self._zstd_pending
                    self._zstd_pending = b""
                    if not rest:
                        rest = self._raw_read(RAW_CHUNK)
                    if not rest:
                        self._eof = True
                        return b""
                    z = self._z = self._zd.decompressobj()  # next frame
                    self._zstd_pending = rest
                if not self._zstd_pending:
                    self._zstd_pending = self._raw_read(RAW_CHUNK)
                    if not self._zstd_pending:
                        raise ImageError(f"{self.what}: truncated zstd stream (unexpected end of data)")
                src, self._zstd_pending = self._zstd_pending[:ZSTD_FEED], self._zstd_pending[ZSTD_FEED:]
                try:
                    out = z.decompress(src)
                except zstandard.ZstdError as e:
                    raise ImageError(f"{self.what}: corrupt zstd stream: {e}") from None
        if out:
            if self._hash is not None:
                self._hash.update(out)
            self.budget[0] -= len(out)
            if self.budget[0] < 0:
                raise ImageError(f"{self.what}: expanded size exceeds the limit "
                                 f"(decompression bomb?); raise it with --max-size")
        return out

    # -- file interface for tarfile --------------------------------------------

    def read(self, n: int = -1) -> bytes:
        buf, off = self._buf, self._off
        if n < 0:
            parts = [buf[off:]]
            while True:
                chunk = self._produce()
                if not chunk:
                    break
                parts.append(chunk)
            self._buf, self._off = b"", 0
            out = b"".join(parts)
            self.pos += len(out)
            return out
        end = off + n
        if end <= len(buf):
            self._off = end
            self.pos += n
            out = buf[off:end]
        else:
            parts = [buf[off:]]
            have = len(buf) - off
            buf, off = b"", 0
            while have < n:
                chunk = self._produce()
                if not chunk:
                    break
                take = n - have
                if len(chunk) > take:
                    parts.append(chunk[:take])
                    buf, off = chunk, take
                    have = n
                else:
                    parts.append(chunk)
                    have += len(chunk)
            self._buf, self._off = buf, off
            out = b"".join(parts)
            self.pos += len(out)
        if n == 512:
            self.last_block = out
        return out

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self.pos:
            raise ImageError(f"{self.what}: tar stream is not sequential (seek back to {pos})")
        while self.pos < pos:
            if not self.read(min(pos - self.pos, CHUNK)):
                gap = pos - self.pos
                if gap >= 512 or self._buf:
                    raise ImageError(f"{self.what}: truncated tar stream")
                # the data is complete but the padding after the last member and the end
                # marker are missing (umoci writes layers so): supply them as zeros
                self._buf, self._off = bytes(gap + 1024), 0
        return self.pos

    def drain(self) -> None:
        """Read to the end (checking the compression stream is complete)."""
        self._buf, self._off = b"", 0
        while self._produce():
            pass

    def diff_id(self) -> str | None:
        if self._hash is None:
            return None
        return f"{self._diff_alg}:{self._hash.hexdigest()}"


class ApplyOptions:
    """How layers are applied.

    max_size: cap on the expanded bytes of the whole unpack (decompressed
      stream and file sizes); exceeding it is an ImageError.
    ownership: chown entries to their uid/gid (default: when running as root).
    devices: create device nodes (default: when running as root; skipped otherwise).
    xattrs: apply SCHILY.xattr.* PAX records.
    """

    def __init__(self, max_size: int | None = None, ownership: bool | None = None,
                 devices: bool | None = None, xattrs: bool = True) -> None:
        root = os.geteuid() == 0
        self.max_size = max_size if max_size is not None else max_size_default()
        self.ownership = root if ownership is None else ownership
        self.devices = root if devices is None else devices
        self.xattrs = xattrs
        self.root = root


def _split(name: str, entry: str, what: str, kind: str = "") -> list[str]:
    where = f"{what}: entry {entry!r}" + (f": {kind} {name!r}" if kind else "")
    if name.startswith("/"):
        raise ImageError(f"{where}: absolute path not allowed in a layer")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise ImageError(f"{where}: '..' component not allowed in a layer")
    return parts


def _mtime_ns(info: tarfile.TarInfo) -> int:
    pax = info.pax_headers.get("mtime") if info.pax_headers else None
    if pax:
        whole, _, frac = pax.partition(".")
        try:
            return int(whole) * 1_000_000_000 + (int((frac + "000000000")[:9]) if frac else 0) * (
                -1 if whole.startswith("-") else 1)
        except ValueError:
            pass
    return int(info.mtime * 1_000_000_000)


class _Workers:
    """Threads that create leaf entries (files, symlinks, nodes) in parallel.

    Creating an inode is the expensive part of an unpack and the kernel does it
    in parallel for different directories, so tasks are spread over the
    workers by parent directory.  Only the main thread resolves paths, removes
    anything, or closes cached directory fds, and it waits for every pending
    task (:meth:`barrier`) before it does.
    """

    def __init__(self, count: int) -> None:
        import queue
        import threading

        self.queues: list[Any] = [queue.SimpleQueue() for _ in range(count)]
        self.error: tuple[str, BaseException] | None = None
        self.pending_bytes = 0
        self.dirty = False
        self._assign: dict[str, Any] = {}
        self.threads = [threading.Thread(target=self._run, args=(q,), daemon=True,
                                         name=f"ocipy-unpack-{i}") for i, q in enumerate(self.queues)]
        for t in self.threads:
            t.start()

    def _run(self, q: Any) -> None:
        while True:
            task = q.get()
            if task is None:
                return
            if task.__class__ is not tuple:
                task.set()  # a barrier's Event
                continue
            if self.error is not None:
                continue
            func, args, name = task
            try:
                func(*args)
            except BaseException as e:  # reported by the main thread at the next barrier
                if self.error is None:
                    self.error = (name, e)

    def submit(self, key: str, func: Any, args: tuple[Any, ...], name: str, nbytes: int = 0) -> None:
        self.dirty = True
        q = self._assign.get(key)
        if q is None:
            # directories go to the workers in turn, as they first appear (deterministic)
            q = self._assign[key] = self.queues[len(self._assign) % len(self.queues)]
        q.put((func, args, name))
        if nbytes:
            self.pending_bytes += nbytes
            if self.pending_bytes > (64 << 20):
                self.barrier()

    def barrier(self) -> tuple[str, BaseException] | None:
        """Wait until every submitted task is done; return the first error, if any."""
        if self.dirty:
            import threading

            events = []
            for q in self.queues:
                ev = threading.Event()
                q.put(ev)
                events.append(ev)
            for ev in events:
                ev.wait()
            self.dirty = False
            self.pending_bytes = 0
        return self.error

    def stop(self) -> None:
        for q in self.queues:
            q.put(None)
        for t in self.threads:
            t.join()


def _worker_count() -> int:
    env = os.environ.get("OCIPY_UNPACK_THREADS")
    if env and env.isdigit():
        return int(env)
    return min(4, len(os.sched_getaffinity(0)))


class Applier:
    """Apply layers, one after the other, onto `rootfs` (which must exist)."""

    SMALL_FILE = 1 << 20  # files up to this size are written by the worker threads

    def __init__(self, rootfs: str, options: ApplyOptions | None = None, threads: int | None = None) -> None:
        from ocipy.linux import syscalls

        self._openat2 = syscalls.openat2
        self.opts = options or ApplyOptions()
        self.rootfs = rootfs
        self.root_fd = os.open(rootfs, _DIR_FLAGS)
        self.budget = [self.opts.max_size]
        self.files_budget = self.opts.max_size
        self._cache: dict[str, int] = {}
        self._graveyard: list[int] = []
        self.what = "layer"
        self.added: set[str] = set()
        self.added_dirs: set[str] = set()
        self.dir_times: list[tuple[str, int]] = []
        self.dir_modes: list[tuple[str, int]] = []
        n = _worker_count() if threads is None else threads
        self.workers = _Workers(n) if n > 1 else None

    def close(self) -> None:
        if self.workers is not None:
            self.workers.error = self.workers.error or ("", ImageError("aborted"))
            self.workers.stop()
            self.workers = None
        self._drop_cache()
        self._close_graveyard()
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def __enter__(self) -> Applier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- threads -------------------------------------------------------------------

    def _barrier(self) -> None:
        if self.workers is not None:
            err = self.workers.barrier()
            if err is not None:
                name, e = err
                if isinstance(e, ImageError):
                    raise e
                msg = str(e) if isinstance(e, KernelError) else (
                    e.strerror if isinstance(e, OSError) and e.strerror else str(e))
                raise ImageError(f"{self.what}: entry {name!r}: {msg}")

    # -- path resolution -------------------------------------------------------

    def _drop_cache(self) -> None:
        """Forget every cached directory fd (after a directory or symlink was removed).

        The fds are closed at the start of the next entry: the current one may still use one.
        """
        self._barrier()
        self._graveyard.extend(self._cache.values())
        self._cache.clear()

    def _close_graveyard(self) -> None:
        for fd in self._graveyard:
            os.close(fd)
        self._graveyard.clear()

    def _resolve(self, path: str) -> int:
        """An O_PATH fd of directory `path`, resolved by the kernel inside the root."""
        return self._openat2(self.root_fd, path or ".", _DIR_FLAGS, 0,
                             _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)

    def _parent(self, parts: list[str], create: bool = True) -> int:
        """A cached O_PATH fd of the directory holding parts[-1] (created if missing)."""
        key = "/".join(parts[:-1])
        fd = self._cache.get(key)
        if fd is not None:
            return fd
        self._barrier()  # a pending task may be creating a component of this path
        try:
            fd = self._resolve(key)
        except KernelError as e:
            if e.errno not in (errno.ENOENT,) or not create:
                raise
            fd = self._mkdir_parents(parts[:-1])
        if len(self._cache) > 1024:
            self._drop_cache()
        self._cache[key] = fd
        return fd

    def _mkdir_parents(self, parts: list[str], depth: int = 0) -> int:
        """mkdir -p inside the root (missing parents get 0755 root:root, like umoci).

        A dangling symlink on the way is followed as the kernel would inside the root
        (absolute targets from the rootfs, `..` stopping at it) and its target created.
        """
        if depth > 40:
            raise ImageError(f"{self.what}: {'/'.join(parts)!r}: too many levels of symbolic links")
        fd = os.dup(self.root_fd)
        try:
            for i, name in enumerate(parts):
                path = "/".join(parts[: i + 1])
                try:
                    nfd = self._resolve(path)
                except KernelError as e:
                    if e.errno != errno.ENOENT:
                        raise
                    try:
                        os.mkdir(name, 0o755, dir_fd=fd)
                    except FileExistsError:
                        st = os.lstat(name, dir_fd=fd)
                        if not stat.S_ISLNK(st.st_mode):
                            raise
                        target = os.readlink(name, dir_fd=fd)
                        base = [] if target.startswith("/") else parts[:i]
                        resolved: list[str] = []
                        for comp in base + target.split("/"):
                            if comp == "..":
                                if resolved:
                                    resolved.pop()
                            elif comp and comp != ".":
                                resolved.append(comp)
                        os.close(self._mkdir_parents(resolved, depth + 1))
                    nfd = self._resolve(path)
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _remove(self, pfd: int, name: str, st: os.stat_result | None = None) -> None:
        """Remove name (any type, recursively) from directory pfd without following it."""
        if st is None:
            st = os.lstat(name, dir_fd=pfd)
        if stat.S_ISDIR(st.st_mode):
            import shutil

            self._drop_cache()
            shutil.rmtree(name, dir_fd=pfd)
        else:
            if stat.S_ISLNK(st.st_mode):
                self._drop_cache()
            os.unlink(name, dir_fd=pfd)

    # -- one layer ---------------------------------------------------------------

    def apply(self, stream: LayerStream, what: str) -> None:
        """Apply one layer's tar stream (already decompressed by `stream`)."""
        self.what = what
        self.added = set()
        self.added_dirs = set()
        self.dir_times = []
        try:
            tf = tarfile.TarFile(fileobj=stream, mode="r")  # type: ignore[arg-type]
        except tarfile.ReadError as e:
            if "empty file" in str(e):
                return
            raise ImageError(f"{what}: not a tar archive: {e}") from None
        try:
            while True:
                try:
                    info = tf.next()
                except tarfile.TarError as e:
                    raise ImageError(f"{what}: corrupt tar stream at offset {tf.offset}: {e}") from None
                if info is None:
                    # a clean end is the zero-block marker or plain end of data (some writers,
                    # umoci among them, omit the marker); a partial or non-zero block is not
                    if stream.last_block and stream.last_block != _ZERO_BLOCK:
                        raise ImageError(f"{what}: truncated or corrupt tar stream at offset {tf.offset}")
                    break
                tf.members = []  # type: ignore[attr-defined]
                if self._graveyard:
                    self._close_graveyard()
                try:
                    self._entry(tf, stream, info)
                except ImageError:
                    raise
                except (OSError, ValueError, KernelError) as e:  # KernelError is no OSError
                    msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                    raise ImageError(f"{what}: entry {info.name!r}: {msg}") from None
            self._barrier()
            self._finish_dirs()
        finally:
            if self.workers is not None:
                self.workers.barrier()
            self._graveyard.extend(self._cache.values())
            self._cache.clear()

    def _finish_dirs(self) -> None:
        for path, mode in self.dir_modes:
            try:
                pfd = self._parent(path.split("/"), create=False)
                os.chmod(path.rsplit("/", 1)[-1], mode, dir_fd=pfd)
            except (OSError, KernelError):
                pass
        self.dir_modes = []
        for path, mtime in reversed(self.dir_times):
            parts = path.split("/") if path else []
            try:
                if not parts:
                    os.utime(self.rootfs, ns=(mtime, mtime))
                    continue
                pfd = self._parent(parts, create=False)
                os.utime(parts[-1], ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)
            except (OSError, KernelError):
                pass

    def _mark_added(self, path: str) -> None:
        self.added.add(path)
        added_dirs = self.added_dirs
        while "/" in path:
            path = path.rsplit("/", 1)[0]
            if path in added_dirs:
                break
            added_dirs.add(path)
        else:
            added_dirs.add("")

    def _entry(self, tf: tarfile.TarFile, stream: LayerStream, info: tarfile.TarInfo) -> None:
        what = self.what
        parts = _split(info.name, info.name, what)
        if not parts:
            # "./" -- the root directory itself: apply its attributes
            if info.isdir():
                fd = os.open(self.rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    self._dir_attrs(fd, info, "")
                finally:
                    os.close(fd)
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._barrier()
            self._whiteout(parts, info)
            return
        path = "/".join(parts)
        if path in self.added and not (info.isdir() and self._is_dir(parts)):
            # layer.md: "Layer Changesets for the media type application/vnd.oci.image.layer.v1.tar
            # MUST NOT include duplicate entries for file paths in the resulting tar archive."
            raise ImageError(f"{what}: entry {info.name!r}: duplicate entry in layer")
        pfd = self._parent(parts)
        if info.isdir():
            self._dir(pfd, base, info, path)
        elif info.islnk():
            self._barrier()  # the target may be a file a worker is still writing
            self._hardlink(pfd, base, info)
        else:
            workers = self.workers
            try:
                st: os.stat_result | None = os.lstat(base, dir_fd=pfd)
            except FileNotFoundError:
                st = None
            if st is not None:
                # layer.md "Changeset over existing files": remove, then recreate (here, inline)
                self._barrier()
                self._remove(pfd, base, st)
                workers = None
            if info.isreg():
                size = info.size
                self.files_budget -= size
                if size < 0 or self.files_budget < 0:
                    raise ImageError(f"{what}: entry {info.name!r}: expanded size exceeds the limit "
                                     f"(decompression bomb?); raise it with --max-size")
                if workers is not None and info.sparse is None and size <= self.SMALL_FILE:
                    if size:
                        stream.seek(info.offset_data)
                        data = stream.read(size)
                        if len(data) != size:
                            raise ImageError(f"{what}: entry {info.name!r}: truncated file data")
                    else:
                        data = b""
                    workers.submit(parts[0] if len(parts) == 1 else path.rpartition("/")[0],
                                   self._write_file, (pfd, base, info, data), info.name, size)
                else:
                    self._file(pfd, base, tf, stream, info)
            elif info.issym() or info.isfifo() or info.ischr() or info.isblk():
                if (info.ischr() or info.isblk()) and not self.opts.devices:
                    return  # not root: device nodes cannot be created (as umoci --rootless)
                if workers is not None:
                    workers.submit(path.rpartition("/")[0], self._node, (pfd, base, info), info.name)
                else:
                    self._node(pfd, base, info)
            else:
                raise ImageError(f"{what}: entry {info.name!r}: unsupported tar entry type {info.type!r}")
        self._mark_added(path)

    def _is_dir(self, parts: list[str]) -> bool:
        try:
            pfd = self._parent(parts, create=False)
            return stat.S_ISDIR(os.lstat(parts[-1], dir_fd=pfd).st_mode)
        except (OSError, KernelError):
            return False

    def _create(self, pfd: int, name: str, make: Any) -> None:
        """Run make() (link); if the name exists, remove it and retry once."""
        try:
            make()
        except FileExistsError:
            self._remove(pfd, name)
            make()

    # -- entry kinds ---------------------------------------------------------------

    def _node(self, pfd: int, name: str, info: tarfile.TarInfo) -> None:
        """Create a symlink, fifo or device node (the name does not exist)."""
        if info.issym():
            os.symlink(info.linkname, name, dir_fd=pfd)
            self._attrs_nofollow(pfd, name, info)
            return
        if info.isfifo():
            kind, dev = stat.S_IFIFO, 0
        else:
            kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
            dev = os.makedev(info.devmajor, info.devminor)
        os.mknod(name, kind | 0o600, dev, dir_fd=pfd)
        self._attrs_nofollow(pfd, name, info, chmod=True)

    def _write_file(self, pfd: int, name: str, info: tarfile.TarInfo, data: bytes) -> None:
        """Create a regular file with `data` (the name does not exist)."""
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=pfd)
        try:
            if data:
                self._write_all(fd, data)
            self._file_attrs(fd, info)
        finally:
            os.close(fd)

    def _file_attrs(self, fd: int, info: tarfile.TarInfo) -> None:
        if self.opts.ownership:
            os.fchown(fd, info.uid, info.gid)
        os.fchmod(fd, info.mode & 0o7777)  # after chown, which clears setuid bits
        if self.opts.xattrs and info.pax_headers:
            self._xattrs(fd, info)
        mtime = _mtime_ns(info)
        os.utime(fd, ns=(mtime, mtime))

    def _file(self, pfd: int, name: str, tf: tarfile.TarFile, stream: LayerStream,
              info: tarfile.TarInfo) -> None:
        """Create a regular file streaming its data (large or sparse files, or no workers)."""
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=pfd)
        try:
            if info.sparse is not None:
                src = tf.extractfile(info)
                assert src is not None
                while True:
                    data = src.read(CHUNK)
                    if not data:
                        break
                    self._write_all(fd, data)
            elif info.size:
                stream.seek(info.offset_data)
                remaining = info.size
                read = stream.read
                while remaining:
                    data = read(CHUNK if remaining > CHUNK else remaining)
                    if not data:
                        raise ImageError(f"{self.what}: entry {info.name!r}: truncated file data")
                    remaining -= len(data)
                    self._write_all(fd, data)
            self._file_attrs(fd, info)
        finally:
            os.close(fd)

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        n = os.write(fd, data)
        if n != len(data):
            view = memoryview(data)
            while n < len(view):
                n += os.write(fd, view[n:])

    def _dir(self, pfd: int, name: str, info: tarfile.TarInfo, path: str) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.lstat(name, dir_fd=pfd)
            if not stat.S_ISDIR(st.st_mode):
                # layer.md "Changeset over existing files": remove, then recreate
                self._remove(pfd, name, st)
                os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            self._dir_attrs(fd, info, path)
        except BaseException:
            os.close(fd)
            raise
        # the directory we just made is the parent of the entries that follow: cache it
        if path in self._cache:
            os.close(fd)  # the same directory; pending tasks may be using the cached fd
        else:
            self._cache[path] = fd

    def _dir_attrs(self, fd: int, info: tarfile.TarInfo, path: str) -> None:
        if self.opts.ownership:
            os.fchown(fd, info.uid, info.gid)
        mode = info.mode & 0o7777
        if not self.opts.root and mode & 0o700 != 0o700:
            self.dir_modes.append((path, mode))  # keep the dir writable until the layer is done
            mode |= 0o700
        os.fchmod(fd, mode)
        if self.opts.xattrs and info.pax_headers:
            self._xattrs(fd, info)
        self.dir_times.append((path, _mtime_ns(info)))

    def _attrs_nofollow(self, pfd: int, name: str, info: tarfile.TarInfo, chmod: bool = False) -> None:
        if self.opts.ownership:
            os.chown(name, info.uid, info.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:
            # a node we just created in pfd (mknod never makes a symlink), so no follow risk
            os.chmod(name, info.mode & 0o7777, dir_fd=pfd)
        if self.opts.xattrs and info.pax_headers and any(k.startswith("SCHILY.xattr.") for k in info.pax_headers):
            if not info.issym():
                fd = os.open(name, _O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                try:
                    self._xattrs(f"/proc/self/fd/{fd}", info)
                finally:
                    os.close(fd)
        mtime = _mtime_ns(info)
        os.utime(name, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)

    def _xattrs(self, target: int | str, info: tarfile.TarInfo) -> None:
        for key, value in info.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr."):]
            if attr.startswith("trusted.overlay.") or attr == "security.selinux":
                continue  # would change how overlayfs/SELinux treat the file, not its content
            raw = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(target, attr, raw)
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                    raise

    def _hardlink(self, pfd: int, name: str, info: tarfile.TarInfo) -> None:
        tparts = _split(info.linkname, info.name, self.what, "hardlink target")
        if not tparts:
            raise ImageError(f"{self.what}: entry {info.name!r}: hardlink to the root directory")
        try:
            spfd = self._parent(tparts, create=False)
            st = os.lstat(tparts[-1], dir_fd=spfd)
        except (FileNotFoundError, NotADirectoryError, KernelError):
            raise ImageError(f"{self.what}: entry {info.name!r}: hardlink target "
                             f"{info.linkname!r} does not exist in the rootfs") from None
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{self.what}: entry {info.name!r}: hardlink to directory {info.linkname!r}")
        if spfd == pfd and tparts[-1] == name:
            return  # a link to itself: nothing to do
        # linkat() without AT_SYMLINK_FOLLOW: the last component is never followed
        self._create(pfd, name, lambda: os.link(tparts[-1], name, src_dir_fd=spfd, dst_dir_fd=pfd,
                                                follow_symlinks=False))

    # -- whiteouts -------------------------------------------------------------------

    def _whiteout(self, parts: list[str], info: tarfile.TarInfo) -> None:
        base = parts[-1]
        parent = "/".join(parts[:-1])
        try:
            pfd = self._parent(parts, create=False)
        except KernelError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return  # nothing below a missing directory to hide
            raise
        if base == WHITEOUT_OPAQUE:
            # layer.md: an opaque whiteout "hides all children of the directory, including
            # sub-directories"; "Whiteout files MUST only apply to resources in lower/parent
            # layers", so what this layer already added stays.
            self._remove_lower(pfd, parent, None)
            self._mark_added_dir_only(parent)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # other aufs metadata (.wh..wh.plnk etc.): never part of the tree
        victim = base[len(WHITEOUT_PREFIX):]
        if not victim or victim in (".", ".."):
            # layer.md: "A .wh. file, without a basename to delete, is invalid"
            raise ImageError(f"{self.what}: entry {info.name!r}: whiteout without a name")
        vpath = f"{parent}/{victim}" if parent else victim
        try:
            st = os.lstat(victim, dir_fd=pfd)
        except FileNotFoundError:
            return
        if vpath in self.added or vpath in self.added_dirs:
            if stat.S_ISDIR(st.st_mode):
                self._remove_lower(pfd, vpath, victim)
            return
        self._remove(pfd, victim, st)

    def _mark_added_dir_only(self, path: str) -> None:
        # the directory itself now belongs to this layer (so a later whiteout of it in the
        # same layer does not remove what this layer adds below it)
        self.added_dirs.add(path)

    def _remove_lower(self, pfd: int, path: str, name: str | None) -> None:
        """Remove every child of directory `path` that this layer did not add."""
        if name is None:
            fd = self._openat2(self.root_fd, path or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                               0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        else:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            for child in os.listdir(fd):
                cpath = f"{path}/{child}" if path else child
                if cpath in self.added_dirs or cpath in self.added:
                    st = os.lstat(child, dir_fd=fd)
                    if stat.S_ISDIR(st.st_mode):
                        self._remove_lower(fd, cpath, child)
                    continue
                self._remove(fd, child)
        finally:
            os.close(fd)


def open_layer_stream(raw: Any, media_type: str, what: str, budget: list[int]) -> LayerStream:
    from ocipy.spec import image as spec

    compression = spec.LAYER_COMPRESSION.get(media_type)
    if compression is None:
        raise ImageError(f"{what}: unknown layer media type {media_type!r}")
    return LayerStream(raw, compression, what, budget)


# ---------------------------------------------------------------------------
# writing layers


class _Sink:
    """tarfile output: hash the tar (diff_id), compress, write to a BlobWriter."""

    def __init__(self, out: Any, compression: str, level: int | None = None) -> None:
        import hashlib

        self.out = out
        self.diff = hashlib.sha256()
        self.compression = compression
        self._z: Any = None
        if compression == "gzip":
            self._z = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)
        elif compression == "zstd":
            import zstandard

            self._z = zstandard.ZstdCompressor(level=3 if level is None else level).compressobj()
        elif compression != "none":
            raise ImageError(f"unknown compression {compression!r} (gzip, zstd or none)")
        self._pending: list[bytes] = []
        self._pending_len = 0

    def write(self, data: bytes) -> int:
        self.diff.update(data)
        if self._z is None:
            self.out.write(data)
        else:
            out = self._z.compress(data)
            if out:
                self.out.write(out)
        return len(data)

    def close(self) -> None:
        if self._z is not None:
            self.out.write(self._z.flush())

    def tell(self) -> int:
        return 0


class LayerWriter:
    """Write a layer blob: add entries, then finish() -> (descriptor, diff_id)."""

    def __init__(self, layout: Any, compression: str = "gzip") -> None:
        from ocipy.spec import image as spec

        if compression not in spec.COMPRESSED_LAYER_TYPE:
            raise ImageError(f"unknown compression {compression!r} (gzip, zstd or none)")
        self.media_type = spec.COMPRESSED_LAYER_TYPE[compression]
        self.blob = layout.blob_writer()
        self.sink = _Sink(self.blob, compression)
        self._tar: tarfile.TarFile | None = None
        self._copied = False
        self._inodes: dict[tuple[int, int], str] = {}

    @property
    def tar(self) -> tarfile.TarFile:
        if self._tar is None:
            self._tar = tarfile.open(fileobj=self.sink, mode="w|",  # type: ignore[call-overload]
                                     format=tarfile.PAX_FORMAT, bufsize=CHUNK)
        return self._tar

    def add_path(self, src: str, arcname: str, st: os.stat_result | None = None) -> None:
        """Add the file/dir/symlink/device at host path `src` as `arcname` (not recursive)."""
        if st is None:
            st = os.lstat(src)
        info = tarfile.TarInfo(arcname)
        mode = st.st_mode
        info.mode = stat.S_IMODE(mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        key = (st.st_dev, st.st_ino)
        if stat.S_ISREG(mode) and st.st_nlink > 1 and key in self._inodes:
            info.type = tarfile.LNKTYPE
            info.linkname = self._inodes[key]
        elif stat.S_ISREG(mode):
            info.size = st.st_size
            if st.st_nlink > 1:
                self._inodes[key] = arcname
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(src)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # sockets are not representable in tar
        try:
            names = os.listxattr(src, follow_symlinks=False)
        except OSError:
            names = []
        pax: dict[str, str] = {}
        for attr in names:
            if attr == "security.selinux" or attr.startswith("trusted.overlay."):
                continue
            try:
                value = os.getxattr(src, attr, follow_symlinks=False)
            except OSError:
                continue
            pax[f"SCHILY.xattr.{attr}"] = value.decode("utf-8", "surrogateescape")
        if pax:
            info.pax_headers = pax
        if info.type == tarfile.REGTYPE and info.size:
            with open(src, "rb") as f:
                self.tar.addfile(info, f)
        else:
            self.tar.addfile(info)

    def add_whiteout(self, arcname_of_deleted: str) -> None:
        parent, _, base = arcname_of_deleted.rpartition("/")
        info = tarfile.TarInfo(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base)
        info.mode = 0o644
        info.uname = info.gname = ""
        info.mtime = 0
        self.tar.addfile(info)

    def add_tree(self, root: str, prefix: str = "") -> None:
        """Add everything below host directory `root` (sorted, stable)."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            rel = "" if rel == "." else rel
            if rel:
                self.add_path(dirpath, prefix + rel)
            for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                self.add_path(os.path.join(dirpath, name), prefix + (f"{rel}/{name}" if rel else name))
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]

    def copy_tar(self, src: IO[bytes]) -> None:
        """Copy an existing (uncompressed or gzip/zstd) tar stream as the layer's content."""
        if self._tar is not None:
            raise ImageError("copy_tar: entries were already added to this layer")
        self._copied = True
        head = src.read(4)
        compression = "gzip" if head[:2] == b"\x1f\x8b" else "zstd" if head == b"\x28\xb5\x2f\xfd" else "none"

        class _Cat:
            def __init__(self) -> None:
                self.first = head

            def read(self, n: int) -> bytes:
                if self.first:
                    out, self.first = self.first, b""
                    return out
                return src.read(n)

        stream = LayerStream(_Cat(), compression, "tar", [1 << 62], None)
        while True:
            data = stream.read(CHUNK)
            if not data:
                break
            self.sink.write(data)

    def finish(self) -> tuple[dict[str, Any], str]:
        if not self._copied:
            self.tar.close()
        self.sink.close()
        digest, size = self.blob.commit()
        return {"mediaType": self.media_type, "digest": digest, "size": size}, "sha256:" + self.sink.diff.hexdigest()

    def abort(self) -> None:
        self.blob.abort()
