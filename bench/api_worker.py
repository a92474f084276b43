"""In-process lifecycle through ``ocipy.api``: a long-lived worker the harness drives.

Reads one JSON request per line from fd argv[1], answers one JSON line on fd argv[2] (fds
0-2 are /dev/null so the containers inherit nothing of the protocol).  The
container's init is the worker's child when create clones it directly, a
grandchild when a bootstrap process is needed: the worker is a child
subreaper so it can wait for it either way.

  {"op": "cycle", "id": ID, "bundle": B, "root": R}
      -> {"create": s, "start": s, "wait": s, "delete": s, "total": s, "status": N}
  {"op": "run", ...} -> {"total": s, "status": N}      # api.run() in the foreground
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    from ocipy import api

    for fd in (int(sys.argv[1]), int(sys.argv[2])):
        os.set_inheritable(fd, False)  # the containers must not inherit the protocol pipes
    rd = os.fdopen(int(sys.argv[1]), "r")
    wr = os.fdopen(int(sys.argv[2]), "w", buffering=1)
    for line in rd:
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "cycle":  # the module's functions, the caller reaping the init itself
                t0 = time.perf_counter()
                pid = api.create(req["id"], req["bundle"], root=req["root"]).pid
                t1 = time.perf_counter()
                api.start(req["id"], root=req["root"])
                t2 = time.perf_counter()
                _, status = os.waitpid(pid, 0)
                t3 = time.perf_counter()
                api.delete(req["id"], root=req["root"], force=True)
                t4 = time.perf_counter()
                # reap whatever else was reparented to us (nothing is expected)
                try:
                    while os.waitpid(-1, os.WNOHANG)[0] > 0:
                        pass
                except ChildProcessError:
                    pass
                ans = {"create": t1 - t0, "start": t2 - t1, "wait": t3 - t2, "delete": t4 - t3,
                       "total": t4 - t0, "status": os.waitstatus_to_exitcode(status)}  # fmt: skip
            elif op == "objects":  # the same through the Container object's methods
                t0 = time.perf_counter()
                c = api.create(req["id"], req["bundle"], root=req["root"])
                c.start()
                code = c.wait()
                c.delete(force=True)
                ans = {"total": time.perf_counter() - t0, "status": code}
            elif op == "run":
                t0 = time.perf_counter()
                result = api.run(req["id"], req["bundle"], root=req["root"])
                ans = {"total": time.perf_counter() - t0, "status": result.exit_code}
            elif op == "quit":
                return
            else:
                ans = {"error": f"unknown op {op}"}
        except Exception as e:  # noqa: BLE001 - the harness reports it
            ans = {"error": f"{type(e).__name__}: {e}"}
        wr.write(json.dumps(ans) + "\n")


if __name__ == "__main__":
    main()
