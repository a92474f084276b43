"""--network private for real: slirp4netns serves a container's namespace,
-p reaches a server inside from the host's loopback, the container reaches
a server on the host's own address, and nothing is left once it is deleted."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ocipy.engine import network
from support.helpers import alive, free_port, read_through_port, unique_id

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates namespaces"),
    pytest.mark.skipif(shutil.which("slirp4netns") is None, reason="slirp4netns is not installed (make install)"),
]

MakeBundle = Callable[..., Path]



def _host_address() -> str | None:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        return line.split()[3].split("/")[0]
    return None


def _private(make_bundle: MakeBundle, engine_dir: Path, script: str, ports: list[network.Port],
             hook: bool = True) -> Path:  # fmt: skip
    def edit(config: dict[str, Any]) -> None:
        network.configure(config, "private", ports, str(engine_dir))
        if not hook:  # the test starts slirp4netns itself
            del config["hooks"]["createRuntime"]

    return make_bundle(["sh", "-c", script], edit=edit)



def test_port_forward_from_host_loopback(runtime: Any, make_bundle: MakeBundle, tmp_path: Path) -> None:
    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()
    host_port = free_port()
    ports = [network.parse_port(f"127.0.0.1:{host_port}:8080")]
    script = "ip -4 addr show tap0 > /tap0; echo hello-from-inside | nc -l -p 8080; sleep 1"
    bundle = _private(make_bundle, engine_dir, script, ports, hook=False)
    cid = unique_id("net")
    runtime("create", "--bundle", str(bundle), cid)
    net = network.Private(str(engine_dir), runtime.state(cid)["pid"], ports, foreground=True)
    slirp = net.proc.pid
    try:
        runtime("start", cid)
        read_through_port(host_port, b"hello-from-inside")
        assert network.GUEST_ADDR in (bundle / "rootfs" / "tap0").read_text()
    finally:
        runtime("delete", "-f", cid)
        net.stop()
    assert not alive(slirp), "slirp4netns survived the container"
    assert not (engine_dir / "network.json").exists()


def test_outbound_and_cleanup_by_poststop_hook(runtime: Any, make_bundle: MakeBundle, tmp_path: Path) -> None:
    address = _host_address()
    if address is None:
        pytest.skip("the host has no non-loopback IPv4 address for the container to reach")
    server = socket.socket()
    server.bind((address, 0))
    server.listen(1)
    server.settimeout(30)
    heard: list[bytes] = []

    def serve() -> None:
        try:
            conn, _ = server.accept()
            with conn:
                heard.append(conn.recv(100))
        except OSError:
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()
    port = server.getsockname()[1]
    script = f"cat /etc/resolv.conf > /resolv; echo out-from-inside | nc {address} {port}; sleep 300"
    bundle = _private(make_bundle, engine_dir, script, [])
    cid = unique_id("net")
    # As `image run -d`: the createRuntime hook starts slirp4netns, delete's poststop hook stops it.
    runtime("create", "--bundle", str(bundle), cid)
    slirp = int(json.loads((engine_dir / "network.json").read_text())["pid"])
    try:
        runtime("start", cid)
        thread.join(30)
        assert heard == [b"out-from-inside\n"]
        assert "nameserver 10.0.2.3" in (bundle / "rootfs" / "resolv").read_text()
        assert alive(slirp)
    finally:
        server.close()
        thread.join()
        runtime("delete", "-f", cid)
    deadline = time.monotonic() + 10
    while alive(slirp):
        assert time.monotonic() < deadline, "the poststop hook did not stop slirp4netns"
        time.sleep(0.05)
    assert not (engine_dir / "network.json").exists()
