"""Progress callbacks on real copies: from a local docker-registry, to it, and from an OCI layout."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from test_registry_support import Registry, make_layout, ocipy

from ocipy import api_image, api_registry

pytestmark = pytest.mark.interop


class Recorder:
    """A progress callback that keeps every call (from any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, digest: str, done: int, total: int) -> None:
        with self.lock:
            self.calls.append((digest, done, total))

    def of(self, digest: str) -> list[tuple[int, int]]:
        return [(d, t) for g, d, t in self.calls if g == digest]


def _layers(layout: Path) -> list[dict[str, object]]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return manifest["layers"] + [manifest["config"]]  # type: ignore[no-any-return]


def _check_copied(rec: Recorder, blobs: list[dict[str, object]]) -> None:
    for b in blobs:
        seen = rec.of(str(b["digest"]))
        size = int(str(b["size"]))
        assert seen, f"no progress for {b['digest']}"
        assert seen[0] == (0, size)  # started
        assert seen[-1] == (size, size)  # done reaches total, once
        assert [s for s in seen if s[0] == size] == [(size, size)]
        dones = [d for d, _ in seen]
        assert dones == sorted(dones)  # only grows


def test_callback_sees_each_layer_from_a_registry_and_a_layout(registry: Registry, workdir: Path) -> None:
    src = make_layout(workdir / "src", layers=3, layer_size=3 << 20, seed="pg")
    blobs = _layers(src)

    push = Recorder()  # layout -> registry
    api_registry.copy(f"oci:{src}:latest", registry.ref("pg/img:1"), progress=push)
    _check_copied(push, blobs)
    assert any(0 < d < t for _, d, t in push.calls)  # bytes reported while they moved

    pull = Recorder()  # registry -> layout, through the image API
    out = workdir / "out"
    api_image.copy(registry.ref("pg/img:1"), f"oci:{out}:1", progress=pull)
    _check_copied(pull, blobs)

    again = Recorder()  # every blob is there: one call each, done == total
    api_registry.copy(registry.ref("pg/img:1"), f"oci:{out}:2", progress=again)
    for b in blobs:
        assert again.of(str(b["digest"])) == [(int(str(b["size"])), int(str(b["size"])))]

    unpacked = Recorder()  # unpacking reports compressed bytes per layer
    api_image.unpack(f"oci:{out}:1", str(workdir / "bundle"), progress=unpacked)
    for b in blobs[:-1]:
        seen = unpacked.of(str(b["digest"]))
        assert seen[0] == (0, b["size"]) and seen[-1] == (b["size"], b["size"])


def test_bool_progress_is_still_accepted(registry: Registry, workdir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    src = make_layout(workdir / "src", seed="pb")
    api_registry.copy(f"oci:{src}:latest", f"oci:{workdir / 'a'}:1", progress=False)
    api_registry.copy(f"oci:{src}:latest", f"oci:{workdir / 'b'}:1", progress=True)
    err = capsys.readouterr().err  # not a terminal under pytest: one line per blob
    assert err.count("Copied blob sha256:") == 2  # the layer and the config


def test_cli_lines_off_a_terminal_and_quiet(registry: Registry, workdir: Path) -> None:
    src = make_layout(workdir / "src", layers=2, seed="pc")
    # copy reports on stdout, as skopeo copy does; stderr is for the error alone
    proc = ocipy("image", "copy", f"oci:{src}:latest", registry.ref("pc/img:1"))
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("Copied blob sha256:") for line in lines), proc.stdout
    assert proc.stderr == ""
    proc = ocipy("copy", f"oci:{src}:latest", registry.ref("pc/img:2"))
    assert proc.stdout.count("(already present)") == 3, proc.stdout
    assert ocipy("image", "copy", "-q", f"oci:{src}:latest", registry.ref("pc/img:3")).stdout == ""
    assert ocipy("copy", "--quiet", f"oci:{src}:latest", f"oci:{workdir / 'o'}:1").stdout == ""
    proc = ocipy("image", "unpack", f"oci:{src}:latest", str(workdir / "bundle"))
    assert proc.stderr == "", proc.stderr  # unpack shows bars on a terminal only
    assert ocipy("image", "unpack", "-q", f"oci:{src}:latest", str(workdir / "b2")).stderr == ""


def test_cli_draws_bars_on_a_terminal(registry: Registry, workdir: Path) -> None:
    """stdout a pseudo-terminal: a bar per layer with bytes and total (rich), not lines."""
    import os
    import pty
    import subprocess

    from test_registry_support import OCIPY

    src = make_layout(workdir / "src", layers=2, layer_size=1 << 20, seed="pt")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([OCIPY, "image", "copy", f"oci:{src}:latest", registry.ref("pt/img:1")],
                                stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        screen = b""
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            screen += data
        assert proc.wait(60) == 0
    finally:
        os.close(master)
    text = screen.decode("utf-8", "replace")
    assert "\x1b[" in text and "Copied blob" not in text
    for layer in _layers(src)[:-1]:
        assert f"blob {str(layer['digest'])[:19]}" in text, text
    assert "1.0/1.0 MiB" in text, text


def test_image_objects_from_a_registry(registry: Registry, workdir: Path) -> None:
    from ocipy.errors import RegistryError

    src = make_layout(workdir / "src", layers=2, layer_size=100_000, seed="io")
    local = api_image.open(f"oci:{src}:latest")
    rec = Recorder()
    assert api_image.push(local.reference, registry.ref("io/app:1"), progress=rec) == local.digest
    _check_copied(rec, _layers(src))
    remote = api_image.open(registry.ref("io/app:1"))
    assert (remote.digest, remote.tags, remote.layers) == (local.digest, ["1"], local.layers)
    assert remote.labels == {"seed": "io"} and remote.env == ["PATH=/bin"]
    assert remote.inspect() == api_image.inspect(registry.ref("io/app:1"))
    # copy_to another repository of the same registry, pinned to the digest read
    again = Recorder()
    copied = remote.copy_to(registry.ref("io/other:2"), progress=again)
    assert copied.digest == remote.digest and copied.tags == ["2"]
    assert {g for g, _, _ in again.calls} == {str(b["digest"]) for b in _layers(src)}
    pulled = copied.copy_to(f"oci:{workdir / 'pulled'}:x")
    assert pulled.tags == ["x"] and pulled.config == local.config
    config = remote.unpack(str(workdir / "bundle"))
    assert config["process"]["env"][-1] == "PATH=/bin"
    with pytest.raises(RegistryError) as e:
        api_image.open(registry.ref("io/app:missing"))
    assert e.value.status == 404 and e.value.code == "MANIFEST_UNKNOWN"
