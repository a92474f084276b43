"""Every module the runtime's commands import comes from the code cache
(src/ocipy/codecache.py): a command that imports a module the cache lacks
pays the import system's search again (~60 µs a module, bench/FINDINGS.md).
A module imported in a new place on these paths belongs in
scripts/make_codecache.py's roots."""

from __future__ import annotations

import marshal
import os
import posix
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.helpers import REPO, load_script, unique_id

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates namespaces and mounts"),
]

VENV = REPO / ".venv"
PYTHON = str(VENV / "bin" / "python3")
CACHE = VENV / "ocipy-codecache"


def cache_index() -> dict[str, tuple[Any, ...]]:
    from importlib.util import MAGIC_NUMBER

    from ocipy import codecache

    fd = posix.open(str(CACHE), posix.O_RDONLY)
    try:
        assert posix.read(fd, 4) == MAGIC_NUMBER
        codecache.read_part(posix, fd)  # its own code
        index = marshal.loads(codecache.read_part(posix, fd))
    finally:
        posix.close(fd)
    return index  # type: ignore[no-any-return]


def imported(argv: list[str]) -> set[str]:
    """The modules `argv` (python -X importtime ...) imported, from its stderr
    (a file, not a pipe: a created container's init holds its stdio open)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as err:
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=err, timeout=60, stdin=subprocess.DEVNULL)
        err.seek(0)
        lines = err.read().splitlines()
    names = {line.rpartition("|")[2].strip() for line in lines if line.startswith("import time:")}
    return names - {"imported package"}


def test_the_runtime_commands_import_only_cached_modules(make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    import sys

    assert CACHE.exists(), "no code cache: run `make install`"
    make_launcher = load_script("make_launcher")
    _, purelib = make_launcher.venv_paths(str(VENV))
    code = make_launcher.launcher_code(str(REPO / "src"), purelib, str(CACHE))
    root = str(tmp_path / "state")

    def ocipy(*args: str) -> list[str]:
        return [PYTHON, "-X", "importtime", "-IS", "-c", code, "--root", root, *args]

    before_any = imported([PYTHON, "-X", "importtime", "-IS", "-c", "pass"])  # the interpreter's own start
    index = cache_index()
    from ocipy import codecache

    bundle = make_bundle(["sleep", "30"])
    cid, rid = unique_id("cc"), unique_id("ccr")
    runs = {
        "create": ocipy("create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "pid"), cid),
        "state": ocipy("state", cid),
        "start": ocipy("start", cid),
        "exec": ocipy("exec", cid, "true"),
        "kill": ocipy("kill", cid, "KILL"),
        "delete": ocipy("delete", "--force", cid),
        "delete of a gone container": ocipy("delete", "--force", cid),
        "run": ocipy("run", "--bundle", str(make_bundle(["true"])), rid),
    }
    missing: dict[str, list[str]] = {}
    try:
        for what, argv in runs.items():
            names = imported(argv) - before_any
            assert "ocipy.cli.main" in names, f"{what}: did not run"
            left = sorted(n for n in names if n not in sys.builtin_module_names and n not in index
                          and not _frozen(n))  # fmt: skip
            stale = sorted(n for n in names if n in index and not codecache._fresh(posix, index[n]))
            if left or stale:
                missing[what] = left + [f"{n} (stale: run `make install`)" for n in stale]
    finally:
        subprocess.run([str(VENV / "bin" / "ocipy"), "--root", root, "delete", "-f", cid], check=False)
        subprocess.run([str(VENV / "bin" / "ocipy"), "--root", root, "delete", "-f", rid], check=False)
    assert missing == {}, missing


def _frozen(name: str) -> bool:
    import importlib.machinery

    return importlib.machinery.FrozenImporter.find_spec(name) is not None
