"""Build .venv/bin/ocipy: the small static launcher of src/ocipy/linux/launcher.c.

The launcher executes the venv's interpreter from a read-only bind of
itself (see launcher.c for why) as `python -IS -c CODE ARGS...`: isolated
and without `site` (pip's console script imports `re` and processes the
editable install's .pth files, twice the start-up), with CODE putting the
source and the venv's site-packages on sys.path itself.

Usage: make_launcher.py VENV SRC
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


def main() -> None:
    venv = os.path.abspath(sys.argv[1])
    src = os.path.abspath(sys.argv[2])
    python = os.path.join(venv, "bin", "python3")
    purelib = sysconfig.get_path("purelib", vars={"base": venv, "platbase": venv})
    code = f"import sys\nsys.path[:0] = [{src!r}, {purelib!r}]\nfrom ocipy.cli.main import entry\nentry()\n"
    target = os.path.join(venv, "bin", "ocipy")
    source = os.path.join(src, "ocipy", "linux", "launcher.c")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "launcher-paths.h"), "w") as f:
            f.write(f"#define OCIPY_PYTHON {c_string(python)}\n#define OCIPY_CODE {c_string(code)}\n")
        cmd = ["gcc", "-Os", "-static", "-s", "-Wall", "-Wextra", "-Werror", "-I", tmp, "-o", target + ".tmp", source]
        print(f"gcc -static {source} -> {target}")
        subprocess.run(cmd, check=True)
    os.replace(target + ".tmp", target)


main()
