"""runc's pause, resume, ps, events and update commands."""

from __future__ import annotations

import sys

from ocipy.errors import OcipyError

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:
    import argparse

# pause, resume and ps parse their few arguments by hand: argparse and re cost
# ~10 ms of start-up, more than the work itself.


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(prog=f"ocipy {prog}", description=description, allow_abbrev=False)

    def error(message: str) -> Any:
        raise OcipyError(f"ocipy {prog}: {message}")

    p.error = error  # type: ignore[method-assign]
    return p


def _one_id(prog: str, argv: list[str]) -> str:
    if len(argv) == 1 and not argv[0].startswith("-"):
        return argv[0]
    if argv and argv[0] in ("-h", "--help"):
        raise OcipyError(f"usage: ocipy {prog} CONTAINER_ID")
    raise OcipyError(f"ocipy {prog}: exactly one container id is required (got {len(argv)} arguments)")


def run_pause(argv: list[str], opts: Any) -> int:
    from ocipy import api

    api.pause(_one_id("pause", argv), root=opts.root)
    return 0


def run_resume(argv: list[str], opts: Any) -> int:
    from ocipy import api

    api.resume(_one_id("resume", argv), root=opts.root)
    return 0


def run_ps(argv: list[str], opts: Any) -> int:
    """ps [-f table|json] ID [ps args...]: everything after the id goes to ps(1)."""
    from ocipy import api

    fmt = "table"
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        arg = argv[i]
        if arg in ("-f", "--format", "-format"):
            if i + 1 >= len(argv):
                raise OcipyError("ocipy ps: --format needs a value (table or json)")
            fmt = argv[i + 1]
            i += 2
        elif arg.startswith(("--format=", "-f=", "-format=")):
            fmt = arg.split("=", 1)[1]
            i += 1
        elif arg in ("-h", "--help"):
            sys.stdout.write("usage: ocipy ps [-f table|json] CONTAINER_ID [ps options]\n")
            return 0
        else:
            raise OcipyError(f"ocipy ps: unknown option {arg!r}")
    if i < len(argv) and argv[i] == "--":
        i += 1
    if i >= len(argv):
        raise OcipyError("ocipy ps: a container id is required")
    container_id, ps_args = argv[i], argv[i + 1:]
    if ps_args and ps_args[0] == "--":
        ps_args = ps_args[1:]
    if fmt not in ("table", "json"):
        raise OcipyError(f"ocipy ps: invalid format {fmt!r} (table or json)")
    pids = api.processes(container_id, root=opts.root)
    if fmt == "json":
        if ps_args:
            raise OcipyError("ocipy ps: ps options cannot be used with --format json")
        import json

        sys.stdout.write(json.dumps(pids) + "\n")
        return 0
    import subprocess

    try:
        proc = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True)
    except FileNotFoundError:
        raise OcipyError("ocipy ps: ps(1) is not installed") from None
    if proc.returncode != 0:
        raise OcipyError(f"ocipy ps: ps {' '.join(ps_args or ['-ef'])}: {proc.stderr.strip()}")
    lines = proc.stdout.split("\n")
    header = lines[0].split()
    if "PID" not in header:
        raise OcipyError("ocipy ps: couldn't find PID field in ps output")
    col = header.index("PID")
    wanted = set(pids)
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            out.append(line)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


_DURATION = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)"
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration ("5s", "500ms", "1m30s") in seconds."""
    import re

    pos, total = 0, 0.0
    if text in ("0",):
        return 0.0
    pattern = re.compile(_DURATION)
    while pos < len(text):
        m = pattern.match(text, pos)
        if not m:
            raise OcipyError(f"invalid duration {text!r} (use e.g. 5s, 500ms, 1m)")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise OcipyError("invalid duration ''")
    return total


def run_events(argv: list[str], opts: Any) -> int:
    import json

    from ocipy import api

    p = _parser("events", "print container events (OOM) and resource statistics")
    p.add_argument("--interval", default="5s", help="stats collection interval (default 5s)")
    p.add_argument("--stats", action="store_true", help="display the container's stats then exit")
    p.add_argument("container_id")
    args = p.parse_args(argv)
    interval = parse_duration(args.interval)
    if interval <= 0:
        raise OcipyError("ocipy events: duration interval must be greater than 0")
    def line(event: dict[str, Any]) -> str:
        # compact, as runc's encoding/json writes it: tools grep for '{"type":"oom","id":'
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n"

    if args.stats:
        sys.stdout.write(line(api.stats(args.container_id, root=opts.root)))
        return 0
    try:
        for event in api.events(args.container_id, interval, root=opts.root):
            sys.stdout.write(line(event))
            sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (events | head): stop quietly, as runc does
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0


_SIZE = r"^\s*(-?\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$"


def parse_bytes(text: str, flag: str) -> int:
    """runc's (go-units RAMInBytes) sizes: "64m", "1.5g", "512MiB", "1024", "-1"."""
    import re

    m = re.match(_SIZE, text, re.IGNORECASE)
    if not m:
        raise OcipyError(f"invalid value for {flag}: {text!r} (use bytes or a size like 64m)")
    value = float(m.group(1))
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}[m.group(2).lower()]
    if value < 0 and value != -1:
        raise OcipyError(f"invalid value for {flag}: {text!r} (negative)")
    return -1 if value == -1 else int(value * mult)


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise OcipyError(f"invalid value for {flag}: {text!r} is not an integer") from None


