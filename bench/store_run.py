"""Workload 8: `ocipy image run` from the store, side by side with podman and containerd.

* warm: the image is in each engine's store; ``ocipy image run --rm IMAGE
  /bin/true`` vs ``podman run --rm`` (private storage: overlay where podman
  can use it here, else vfs -- the note says which) vs ``ctr run --rm``
  (containerd on a private socket, its overlayfs snapshotter), each with its
  default runtime (runc for the peers; ocipy is its own runtime);
* cold: an empty store each round, the image in a local docker-registry:
  ``ocipy image run --rm HOST/IMAGE`` vs ``podman run --rm --pull always``
  (after ``podman rmi``) vs ``ctr image pull`` + ``ctr run --rm`` (in a new
  namespace each round, so nothing is shared);
* disk: two containers from one ~150 MB image: bytes beyond the snapshots.

The tools take turns in each iteration (rotated order); the first round
warms up and is not recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from common import REPO, Bench, Row, Skip, rotated, timed

sys.path.insert(0, os.path.join(REPO, "tests", "interop"))

import engines  # type: ignore[import-not-found]  # noqa: E402 - tests/interop/engines.py
import imaging  # noqa: E402 - bench/imaging.py: the registry it starts

MS = 1000.0
NS = "ocipy-store-bench"


def _du(path: str) -> int:
    """Bytes allocated below `path` (du -s -B1, one file system)."""
    out = subprocess.run(["du", "-s", "-x", "-B1", path], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def _podman_driver(b: Bench) -> str:
    """overlay if podman can mount it here (a probe container runs), else vfs."""
    probe = subprocess.run(["podman", "--root", b.path("pm-probe", "root"), "--runroot", b.path("pm-probe", "run"),
                            "--storage-driver", "overlay", "info", "--format", "{{.Store.GraphDriverName}}"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    subprocess.run(["rm", "-rf", b.path("pm-probe")], check=False)
    return "overlay" if probe.returncode == 0 and probe.stdout.strip() == "overlay" else "vfs"


def store(b: Bench, iterations: int, cold_iterations: int) -> None:
    missing = engines.missing("podman", "conmon", "containerd", "ctr", engines.SHIM)
    if missing:
        raise Skip(f"not installed: {missing}")
    ocipy = engines.OCIPY
    archives = engines.build_busybox_image(Path(b.path("image")))  # image/layout:v1, busybox
    host = imaging._start_registry(b)
    name = f"{host}/bench/busybox:1"
    layout = b.path("image", "layout")
    timed([ocipy, "image", "copy", f"oci:{layout}:v1", f"docker://{name}"], errlog=b.errlog)

    storage = b.path("ocipy-storage")
    env = dict(os.environ, OCIPY_STORAGE=storage)
    state = b.path("ocipy-state")
    b.on_cleanup("ocipy store", lambda: subprocess.run([ocipy, "image", "prune"], env=env, capture_output=True,
                                                       check=False))  # fmt: skip

    pm = engines.Podman(Path(b.path("pm")))
    driver = _podman_driver(b)
    b.on_cleanup("podman", pm.teardown)
    pm.setup()

    def podman(*args: str) -> list[str]:  # runc: this machine's crun refuses its hybrid cgroups
        argv = pm.cmd(*args, runtime=engines.RUNC)
        return [a if a != "vfs" else driver for a in argv]

    daemon = engines.Containerd(Path(b.path("ctd")))
    b.on_cleanup("containerd", daemon.stop)
    daemon.start()

    def ctr(*args: str, ns: str = NS) -> list[str]:
        return daemon.ctr_cmd(*args, namespace=ns)

    # warm: each engine has the image (loaded from the same docker-archive)
    image = engines.IMAGE
    timed([ocipy, "image", "pull", "-q", f"docker-archive:{archives.docker_archive}:{image}"], env=env,
          errlog=b.errlog)  # fmt: skip
    timed(podman("load", "-i", str(archives.docker_archive)), env=pm.env, errlog=b.errlog)
    timed(ctr("images", "import", str(archives.docker_archive)), errlog=b.errlog)
    opts = ["--network", "none", *engines.PODMAN_ULIMITS]
    tools = {
        "ocipy": lambda i: timed([ocipy, "--root", state, "image", "run", "--rm", "--network", "none", image,
                                  "/bin/true"], env=env, errlog=b.errlog),  # fmt: skip
        "podman": lambda i: timed(podman("run", "--rm", *opts, image, "/bin/true"), env=pm.env, errlog=b.errlog),
        "ctr": lambda i: timed(ctr("run", "--rm", image, b.cid("w"), "/bin/true"), errlog=b.errlog),
    }
    warm: dict[str, list[float]] = {t: [] for t in tools}
    for i in range(iterations + 1):
        for tool in rotated(list(tools), i):
            r = tools[tool](i)
            if i:
                warm[tool].append(r.seconds * MS)
    b.results.add(Row("store", "warm image run --rm /bin/true vs podman", "ms",
                      {"ocipy": warm["ocipy"], "podman": warm["podman"]}, target=("podman", 0.5),
                      note=f"podman 4.3 ({driver} storage, runc, --network none); ocipy: overlay snapshots"))
    b.results.add(Row("store", "warm image run --rm /bin/true vs ctr", "ms",
                      {"ocipy": warm["ocipy"], "ctr": warm["ctr"]}, target=("ctr", 1.0),
                      note="containerd 1.6 (overlayfs snapshotter, runc.v2 shim) `ctr run --rm`"))

    # cold: nothing in any store, the image in the registry
    def ocipy_cold(i: int) -> float:
        cold_env = dict(env, OCIPY_STORAGE=b.path(f"cold-storage-{i}"))
        r = timed([ocipy, "--root", state, "image", "run", "--rm", "-q", "--network", "none", name, "/bin/true"],
                  env=cold_env, errlog=b.errlog)  # fmt: skip
        subprocess.run(["rm", "-rf", b.path(f"cold-storage-{i}")], check=False)
        return r.seconds

    def podman_cold(i: int) -> float:
        timed(podman("rmi", "-a", "-f"), env=pm.env, errlog=b.errlog, check=False)
        return timed(podman("run", "--rm", "--pull", "always", "--tls-verify=false", *opts, name, "/bin/true"),
                     env=pm.env, errlog=b.errlog).seconds  # fmt: skip

    def ctr_cold(i: int) -> float:
        ns = f"{NS}-cold-{i}"
        t = timed(ctr("images", "pull", "--plain-http", name, ns=ns), errlog=b.errlog).seconds
        t += timed(ctr("run", "--rm", name, b.cid("c"), "/bin/true", ns=ns), errlog=b.errlog).seconds
        daemon.remove_everything(ns)
        return t

    cold_tools = {"ocipy": ocipy_cold, "podman": podman_cold, "ctr": ctr_cold}
    cold: dict[str, list[float]] = {t: [] for t in cold_tools}
    for i in range(cold_iterations + 1):
        for tool in rotated(list(cold_tools), i):
            s = cold_tools[tool](i)
            if i:
                cold[tool].append(s * MS)
    b.results.add(Row("store", "cold pull + run --rm vs podman", "ms", {"ocipy": cold["ocipy"], "podman": cold["podman"]},
                      target=("podman", 1.0), note="empty store; busybox from a loopback docker-registry"))
    b.results.add(Row("store", "cold pull + run --rm vs ctr", "ms", {"ocipy": cold["ocipy"], "ctr": cold["ctr"]},
                      target=("ctr", 1.0), note="`ctr image pull` + `ctr run --rm`, a new namespace each round"))

    # disk: two containers from one ~150 MB image
    big = b.path("big")
    os.makedirs(os.path.join(big, "data"))
    with open(os.path.join(big, "data", "blob"), "wb") as f:
        for _ in range(150):
            f.write(os.urandom(1 << 20))
    timed([ocipy, "image", "add-layer", f"oci:{layout}:v1", big], errlog=b.errlog)
    timed([ocipy, "image", "pull", "-q", f"oci:{layout}:v1"], env=env, errlog=b.errlog)
    snaps = _du(os.path.join(storage, "snapshots"))
    ids = [b.cid("disk1"), b.cid("disk2")]
    for cid in ids:
        timed([ocipy, "--root", state, "image", "run", "-d", "--name", cid, "--network", "none",
               "localhost/layout:v1", "sleep", "600"], env=env, errlog=b.errlog)  # fmt: skip
    try:
        extra = sum(_du(os.path.join(storage, "containers", cid)) for cid in ids)
    finally:
        for cid in ids:
            timed([ocipy, "--root", state, "delete", "-f", cid], env=env, errlog=b.errlog, check=False)
    b.results.add(Row("store", "disk: 2 containers of a 150 MB image, beyond snapshots", "KiB",
                      {"ocipy": [extra / 1024]},
                      note=f"snapshots {snaps / (1 << 20):.0f} MiB; goal ≤ 5 MiB (du of both container dirs)"))
    left = os.listdir(os.path.join(storage, "containers"))
    if left:
        b.results.leaks.append(f"store: container dirs left: {left}")
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if storage in line.split()[4]]
    if mounts:
        b.results.leaks.append(f"store: mounts left: {mounts}")
