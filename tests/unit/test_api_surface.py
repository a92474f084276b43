"""The public API's surface changes only on purpose (trio's test_exports is the
model), stays cheap to import, and library code never reaches into the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent.parent / "src" / "ocipy"

API = [
    "DEFAULT_ROOT", "DEVNULL", "PIPE", "Container", "Process", "Result", "Stream", "containers", "create",
    "delete", "events", "exec", "exec_stream", "features", "get", "kill", "list_containers", "pause", "processes",
    "resume", "run", "run_stream", "spawn", "spec", "start", "state", "stats", "update",
]  # fmt: skip
CONTAINER = [
    "annotations", "bundle", "config", "created", "delete", "events", "exec", "exec_stream", "get", "id", "kill",
    "owner", "pause", "pid", "processes", "resume", "root", "rootfs", "spawn", "start", "state", "stats", "status",
    "update", "wait",
]  # fmt: skip
API_IMAGE = [
    "Image", "ProgressCallback", "Reporter", "add_layer", "configure", "copy", "create", "export", "gc", "import_image",
    "images", "init", "inspect", "list_tags", "new", "open", "prune", "pull", "push", "remove", "repack", "reporter", "run", "tag", "unpack",
    "validate",
]  # fmt: skip
IMAGE = [
    "add_layer", "cmd", "config", "configure", "copy_to", "created", "descriptor", "digest", "entrypoint", "env",
    "export", "inspect", "labels", "layers", "manifest", "options", "platform", "reference", "size", "tag", "tags",
    "unpack",
]  # fmt: skip
REPORTER = ["close", "message"]
AIO = ["AsyncStream", "Container", "create", "get", "run", "run_stream", "wait_pid"]
ERRORS = ["ConfigError", "ContainerExists", "ContainerNotFound", "HookError", "ImageError", "InvalidConfig",
          "InvalidState", "KernelError", "NotRunning", "OcipyError", "RegistryError"]  # fmt: skip


def test_api_exports_exactly_its_surface() -> None:
    from ocipy import api

    assert sorted(api.__all__) == sorted(API)
    for name in API:
        assert getattr(api, name) is not None, name
    public = sorted(n for n in vars(api.Container) if not n.startswith("_")) + ["id", "root"]
    assert sorted(public) == sorted(CONTAINER)


def test_api_image_exports_exactly_its_surface() -> None:
    from ocipy import api_image

    assert sorted(api_image.__all__) == sorted(API_IMAGE)
    for name in API_IMAGE:
        assert getattr(api_image, name) is not None, name
    fixed = ["options", "platform", "reference", "tags"]  # set in __init__
    public = sorted(n for n in vars(api_image.Image) if not n.startswith("_")) + fixed
    assert sorted(public) == sorted(IMAGE)
    assert sorted(n for n in vars(api_image.Reporter) if not n.startswith("_")) == REPORTER
    assert callable(api_image.reporter("quiet"))


def test_aio_and_errors_exports() -> None:
    from ocipy import aio, errors

    assert sorted(aio.__all__) == sorted(AIO)
    for name in ERRORS:
        assert issubclass(getattr(errors, name), errors.OcipyError), name
    assert errors.ConfigError is errors.InvalidConfig
    e = errors.KernelError("mount", "/x", 13)
    assert (e.op, e.path, e.errno) == ("mount", "/x", 13)
    assert errors.InvalidConfig("process.args", "empty").field == "process.args"


def test_importing_the_api_loads_no_runtime_and_no_typing() -> None:
    code = ("import sys; import ocipy.api; "
            "print(sorted(m for m in sys.modules if m.startswith('ocipy') or m in ('typing', 'logging', 'threading', 'asyncio')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(SRC.parent)!r}); {code}"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.strip() == "['ocipy', 'ocipy.api']"


def test_library_code_never_imports_the_cli() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("cli",) or rel.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n == "ocipy.cli" or n.startswith("ocipy.cli.") for n in names):
                offenders.append(str(rel))
    assert offenders == []
