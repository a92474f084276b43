"""Build .venv/bin/ocipy: the small static launcher of src/ocipy/linux/launcher.c.

The launcher executes the venv's interpreter from a read-only bind of
itself (see launcher.c for why) as `python -IS -c CODE ARGS...`: isolated
and without `site` (pip's console script imports `re` and processes the
editable install's .pth files, twice the start-up), with CODE putting the
source and the venv's site-packages on sys.path itself, then installing the
runtime's code cache when there is one for this interpreter
(src/ocipy/codecache.py, written by scripts/make_codecache.py).

Usage: make_launcher.py VENV SRC CC...   (CC: the freestanding compile command, from the Makefile)
"""

import os
import subprocess
import sys
import sysconfig
import tempfile


def c_string(text: str) -> str:
    """A C string literal for `text` (octal escapes for anything unusual)."""
    out = []
    for byte in text.encode():
        ch = chr(byte)
        if ch.isascii() and ch.isprintable() and ch not in '"\\?':
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def codecache_path(venv: str) -> str:
    """Where `make install` writes the runtime's code cache (the Makefile names it too)."""
    return os.path.join(venv, "ocipy-codecache")


ENTRY = "from ocipy.cli.main import entry\nentry()\n"


def launcher_code(src: str, purelib: str, cache: str, entry: str = ENTRY) -> str:
    """What the launcher runs (`python -IS -c CODE`): sys.path, the code cache, then `entry`.

    The cache's first part is ocipy.codecache's own code: run it, then its
    install() reads the rest.  Any trouble with the file: no cache, the
    import system as usual."""
    from importlib.util import MAGIC_NUMBER

    return (
        f"import sys\nsys.path[:0] = [{src!r}, {purelib!r}]\n"
        f"import posix\ntry:\n    fd = posix.open({cache!r}, posix.O_RDONLY | posix.O_CLOEXEC)\n"
        "except OSError:\n    fd = -1\n"
        f"if fd >= 0 and posix.read(fd, 4) == {MAGIC_NUMBER!r}:\n"
        "    import marshal\n    g = {'__name__': 'ocipy.codecache'}\n"
        "    try:\n        exec(marshal.loads(posix.read(fd, int.from_bytes(posix.read(fd, 4), 'little'))), g)\n"
        "    except Exception:\n        posix.close(fd)\n    else:\n        g['install'](fd)\n"
        "elif fd >= 0:\n    posix.close(fd)\n" + entry
    )


def venv_paths(venv: str) -> tuple[str, str]:
    """(the venv's interpreter, its site-packages)."""
    return (os.path.join(venv, "bin", "python3"),
            sysconfig.get_path("purelib", vars={"base": venv, "platbase": venv}))  # fmt: skip


def main() -> None:
    venv = os.path.abspath(sys.argv[1])
    src = os.path.abspath(sys.argv[2])
    compiler = sys.argv[3:]  # the Makefile's FREESTANDING_CC, shared with the exe guard's trampoline
    if not compiler:
        raise SystemExit("usage: make_launcher.py VENV SRC CC... (run by `make install`)")
    python, purelib = venv_paths(venv)
    code = launcher_code(src, purelib, codecache_path(venv))
    target = os.path.join(venv, "bin", "ocipy")
    source = os.path.join(src, "ocipy", "linux", "launcher.c")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "launcher-paths.h"), "w") as f:
            f.write(f"#define OCIPY_PYTHON {c_string(python)}\n#define OCIPY_CODE {c_string(code)}\n")
        cmd = [*compiler, "-I", tmp, "-o", target + ".tmp", source]
        print(f"{compiler[0]} -static -nostdlib {source} -> {target}")
        subprocess.run(cmd, check=True)
    os.replace(target + ".tmp", target)


if __name__ == "__main__":
    main()
