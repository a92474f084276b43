"""Pull and unpack speed, ocipy against skopeo and umoci (issue 13's "Speed" goals).

    .venv/bin/python bench/pullspeed.py [--iterations N] [--baseline OCIPY] [--tmp DIR] [--output FILE]

Builds two images from the Python standard library (one 50 MB layer; four
layers of 20-120 MB), pushes them into a private docker-registry on loopback
(or into --host), then times, interleaved, every round in a fresh directory:

* pull: ``ocipy image copy docker://… oci:…`` vs ``skopeo copy``;
* unpack: ``ocipy image unpack oci:…`` vs ``umoci unpack`` (page cache warm);
* streaming: ``ocipy image unpack docker://… bundle`` vs ``skopeo copy`` and
  ``umoci unpack`` run back to back.

Each cell gives wall-clock and CPU (user+sys of the command and its children)
medians; ratio = ocipy ÷ peer.  ``--baseline`` times another ocipy launcher (an
older checkout's ``.venv/bin/ocipy``) in the same rounds as "before".  Every copy runs in ``unshare -m`` with an empty
tmpfs on /var/lib/containers/cache (skopeo's blob-info cache) for both tools.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import OCIPY, machine_info, rotated  # noqa: E402

CACHE_WRAP = ["unshare", "-m", "sh", "-c",
              'mount -t tmpfs bench-cache /var/lib/containers/cache 2>/dev/null; exec "$@"', "sh"]  # fmt: skip
PYLIB = "/root/.pyenv/versions/3.11.7/lib/python3.11"
MB = 1000 * 1000


def run(argv: list[str], errlog: str) -> tuple[float, float]:
    """(wall s, cpu s) of argv; raises on failure."""
    with open(errlog, "ab") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        with open(errlog, "rb") as f:
            tail = f.read()[-400:].decode(errors="replace")
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {tail}")
    return wall, ru.ru_utime + ru.ru_stime


def _trees(tmp: str) -> dict[str, list[str]]:
    """Source directories: 'small' is one layer, 'multi' four."""
    src = os.path.join(tmp, "src")
    if os.path.isdir(src):
        shutil.rmtree(src)
    os.makedirs(src)
    layers: dict[str, list[str]] = {"small": [], "multi": []}
    small = os.path.join(src, "small")
    os.makedirs(small)
    from imaging import _copy_subset

    _copy_subset(PYLIB, small, 50 * MB, ("test", "config-3.11-x86_64-linux-gnu"))
    layers["small"].append(small)
    groups = [("encodings", "json", "multiprocessing", "unittest", "ensurepip"), ("test",),
              ("lib-dynload", "config-3.11-x86_64-linux-gnu"), ("idlelib", "tkinter", "lib2to3", "email", "asyncio")]
    for i, names in enumerate(groups):
        d = os.path.join(src, f"m{i}")
        os.makedirs(d)
        for n in names:
            if os.path.isdir(os.path.join(PYLIB, n)):
                shutil.copytree(os.path.join(PYLIB, n), os.path.join(d, n), symlinks=True)
        layers["multi"].append(d)
    return layers


def build(tmp: str, host: str, errlog: str) -> str:
    layout = os.path.join(tmp, "layout")
    shutil.rmtree(layout, ignore_errors=True)
    run([OCIPY, "image", "init", layout], errlog)
    for tag, dirs in _trees(tmp).items():
        run([OCIPY, "image", "new", f"oci:{layout}:{tag}"], errlog)
        for d in dirs:
            run([OCIPY, "image", "add-layer", "--compress", "gzip", f"oci:{layout}:{tag}", d], errlog)
        run([*CACHE_WRAP, "skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
             f"docker://{host}/bench/{tag}:1"], errlog)
    return layout


def start_registry(tmp: str) -> tuple[str, subprocess.Popen[bytes]]:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = os.path.join(tmp, "registry.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {tmp}/registry\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", cfg], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://{host}/v2/", timeout=1):
                return host, proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("docker-registry did not answer")


def commands(tool: str, case: str, img: str, host: str, layout: str, out: str,
             baseline: str | None = None) -> list[str]:
    src = f"docker://{host}/bench/{img}:1"
    exe = baseline if tool == "before" else OCIPY
    ours = tool in ("ocipy", "before")
    assert exe is not None
    if case == "pull":
        if ours:
            return [*CACHE_WRAP, exe, "image", "copy", "--src-tls-verify=false", src, f"oci:{out}:x"]
        return [*CACHE_WRAP, "skopeo", "copy", "-q", "--src-tls-verify=false", src, f"oci:{out}:x"]
    if case == "unpack":
        if ours:
            return [exe, "image", "unpack", f"oci:{layout}:{img}", f"{out}-b"]
        return ["umoci", "unpack", "--image", f"{layout}:{img}", f"{out}-b"]
    if ours:  # stream
        return [*CACHE_WRAP, exe, "image", "unpack", "--tls-verify=false", src, f"{out}-b"]
    return [*CACHE_WRAP, "sh", "-c", f"skopeo copy -q --src-tls-verify=false {src} oci:{out}:x && "
            f"umoci unpack --image {out}:x {out}-b"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=7)
    p.add_argument("--cases", default="pull,unpack,stream")
    p.add_argument("--images", default="small,multi")
    p.add_argument("--tmp", default=None)
    p.add_argument("--reuse", action="store_true", help="keep --tmp's images and registry storage")
    p.add_argument("--output", default=None)
    p.add_argument("--baseline", help="another ocipy launcher, timed alongside as 'before'")
    args = p.parse_args()
    tmp = args.tmp or tempfile.mkdtemp(prefix="ocipy-pullspeed-")
    os.makedirs(tmp, exist_ok=True)
    errlog = os.path.join(tmp, "errors.log")
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the registry on the way out
    host, proc = start_registry(tmp)
    try:
        layout = os.path.join(tmp, "layout")
        if not (args.reuse and os.path.isdir(layout)):
            build(tmp, host, errlog)
        peer = {"pull": "skopeo", "unpack": "umoci", "stream": "skopeo+umoci"}
        rows = []
        for case in args.cases.split(","):
            for img in args.images.split(","):
                tools = ["ocipy", "peer"] + (["before"] if args.baseline else [])
                samples: dict[str, list[tuple[float, float]]] = {t: [] for t in tools}
                for i in range(args.iterations + 1):  # round 0 warms caches and is not counted
                    for tool in rotated(tools, i):
                        out = os.path.join(tmp, f"out-{tool}-{case}-{img}-{i}")
                        shutil.rmtree(out, ignore_errors=True)  # left by an interrupted run
                        shutil.rmtree(out + "-b", ignore_errors=True)
                        subprocess.run(["sync"])
                        r = run(commands(tool, case, img, host, layout, out, args.baseline), errlog)
                        shutil.rmtree(out, ignore_errors=True)
                        shutil.rmtree(out + "-b", ignore_errors=True)
                        if i:
                            samples[tool].append(r)
                med = {t: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
                       for t, s in samples.items()}
                rows.append((case, img, peer[case], med))
                o, q = med["ocipy"], med["peer"]
                print(f"{case:7} {img:6} ocipy {o[0]*1000:7.0f} ms (cpu {o[1]*1000:6.0f})  "
                      f"{peer[case]} {q[0]*1000:7.0f} ms (cpu {q[1]*1000:6.0f})  "
                      f"wall {o[0]/q[0]:.2f}x cpu {o[1]/q[1]:.2f}x" + (
                          f"  before {med['before'][0]*1000:.0f} ms (cpu {med['before'][1]*1000:.0f})"
                          if "before" in med else ""), flush=True)
    finally:
        proc.terminate()
        proc.wait()
        if not args.tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.output:
        info = machine_info()
        with open(args.output, "w") as f:
            f.write("# pull and unpack speed (bench/pullspeed.py)\n\n")
            f.write("Machine: " + ", ".join(f"{k} {info[k]}" for k in ("nproc", "memory", "kernel"))
                    + f"; {info['cpu']}\n\n")
            for k in ("date", "ocipy", "umoci", "skopeo", "docker-registry"):
                f.write(f"- {k}: {info[k]}\n")
            f.write(f"- command: `{' '.join(sys.argv)}`; medians of {args.iterations} (a warm-up round first)\n\n")
            f.write("| case | image | ocipy wall | ocipy CPU | peer | peer wall | peer CPU | ÷ wall | ÷ CPU |"
                    " before wall | before CPU | before ÷ peer (wall, CPU) |\n")
            f.write("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
            for case, img, pname, med in rows:
                o, q = med["ocipy"], med["peer"]
                b = med.get("before")
                tail = (f" {b[0]*1000:.0f} ms | {b[1]*1000:.0f} ms | {b[0]/q[0]:.2f}×, {b[1]/q[1]:.2f}× |"
                        if b else " | | |")
                f.write(f"| {case} | {img} | {o[0]*1000:.0f} ms | {o[1]*1000:.0f} ms | {pname} | "
                        f"{q[0]*1000:.0f} ms | {q[1]*1000:.0f} ms | {o[0]/q[0]:.2f}× | {o[1]/q[1]:.2f}× |{tail}\n")


if __name__ == "__main__":
    main()
