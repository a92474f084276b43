"""Write the runtime's code cache (src/ocipy/codecache.py says what it is and why).

Usage: make_codecache.py VENV SRC OUT

The modules cached are the runtime's: ocipy.cli's runtime commands, and
everything under ocipy.runtime, ocipy.linux and ocipy.spec, with whatever
they import when loaded (ocipy's and the standard library's), plus the
standard-library modules the runtime imports inside functions.  Image and
registry commands are left to the import system: they are not started per
container.  Run with the venv's interpreter: the code is compiled by the
interpreter that will run it.
"""

import ast
import marshal
import os
import subprocess
import sys

# ocipy.cli modules outside the runtime: image and registry commands
_NOT_RUNTIME = {"ocipy.cli.image", "ocipy.cli.registry"}
_PACKAGES = ("cli", "runtime", "linux", "linux/cgroups", "spec")
# ocipy.api: the CLI's exec goes through it
_TOP = ("ocipy.errors", "ocipy.log", "ocipy.jsonfast", "ocipy.fsutil", "ocipy.codecache", "ocipy.api")
# imported inside the runtime's functions (a terminal, rlimits, hooks, sockets)
_STDLIB_LATER = ("resource", "struct", "socket", "termios", "subprocess", "array", "select", "pwd")

# Run by the interpreter that will use the cache: import the roots, report every
# module that came from a file as (name, path, is a package) -- with nothing
# imported for the listing itself (no importlib, no json).
_LISTER = """
import sys
sys.path[:0] = {path!r}
for name in {roots!r}:
    try:
        __import__(name)
    except Exception as e:  # left to the import system, where it fails as it would without a cache
        print(f"make_codecache: {{name}} not cached: {{type(e).__name__}}: {{e}}", file=sys.stderr)
out = []
for name, module in sorted(sys.modules.items()):
    spec = getattr(module, "__spec__", None)
    if spec is None or not spec.has_location or not spec.origin or name == "__main__":
        continue
    out.append((name, spec.origin, spec.submodule_search_locations is not None))
print(repr(out))
"""


def roots(src: str) -> list[str]:
    names = list(_TOP)
    for package in _PACKAGES:
        directory = os.path.join(src, "ocipy", package)
        dotted = "ocipy." + package.replace("/", ".")
        for entry in sorted(os.listdir(directory)):
            if entry.endswith(".py"):
                name = dotted if entry == "__init__.py" else f"{dotted}.{entry[:-3]}"
                if name not in _NOT_RUNTIME:
                    names.append(name)
    return names + list(_STDLIB_LATER)


def build(venv: str, src: str, out: str) -> str:
    """Write the cache of `src`'s runtime modules to `out`; returns a summary line."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_launcher import venv_paths  # the venv's interpreter and site-packages, as the launcher runs them

    python, purelib = venv_paths(venv)
    from ocipy import codecache  # the venv's (editable) ocipy: the format's constants
    from ocipy.fsutil import write_file

    lister = _LISTER.format(path=[src, purelib], roots=roots(src))
    listed = subprocess.run([python, "-IS", "-c", lister], check=True, capture_output=True, text=True)
    modules = ast.literal_eval(listed.stdout)
    from importlib.machinery import EXTENSION_SUFFIXES
    index: dict[str, tuple[str, int, int, int, int, int]] = {}
    blobs: list[bytes] = []
    offset = 0
    own_code = None
    for name, path, is_package in modules:
        st = os.stat(path)
        if path.endswith(".py"):
            code = compile(code_source(path), path, "exec", dont_inherit=True)
            if name == codecache.NAME:  # its first part: run before anything, so without docstrings
                own_code = compile(code_source(path), path, "exec", dont_inherit=True, optimize=2)
            data = marshal.dumps(code)
            kind = codecache.PACKAGE if is_package else codecache.SOURCE
        elif path.endswith(tuple(EXTENSION_SUFFIXES)):
            data, kind = b"", codecache.EXTENSION
        else:
            continue
        index[name] = (path, kind, st.st_mtime_ns, st.st_size, offset, len(data))
        blobs.append(data)
        offset += len(data)
    if own_code is None:
        raise SystemExit(f"make_codecache: {codecache.NAME} was not among the modules listed")
    from importlib.util import MAGIC_NUMBER

    payload = MAGIC_NUMBER + codecache.part(marshal.dumps(own_code)) + codecache.part(marshal.dumps(index))
    payload += b"".join(blobs)
    write_file(out, payload, 0o644)
    return f"code cache: {len(index)} modules, {len(payload) // 1024} KiB -> {out}"


def code_source(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


if __name__ == "__main__":
    print(build(*(os.path.abspath(a) for a in sys.argv[1:4])))
