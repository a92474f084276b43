"""The runtime's code cache: its commands' compiled modules in one file.

Every runtime command is a new interpreter (containerd's shim runs four per
container), and about half of what importing a module costs is the import
system finding and reading it: a stat of the directory and of the source,
an open, an fstat, two reads and a close of the .pyc, and the Python code
around them -- ~60 µs a module here, ~1 ms of a `state` (bench/FINDINGS.md).

`make install` writes the code of the modules the runtime's commands use
(ocipy's and the standard library ones they import) into one file
(scripts/make_codecache.py).  The launcher opens it, runs `install` below
(this module's own code is the first object in the file) and leaves the
rest to the finder it installs: a module is read with one pread when it is
imported, so a command pays only for the modules it uses.

Never stale: a module is served from the cache only while its file has the
size and modification time (ns) it had when the cache was written;
otherwise, and for every module not in the cache, the import system looks
as it always does.  The launcher opens a cache only when it starts with the
interpreter's bytecode magic, so another Python's cache is never read.

File: MAGIC (importlib's, 4 bytes), then two length-prefixed parts (4 bytes,
little-endian: each is read with one read, not piecewise) -- marshal(this
module's code) and marshal(index) -- then the modules' code, each
marshalled.  The index maps a module name to (path, kind, mtime_ns, size,
offset, length), offset counted from the end of the index; kind is SOURCE,
PACKAGE or EXTENSION (no code: the shared object is loaded from its path).

This module imports nothing at its top: it runs before the import system
has anything but the interpreter's built-in and frozen modules.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import CodeType, ModuleType
    from typing import Any

SOURCE, PACKAGE, EXTENSION = 0, 1, 2
NAME = "ocipy.codecache"


def install(fd: int) -> None:
    """Read the index that follows in the open cache `fd` and put the cache's
    finder first on sys.meta_path (the fd stays open, close-on-exec, for its
    reads).  Nothing, and `fd` closed, when the file is not whole or this
    module's own source changed since the cache was written (its code here
    would be stale)."""
    import marshal
    import posix
    import sys

    try:
        index = marshal.loads(read_part(posix, fd))
        base = posix.lseek(fd, 0, 1)  # SEEK_CUR (os has the name, posix not)
    except (OSError, ValueError, EOFError, TypeError):
        index = None
    if not isinstance(index, dict) or not _fresh(posix, index.get(NAME)):
        posix.close(fd)
        return
    external = sys.modules["_frozen_importlib_external"]
    module_spec = sys.modules["_frozen_importlib"].ModuleSpec

    class CachedLoader(external.SourceFileLoader):  # type: ignore[misc,name-defined]
        """The import system's own source loader (source, resources, __cached__
        as usual) whose code comes from the cache."""

        def get_code(self, fullname: str) -> "CodeType":
            entry = index.get(fullname)
            if entry is not None and entry[0] == self.path:
                try:
                    data = posix.pread(fd, entry[5], base + entry[4])
                    if len(data) == entry[5]:
                        cached: CodeType = marshal.loads(data)
                        return cached
                except (OSError, ValueError, EOFError, TypeError):
                    pass
            code: CodeType = super().get_code(fullname)
            return code

    class CodeCacheFinder:
        @staticmethod
        def find_spec(name: str, path: "Any" = None, target: "ModuleType | None" = None) -> "ModuleSpec | None":
            entry = index.get(name)
            if entry is None or not _fresh(posix, entry):
                return None
            origin, kind = entry[0], entry[1]
            loader = external.ExtensionFileLoader(name, origin) if kind == EXTENSION else CachedLoader(name, origin)
            spec: ModuleSpec = module_spec(name, loader, origin=origin, is_package=kind == PACKAGE)
            spec.has_location = True
            if kind == PACKAGE:
                spec.submodule_search_locations = [origin.rpartition("/")[0]]
            return spec

    sys.meta_path.insert(0, CodeCacheFinder)


def read_part(posix: "ModuleType", fd: int) -> bytes:
    """One length-prefixed part of the file; ValueError when it is cut short."""
    head = posix.read(fd, 4)
    size = int.from_bytes(head, "little") if len(head) == 4 else -1
    data = posix.read(fd, size) if size >= 0 else b""
    if len(data) != size:
        raise ValueError("code cache: a part is cut short")
    return data


def part(data: bytes) -> bytes:
    """`data` as a length-prefixed part (the writer's side of read_part)."""
    return len(data).to_bytes(4, "little") + data


def _fresh(posix: "ModuleType", entry: "tuple[Any, ...] | None") -> bool:
    """The file is still the one whose code was cached (size, mtime in ns)."""
    if entry is None:
        return False
    try:
        st = posix.stat(entry[0])
    except (OSError, ValueError):
        return False
    return bool(st.st_mtime_ns == entry[2] and st.st_size == entry[3])
