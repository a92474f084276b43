"""Workloads 1 and 6: lifecycle latency per CLI command, the in-process API, CLI start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from common import (
    CRUN_WRAP,
    OCIPY,
    VENV_PY,
    Bench,
    Row,
    Runtime,
    force_delete_all,
    leak_check,
    make_rootfs,
    rotated,  # fmt: skip
    runtimes,
    timed,
    write_bundle,
)

MS = 1000.0


def lifecycle(b: Bench, iterations: int, names: list[str]) -> None:
    rootfs = make_rootfs(b)
    true_b = write_bundle(b.path("bundles", "true"), rootfs, ["/bin/true"], b.tag)
    sleep_b = write_bundle(b.path("bundles", "sleep"), rootfs, ["/bin/sleep", "3600"], b.tag)
    rts = runtimes(b, names)
    for rt in rts:
        b.on_cleanup(f"{rt.name} containers", lambda rt=rt: force_delete_all(rt, b))

    # exec needs a running container: create+start it first, probe, then skip when unsupported
    exec_ok: dict[str, str | None] = {}
    for rt in rts:
        cid = b.cid("probe")
        try:
            timed(rt.argv("run", "--detach", "--bundle", sleep_b, cid), errlog=b.errlog)
            r = timed(rt.argv("exec", cid, "/bin/true"), check=False, errlog=b.errlog)
            exec_ok[rt.name] = None if r.rc == 0 else f"`{rt.name} exec` does not work yet (exit {r.rc})"
        finally:
            timed(rt.argv("delete", "-f", cid), check=False)

    ops = ["run", "create", "state", "start", "exec", "delete -f"]
    samples: dict[str, dict[str, list[float]]] = {op: {rt.name: [] for rt in rts} for op in ops}
    # one warm-up round (page cache, first-use costs), not recorded
    for i in range(iterations + 1):
        for rt in rotated(rts, i):
            rec = i > 0
            cid = b.cid("run")
            r = timed(rt.argv("run", "--bundle", true_b, cid), errlog=b.errlog)
            if rec:
                samples["run"][rt.name].append(r.seconds * MS)
            cid = b.cid("life")
            t = {}
            t["create"] = timed(rt.argv("create", "--bundle", sleep_b, cid), errlog=b.errlog).seconds
            t["state"] = timed(rt.argv("state", cid), errlog=b.errlog).seconds
            t["start"] = timed(rt.argv("start", cid), errlog=b.errlog).seconds
            if exec_ok[rt.name] is None:
                t["exec"] = timed(rt.argv("exec", cid, "/bin/true"), errlog=b.errlog).seconds
            t["delete -f"] = timed(rt.argv("delete", "-f", cid), errlog=b.errlog).seconds
            if rec:
                for op, v in t.items():
                    samples[op][rt.name].append(v * MS)
    targets = {"run": 1.0, "create": 1.0, "exec": 1.0, "delete -f": 1.0, "state": 1.5, "start": 1.5}
    for op in ops:
        note = ""
        if op == "exec":
            missing = [reason for reason in exec_ok.values() if reason]
            note = "; ".join(missing) + (" — skipped" if missing else "")
        if op == "delete -f":
            note = "of a running container (SIGKILL, wait, remove cgroups and state)"
        if op == "run":
            note = "foreground `run /bin/true` (create+start+wait+delete)"
        b.results.add(Row("lifecycle", op, "ms", samples[op], target=("runc", targets[op]), note=note))
    leak_check(b, rts, "lifecycle")


def api_vs_crun(b: Bench, iterations: int) -> None:
    """ocipy.api create+start+wait+delete (and api.run) in one process vs `crun run`."""
    rootfs = make_rootfs(b)
    true_b = write_bundle(b.path("bundles", "true"), rootfs, ["/bin/true"], b.tag)
    (crun,) = runtimes(b, ["crun"])
    api_root = b.path("state", "ocipy-api")
    os.makedirs(api_root, exist_ok=True)
    api_rt = Runtime("ocipy-api", [OCIPY, "--root", api_root], api_root)
    b.on_cleanup("api containers", lambda: force_delete_all(api_rt, b))

    req_r, req_w = os.pipe()
    ans_r, ans_w = os.pipe()
    worker = subprocess.Popen([VENV_PY, os.path.join(os.path.dirname(__file__), "api_worker.py"), str(req_r),
                               str(ans_w)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(b.errlog, "ab"), pass_fds=(req_r, ans_w))  # fmt: skip
    os.close(req_r)
    os.close(ans_w)
    wr = os.fdopen(req_w, "w", buffering=1)
    rd = os.fdopen(ans_r, "r")

    def stop() -> None:
        try:
            wr.write('{"op": "quit"}\n')
            wr.close()
        except (OSError, ValueError):  # already stopped
            pass
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    b.on_cleanup("api worker", stop)

    def ask(op: str) -> dict[str, float]:
        wr.write(json.dumps({"op": op, "id": b.cid("api"), "bundle": true_b, "root": api_root}) + "\n")
        line = rd.readline()
        if not line:
            raise RuntimeError("api worker died (see stderr log)")
        ans = json.loads(line)
        if "error" in ans:
            raise RuntimeError(f"api worker: {ans['error']}")
        if ans.get("status") != 0:
            raise RuntimeError(f"api worker: container exited {ans.get('status')}")
        return ans

    cyc: dict[str, list[float]] = {k: [] for k in ("create", "start", "wait", "delete", "total")}
    apirun: list[float] = []
    objects: list[float] = []
    crun_run: list[float] = []
    wrap: list[float] = []
    for i in range(iterations + 1):
        rec = i > 0
        steps = ["cycle", "objects", "run", "crun", "wrap"]
        for step in rotated(steps, i):
            if step == "cycle":
                a = ask("cycle")
                if rec:
                    for k in cyc:
                        cyc[k].append(a[k] * MS)
            elif step == "run":
                a = ask("run")
                if rec:
                    apirun.append(a["total"] * MS)
            elif step == "objects":
                a = ask("objects")
                if rec:
                    objects.append(a["total"] * MS)
            elif step == "crun":
                r = timed(crun.argv("run", "--bundle", true_b, b.cid("crun")), errlog=b.errlog)
                if rec:
                    crun_run.append(r.seconds * MS)
            else:
                r = timed([*CRUN_WRAP, "/bin/true"], errlog=b.errlog)
                if rec:
                    wrap.append(r.seconds * MS)
    crun_net = [max(0.0, c - sorted(wrap)[len(wrap) // 2]) for c in crun_run]
    note = "in-process api.create+start+waitpid+delete(force) vs `crun run /bin/true`"
    b.results.add(Row("api", "create+start+wait+delete", "ms", {"ocipy": cyc["total"], "crun": crun_run},
                      target=("crun", 0.5), note=note + " (crun incl. its unshare/umount wrapper)"))
    b.results.add(Row("api", "create+start+wait+delete vs crun−wrapper", "ms",
                      {"ocipy": cyc["total"], "crun": crun_net}, target=("crun", 0.5),
                      note="the same, with the wrapper's median cost subtracted from crun (conservative)"))
    b.results.add(Row("api", "Container: create, start(), wait(), delete(force)", "ms",
                      {"ocipy": objects, "crun": crun_run}, target=("crun", 0.5),
                      note="the object layer; ÷ the functions' cycle above is its cost"))
    b.results.add(Row("api", "api.run (foreground)", "ms", {"ocipy": apirun, "crun": crun_run}))
    for k in ("create", "start", "wait", "delete"):
        b.results.add(Row("api", f"  api.{k}", "ms", {"ocipy": cyc[k]}, note="part of the cycle above"))
    b.results.add(Row("api", "crun wrapper alone (unshare -m; umount; exec /bin/true)", "ms", {"crun": wrap}))
    stop()
    leak_check(b, [api_rt, crun], "api")


def startup(b: Bench, iterations: int, names: list[str]) -> None:
    """`--version` and `state ID` of a created container: the cost of starting the CLI."""
    rootfs = make_rootfs(b)
    sleep_b = write_bundle(b.path("bundles", "sleep"), rootfs, ["/bin/sleep", "3600"], b.tag)
    rts = runtimes(b, names)
    ids = {}
    for rt in rts:
        cid = b.cid("st")
        timed(rt.argv("create", "--bundle", sleep_b, cid), errlog=b.errlog)
        ids[rt.name] = cid
        b.on_cleanup(f"{rt.name} {cid}", lambda rt=rt, cid=cid: timed(rt.argv("delete", "-f", cid), check=False))
    ver: dict[str, list[float]] = {rt.name: [] for rt in rts}
    st: dict[str, list[float]] = {rt.name: [] for rt in rts}
    for i in range(iterations + 1):
        for rt in rotated(rts, i):
            # --version needs no cgroups: crun runs without its wrapper here
            bare = [rt.prefix[0]] if rt.name.startswith("ocipy") else [rt.name]
            v = timed([*bare, "--version"]).seconds * MS
            s = timed(rt.argv("state", ids[rt.name]), errlog=b.errlog).seconds * MS
            if i:
                ver[rt.name].append(v)
                st[rt.name].append(s)
    b.results.add(Row("startup", "--version", "ms", ver, note="crun without the wrapper"))
    b.results.add(Row("startup", "state ID (created)", "ms", st, target=("runc", 1.5)))
    for rt in rts:
        timed(rt.argv("delete", "-f", ids[rt.name]), check=False)
    leak_check(b, rts, "startup")


def floor(b: Bench, iterations: int, names: list[str]) -> None:
    """The commands an engine makes several times per container against the interpreter's own start.

    `python -IS -c pass` (the venv's interpreter, no site, nothing imported) is
    the floor of any CPython command on this machine; each iteration times it
    between the commands: state and start of a created container, kill of a
    running one, delete of the stopped one, and the `delete --force` of a
    container that is gone, which containerd's shim makes after every delete.
    """
    rootfs = make_rootfs(b)
    sleep_b = write_bundle(b.path("bundles", "sleep"), rootfs, ["/bin/sleep", "3600"], b.tag)
    rts = runtimes(b, names)
    for rt in rts:
        b.on_cleanup(f"{rt.name} containers", lambda rt=rt: force_delete_all(rt, b))
    ops = ("state", "start", "kill", "delete", "delete -f (gone)")
    samples: dict[str, dict[str, list[float]]] = {op: {rt.name: [] for rt in rts} for op in ops}
    bare: list[float] = []
    for i in range(iterations + 1):
        for rt in rotated(rts, i):
            cid = b.cid("fl")
            timed(rt.argv("create", "--bundle", sleep_b, cid), errlog=b.errlog)
            t = {"state": timed(rt.argv("state", cid), errlog=b.errlog).seconds}
            p = timed([VENV_PY, "-IS", "-c", "pass"]).seconds
            t["start"] = timed(rt.argv("start", cid), errlog=b.errlog).seconds
            t["kill"] = timed(rt.argv("kill", cid, "KILL"), errlog=b.errlog).seconds
            _wait_stopped(rt, cid, b)
            t["delete"] = timed(rt.argv("delete", cid), errlog=b.errlog).seconds
            t["delete -f (gone)"] = timed(rt.argv("delete", "--force", cid), errlog=b.errlog).seconds
            if i:
                bare.append(p * MS)
                for op, v in t.items():
                    samples[op][rt.name].append(v * MS)
    for op in ops:
        row = dict(samples[op], python=bare)
        b.results.add(Row("floor", op, "ms", row, target=("python", 1.15),
                          note="python = `python -IS -c pass`, timed between the commands"))  # fmt: skip
    leak_check(b, rts, "floor")


def _wait_stopped(rt: Runtime, cid: str, b: Bench) -> None:
    for _ in range(500):
        out = timed(rt.argv("state", cid), capture=True, errlog=b.errlog).out
        if json.loads(out or b"{}").get("status") == "stopped":
            return
    raise RuntimeError(f"{rt.name}: {cid} did not stop after SIGKILL")


if __name__ == "__main__":
    print("run bench/run.py", file=sys.stderr)
