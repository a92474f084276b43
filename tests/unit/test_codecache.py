"""The runtime's code cache (src/ocipy/codecache.py): modules come from it only
while their source is unchanged, and a cache that is not whole, or not this
interpreter's, is never used -- the import system then works as it always does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.helpers import REPO, load_script

VENV = REPO / ".venv"
PYTHON = str(VENV / "bin" / "python3")

# What a `state` imports: the modules the cache is there for.
STATE_MODULES = ["ocipy.cli.main", "ocipy.cli.lifecycle", "ocipy.runtime.operations", "ocipy.cli.gojson",
                 "ocipy.linux.freezer", "ocipy.linux.procstat", "ocipy.errors", "ocipy.runtime.store"]  # fmt: skip

# Printed by the probe: per module, its loader's class and the attributes
# code relies on (__file__ for files beside it, __path__ for subpackages).
PROBE = """
import json, sys
names = {names!r}
for n in names:
    __import__(n)
out = {{}}
for n in names:
    m = sys.modules[n]
    out[n] = [type(m.__spec__.loader).__name__, m.__file__, getattr(m, "__cached__", None),
              getattr(m, "__path__", None), m.__spec__.origin, m.__spec__.parent]
out["extras"] = {{"CHANGED": getattr(sys.modules.get("ocipy.log"), "CHANGED", None)}}
print(json.dumps(out))
"""


make_codecache = load_script("make_codecache")
make_launcher = load_script("make_launcher")


def probe(src: Path, cache: Path, names: list[str]) -> dict[str, list]:  # type: ignore[type-arg]
    """Import `names` as the launcher would (sys.path, then the cache at `cache`)."""
    _, purelib = make_launcher.venv_paths(str(VENV))
    code = make_launcher.launcher_code(str(src), purelib, str(cache), entry=PROBE.format(names=names))
    proc = subprocess.run([PYTHON, "-IS", "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of src/ (its extension module included) to change files in."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def build(src: Path, out: Path) -> None:
    make_codecache.build(str(VENV), str(src), str(out))


def test_the_runtime_modules_come_from_the_cache_with_the_attributes_of_an_import(tree: Path,
                                                                                   tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build(tree, cache)
    cached = probe(tree, cache, STATE_MODULES + ["ocipy.linux._syscall", "ocipy.linux"])
    plain = probe(tree, tmp_path / "no-such-cache", STATE_MODULES + ["ocipy.linux._syscall", "ocipy.linux"])
    for name in STATE_MODULES + ["ocipy.linux"]:
        assert cached[name][0] == "CachedLoader", name
        assert plain[name][0] == "SourceFileLoader", name
        assert cached[name][1:] == plain[name][1:], name  # __file__, __cached__, __path__, origin, parent
    assert cached["ocipy.linux._syscall"][0] == plain["ocipy.linux._syscall"][0] == "ExtensionFileLoader"
    assert cached["ocipy.linux._syscall"][1:] == plain["ocipy.linux._syscall"][1:]


def test_a_changed_module_is_read_from_its_source_and_the_rest_from_the_cache(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build(tree, cache)
    log = tree / "ocipy" / "log.py"
    st = log.stat()
    log.write_text(log.read_text() + "\nCHANGED = 1\n")
    os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: the size tells
    got = probe(tree, cache, STATE_MODULES + ["ocipy.log"])
    assert got["ocipy.log"][0] == "SourceFileLoader"
    assert got["extras"]["CHANGED"] == 1
    assert got["ocipy.errors"][0] == "CachedLoader"

    errors = tree / "ocipy" / "errors.py"
    os.utime(errors, ns=(st.st_atime_ns, errors.stat().st_mtime_ns + 1_000))  # same size: the mtime tells
    assert probe(tree, cache, ["ocipy.errors"])["ocipy.errors"][0] == "SourceFileLoader"


def test_a_changed_cache_module_turns_the_whole_cache_off(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build(tree, cache)
    own = tree / "ocipy" / "codecache.py"
    os.utime(own, ns=(own.stat().st_atime_ns, own.stat().st_mtime_ns + 1_000))  # its code in the cache is stale
    got = probe(tree, cache, STATE_MODULES)
    assert {got[n][0] for n in STATE_MODULES} == {"SourceFileLoader"}


def test_another_interpreters_cache_is_never_read(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build(tree, cache)
    data = bytearray(cache.read_bytes())
    data[0] ^= 0xFF  # the bytecode magic of some other Python
    cache.write_bytes(bytes(data))
    got = probe(tree, cache, STATE_MODULES)
    assert {got[n][0] for n in STATE_MODULES} == {"SourceFileLoader"}


@pytest.mark.parametrize("where", ["magic", "own code", "index", "modules"])
def test_a_cache_cut_short_is_not_used_and_breaks_nothing(tree: Path, tmp_path: Path, where: str) -> None:
    cache = tmp_path / "cache"
    build(tree, cache)
    data = cache.read_bytes()
    own = int.from_bytes(data[4:8], "little")
    index = int.from_bytes(data[8 + own:12 + own], "little")
    cut = {"magic": 2, "own code": 8 + own // 2, "index": 12 + own + index // 2,
           "modules": 12 + own + index + 100}[where]  # fmt: skip
    cache.write_bytes(data[:cut])
    got = probe(tree, cache, STATE_MODULES)  # no error, every module imported
    loaders = {got[n][0] for n in STATE_MODULES}
    if where == "modules":  # the index is whole: a module whose code is cut off is compiled from its source
        assert loaders <= {"SourceFileLoader", "CachedLoader"}
    else:
        assert loaders == {"SourceFileLoader"}
