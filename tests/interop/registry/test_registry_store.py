"""The store against a real docker-registry: `image run NAME` pulls what is
missing, a second run is warm (nothing fetched), `--pull always` looks again."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_registry_support import Registry

from support.helpers import OCIPY

pytestmark = [pytest.mark.interop, pytest.mark.skipif(os.geteuid() != 0, reason="running a container needs root")]


def _ocipy(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([OCIPY, *args], capture_output=True, text=True, timeout=180, env=env,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    if check:
        assert proc.returncode == 0, f"ocipy {' '.join(args)}: {proc.stderr}"
    return proc


def test_run_pulls_a_bare_name_then_runs_warm(registry: Registry, workdir: Path, busybox_rootfs: Path) -> None:
    storage, state, layout = workdir / "storage", workdir / "state", workdir / "bb"
    env = dict(os.environ, OCIPY_STORAGE=str(storage))
    _ocipy(env, "image", "init", str(layout))
    _ocipy(env, "image", "new", f"oci:{layout}:1")
    _ocipy(env, "image", "add-layer", f"oci:{layout}:1", str(busybox_rootfs))
    _ocipy(env, "image", "config", f"oci:{layout}:1", "--cmd", "/bin/echo", "--cmd", "v1")
    _ocipy(env, "image", "copy", f"oci:{layout}:1", registry.ref("team/bb:1"))
    name = f"{registry.host}/team/bb:1"

    # not in the store: pulled (one line per layer off a TTY), then run
    cold = _ocipy(env, "--root", str(state), "image", "run", "--rm", "--network", "none", name)
    assert cold.stdout == "v1\n", cold.stderr
    assert [i["name"] for i in json.loads(_ocipy(env, "image", "ls", "--json").stdout)] == [name]

    # warm: the registry is gone and the store alone serves the run
    registry.stop()
    warm = _ocipy(env, "--root", str(state), "image", "run", "--rm", "--network", "none", "team/bb:1", "/bin/echo", "warm")
    assert warm.stdout == "warm\n", warm.stderr
    again = _ocipy(env, "--root", str(state), "image", "run", "--rm", "--network", "none", "--pull", "always", name,
                   check=False)  # fmt: skip
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert os.listdir(storage / "containers") == []
    assert not state.exists() or os.listdir(state) == []


def test_pull_by_docker_reference_and_inspect_from_the_store(registry: Registry, workdir: Path,
                                                             oci_image: Path) -> None:
    env = dict(os.environ, OCIPY_STORAGE=str(workdir / "storage"))
    _ocipy(env, "image", "copy", f"oci:{oci_image}:latest", registry.ref("small/img:3"))
    digest = _ocipy(env, "image", "pull", "-q", registry.ref("small/img:3")).stdout.strip()
    name = f"{registry.host}/small/img:3"
    shown = json.loads(_ocipy(env, "image", "inspect", name).stdout)
    assert shown["Digest"] == digest if "Digest" in shown else shown["digest"] == digest
    _ocipy(env, "image", "validate", name)
