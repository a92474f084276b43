"""Kubernetes' path: containerd's CRI plugin runs pods through ocipy (issue 2, containerd part).

containerd starts with the CRI plugin and the exact runtime-handler block of
docs/kubernetes.md (only BinaryName points at this checkout, and Root keeps
the runtimes' state in the temp dir).  Debian has no crictl, so the test
speaks CRI itself (engines.CriClient: gRPC on containerd's socket) and runs
a host-network pod sandbox and a container with handler "ocipy", then the
same with "runc", and compares.  `ctr` checks the config in the k8s.io
namespace too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engines import (
    IMAGE,
    OCIPY,
    RUNC,
    Containerd,
    CriClient,
    CriError,
    build_busybox_image,
    build_pause_archive,
    missing,
    pb,
    pb_map,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: containerd creates namespaces and mounts"),
    pytest.mark.skipif(bool(missing("containerd", "ctr", "containerd-shim-runc-v2", RUNC)),
                       reason=f"not installed: {missing('containerd', 'ctr', 'containerd-shim-runc-v2', RUNC)}"),
]

DOC = Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md"
PAUSE = "docker.io/library/ocipy-pause:latest"
K8S = "k8s.io"  # the namespace the CRI plugin uses
HANDLERS = ("ocipy", "runc")


def doc_config() -> str:
    """The containerd block of docs/kubernetes.md, as a user would paste it."""
    text = DOC.read_text()
    marker = text.index("<!-- containerd-config")
    block = re.search(r"```toml\n(.*?)```", text[marker:], re.S)
    assert block, "docs/kubernetes.md: no toml block after the containerd-config marker"
    return block.group(1)


@pytest.fixture(scope="module")
def cri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    work = tmp_path_factory.mktemp("cri-images")
    base = tmp_path_factory.mktemp("cri")
    cgroup_parent = f"/ocipy-cri-{uuid.uuid4().hex[:8]}"
    block = doc_config()
    assert block.startswith("version = 2\n")
    block = block.replace('BinaryName = "/usr/local/bin/ocipy"', f'BinaryName = "{OCIPY}"')
    assert OCIPY in block
    # Root keeps each runtime's state under the temp dir (the shim adds the namespace)
    block = block.replace('runtime_type = "io.containerd.runc.v2"\n\n',
                          'runtime_type = "io.containerd.runc.v2"\n'
                          '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
                          f'    Root = "{base}/runtime-state/runc"\n\n', 1)  # fmt: skip
    block = block.replace("SystemdCgroup = false", f'SystemdCgroup = false\n    Root = "{base}/runtime-state/ocipy"')
    ours = ("[plugins.\"io.containerd.grpc.v1.cri\"]\n"
            '  stream_server_address = "127.0.0.1"\n  stream_server_port = "0"\n'
            f'  sandbox_image = "{PAUSE}"\n'
            # no CAP_SYS_RESOURCE here: the pause container's oomScoreAdj -998 fails with runc and ocipy alike
            "  restrict_oom_score_adj = true\n"
            "  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n"
            f'    bin_dir = "{base}/cni/bin"\n    conf_dir = "{base}/cni/conf"\n')  # fmt: skip
    daemon = Containerd(base, runtime_config=ours + block.removeprefix("version = 2\n"), cri=True)
    daemon.cgroup_parent = cgroup_parent  # type: ignore[attr-defined]
    try:
        archives = build_busybox_image(work)
        pause = build_pause_archive(work)
        daemon.start()
        for archive in (archives.docker_archive, pause):
            p = daemon.ctr("images", "import", str(archive), namespace=K8S)
            assert p.returncode == 0, p.stderr
        yield daemon
    finally:
        try:
            client = CriClient(str(daemon.socket))
            for pod_id in _pods(client):
                for call in ("StopPodSandbox", "RemovePodSandbox"):
                    try:
                        client.call(call, pb((1, pod_id)), timeout=30)
                    except Exception:  # noqa: BLE001 - best effort, stop() kills what is left
                        pass
        except Exception:  # noqa: BLE001
            pass
        daemon.stop()
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            path = hierarchy / cgroup_parent.lstrip("/")
            if path.is_dir():
                for sub in sorted(path.rglob("*"), key=lambda p: len(str(p)), reverse=True):
                    if sub.is_dir():
                        sub.rmdir()
                path.rmdir()
        shutil.rmtree(work, ignore_errors=True)


def _pods(client: CriClient) -> list[str]:
    reply = client.call("ListPodSandbox", b"")
    return [pb_get(item, 1).decode() for item in reply.get(1, [])]  # type: ignore[arg-type, union-attr]


def pb_get(message: bytes, *path: int) -> Any:
    """The first value at a field path of an encoded message (None when absent: proto3 zero)."""
    from engines import pb_decode

    value: Any = message
    for num in path:
        values = pb_decode(value).get(num)
        if not values:
            return None
        value = values[0]
    return value


def test_doc_config_loads_and_ctr_runs_with_it(cri: Containerd) -> None:
    plugins = cri.ctr("plugins", "ls").stdout
    assert re.search(r"io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok", plugins), plugins + cri.log_tail()
    # the daemon's own view of the config
    dumped = subprocess.run(["containerd", "--config", str(cri.config), "config", "dump"],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert dumped.returncode == 0, dumped.stderr
    runtimes = tomllib.loads(dumped.stdout)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert runtimes["ocipy"]["runtime_type"] == "io.containerd.runc.v2"
    options = runtimes["ocipy"]["options"]
    assert options["BinaryName"] == OCIPY and options["SystemdCgroup"] is False
    # ctr has no runtime handlers: pass the shim the handler's options by hand
    cid = f"ctr-{uuid.uuid4().hex[:8]}"
    p = cri.ctr("run", "--rm", "--runc-binary", options["BinaryName"], "--runc-root", options["Root"],
                IMAGE, cid, "sh", "-c", "echo from k8s.io; exit 4", namespace=K8S)  # fmt: skip
    assert (p.returncode, p.stdout) == (4, "from k8s.io\n"), p.stderr


def pod_config(cri: Containerd, name: str, uid: str) -> bytes:
    host_network = pb((1, pb((1, 2))))  # security_context.namespace_options.network = NODE: no CNI
    return pb(
        (1, pb((1, name), (2, uid), (3, "default"), (4, 0))),  # metadata
        (3, str(cri.base / "pods" / uid)),  # log_directory
        *pb_map(6, {"test": "ocipy"}),  # labels
        (8, pb((1, cri.cgroup_parent), (2, host_network))),  # type: ignore[attr-defined]
    )


def pod_lifecycle(cri: Containerd, handler: str) -> dict[str, Any]:
    client = CriClient(str(cri.socket), lambda: cri.log_tail(3))
    uid = uuid.uuid4().hex[:12]
    (cri.base / "pods" / uid).mkdir(parents=True)
    config = pod_config(cri, f"pod-{handler}", uid)
    seen: dict[str, Any] = {}
    reply = client.call("RunPodSandbox", pb((1, config), (2, handler)))
    pod_id = reply[1][0].decode()  # type: ignore[union-attr]
    status = client.call("PodSandboxStatus", pb((1, pod_id)))[1][0]
    seen["pod state"] = pb_get(status, 3) or 0  # SANDBOX_READY = 0
    seen["pod handler"] = (pb_get(status, 9) or b"").decode()
    container = pb(
        (1, pb((1, "main"))),  # metadata
        (2, pb((1, IMAGE))),  # image
        (3, ["sh", "-c"]),  # command
        (4, ["echo hello from cri; trap 'exit 0' TERM; while :; do sleep 0.1; done"]),  # args
        (6, pb((1, "GREETING"), (2, "hi"))),  # envs
        (11, "main.log"),  # log_path, under the pod's log_directory
    )
    cid = client.call("CreateContainer", pb((1, pod_id), (2, container), (3, config)))[1][0].decode()  # type: ignore[union-attr]
    client.call("StartContainer", pb((1, cid)))
    status = client.call("ContainerStatus", pb((1, cid)))[1][0]
    seen["container state"] = pb_get(status, 3)  # CONTAINER_RUNNING = 1
    # the runtime the shim called has the pod and the container in its state dir
    state_dir = cri.base / "runtime-state" / handler / K8S
    seen["runtime state"] = sorted(os.listdir(state_dir)) == sorted([pod_id, cid])
    reply = client.call("ExecSync", pb((1, cid), (2, ["sh", "-c", "echo $GREETING; echo err >&2; exit 3"]), (3, 20)))
    seen["exec"] = [(reply.get(n) or [None])[0] for n in (1, 2, 3)]
    error = 'exec: \\"/nonexistent\\": stat /nonexistent: no such file'  # runc adds its own prefix
    before = cri.logfile.read_text().count(error)
    try:  # the CRI plugin turns the runtime's exec failure into a gRPC error, and logs the runtime's message
        client.call("ExecSync", pb((1, cid), (2, ["/nonexistent"]), (3, 20)))
        seen["exec missing"] = False
    except CriError:
        seen["exec missing"] = cri.logfile.read_text().count(error) == before + 1
    log = cri.base / "pods" / uid / "main.log"
    deadline = time.monotonic() + 10
    while "hello from cri" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    seen["log"] = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]  # drop the timestamp
    client.call("StopContainer", pb((1, cid), (2, 10)))
    status = client.call("ContainerStatus", pb((1, cid)))[1][0]
    seen["stopped"] = (pb_get(status, 3), pb_get(status, 7) or 0)  # CONTAINER_EXITED = 2, exit code
    client.call("RemoveContainer", pb((1, cid)))
    client.call("StopPodSandbox", pb((1, pod_id)))
    client.call("RemovePodSandbox", pb((1, pod_id)))
    seen["runtime state after"] = sorted(os.listdir(state_dir)) if state_dir.is_dir() else []
    seen["pods after"] = pod_id in _pods(client)
    return seen


def test_cri_pod_and_container_lifecycle(cri: Containerd) -> None:
    results = {handler: pod_lifecycle(cri, handler) for handler in HANDLERS}  # runc first: the reference
    ocipy, runc = results["ocipy"], results["runc"]
    assert ocipy["pod handler"] == "ocipy" and runc["pod handler"] == "runc"
    ocipy.pop("pod handler"), runc.pop("pod handler")
    assert ocipy == runc
    assert ocipy == {
        "pod state": 0,
        "container state": 1,
        "runtime state": True,
        "exec": [b"hi\n", b"err\n", 3],
        "exec missing": True,
        "log": ["stdout F hello from cri"],
        "stopped": (2, 0),
        "runtime state after": [],
        "pods after": False,
    }