def run_update(argv: list[str], opts: Any) -> int:
    from ocipy import api

    p = _parser("update", "update a container's resource constraints")
    p.add_argument("-r", "--resources", help="path to a file with the resources JSON (- for stdin)")
    p.add_argument("--blkio-weight", help="block IO weight, 10..1000")
    p.add_argument("--cpu-period", help="CPU CFS period in microseconds")
    p.add_argument("--cpu-quota", help="CPU CFS quota in microseconds")
    p.add_argument("--cpu-burst", help="CPU CFS burst in microseconds")
    p.add_argument("--cpu-share", "--cpu-shares", dest="cpu_share", help="CPU shares (relative weight)")
    p.add_argument("--cpu-rt-period", help="CPU realtime period in microseconds")
    p.add_argument("--cpu-rt-runtime", help="CPU realtime runtime in microseconds")
    p.add_argument("--cpu-idle", help="1: SCHED_IDLE for the cgroup, 0: default")
    p.add_argument("--cpuset-cpus", help="CPUs to use (0-3, 0,1)")
    p.add_argument("--cpuset-mems", help="memory nodes to use (0-3, 0,1)")
    p.add_argument("--kernel-memory", help="kernel memory limit (deprecated)")
    p.add_argument("--kernel-memory-tcp", help="kernel TCP memory limit (deprecated)")
    p.add_argument("--memory", help="memory limit (e.g. 64m)")
    p.add_argument("--memory-reservation", help="memory soft limit")
    p.add_argument("--memory-swap", help="memory+swap limit (-1: unlimited)")
    p.add_argument("--pids-limit", help="maximum number of pids (-1: unlimited)")
    p.add_argument("--l3-cache-schema", help="Intel RDT L3 cache schema (not supported)")
    p.add_argument("--mem-bw-schema", help="Intel RDT memory bandwidth schema (not supported)")
    p.add_argument("container_id")
    args = p.parse_args(argv)

    res: dict[str, Any] = {}
    if args.resources:
        try:
            if args.resources == "-":
                text = sys.stdin.read()
            else:
                with open(args.resources) as f:
                    text = f.read()
            from ocipy import jsonfast  # bounded nesting: a deep document is a ValueError

            loaded = jsonfast.loads(text)
        except OSError as e:
            raise OcipyError(f"update: cannot read {args.resources}: {e.strerror}") from None
        except ValueError as e:
            raise OcipyError(f"update: {args.resources}: invalid JSON: {e}") from None
        if not isinstance(loaded, dict):
            raise OcipyError(f"update: {args.resources}: must hold a JSON object (linux.resources)")
        res = loaded
    if args.l3_cache_schema is not None or args.mem_bw_schema is not None:
        raise OcipyError("Intel RDT is not supported by ocipy (--l3-cache-schema / --mem-bw-schema)")
    # The flags' values, as numbers (sizes as runc reads them); the API puts them into place.
    limits: dict[str, Any] = {}
    for flag, attr in (("--memory", "memory"), ("--memory-reservation", "memory_reservation"),
                       ("--memory-swap", "memory_swap"), ("--kernel-memory", "kernel_memory"),
                       ("--kernel-memory-tcp", "kernel_memory_tcp")):  # fmt: skip
        value = getattr(args, attr)
        if value is not None:
            limits[attr] = parse_bytes(value, flag)
    for flag, attr in (("--cpu-share", "cpu_share"), ("--cpu-quota", "cpu_quota"), ("--cpu-period", "cpu_period"),
                       ("--cpu-burst", "cpu_burst"), ("--cpu-rt-period", "cpu_rt_period"),
                       ("--cpu-rt-runtime", "cpu_rt_runtime"), ("--cpu-idle", "cpu_idle")):  # fmt: skip
        value = getattr(args, attr)
        if value is not None:
            limits["cpu_shares" if attr == "cpu_share" else attr] = _int(value, flag)
    limits["cpuset_cpus"], limits["cpuset_mems"] = args.cpuset_cpus, args.cpuset_mems
    if args.pids_limit is not None:
        limits["pids_limit"] = _int(args.pids_limit, "--pids-limit")
    if args.blkio_weight is not None:
        limits["blkio_weight"] = _int(args.blkio_weight, "--blkio-weight")
    api.update(args.container_id, res, root=opts.root, **limits)
    return 0
