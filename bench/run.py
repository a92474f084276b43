"""ocipy side by side with runc, crun, umoci, skopeo and tar: one run, same inputs, interleaved.

    .venv/bin/python bench/run.py [--quick] [--only lifecycle,api,...] [--iterations N] ...

Prints a table of medians, p90s and ratios (ocipy ÷ peer) with PASS/MISS per
target, and writes it to bench/results/latest.md.  Must run as root.
Everything it starts (containers, the registry, temp dirs, cgroups) is
removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Bench, Results, Skip, fmt, machine_info, median, p90  # noqa: E402

WORKLOADS = ("lifecycle", "api", "startup", "floor", "throughput", "memory", "unpack", "registry", "containerd", "podman", "store")
TOOLS = ("ocipy", "runc", "crun", "umoci", "tar", "skopeo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a sanity run (< 1 minute): few iterations, small inputs")
    p.add_argument("--only", help="comma-separated workloads: " + ",".join(WORKLOADS))
    p.add_argument("--skip", help="comma-separated workloads to leave out")
    p.add_argument("--iterations", type=int, help="lifecycle/api/startup iterations (default 30, quick 5)")
    p.add_argument("--concurrency", help="throughput: comma-separated N (default 1,10,50; quick 1,5)")
    p.add_argument("--throughput-rounds", type=int, help="rounds per N (default 3, quick 1)")
    p.add_argument("--rss-iterations", type=int, help="create RSS samples per runtime (default 5, quick 2)")
    p.add_argument("--floor-resolution", default=None, help="memory floor bisection step, KiB (default 64, quick 512)")
    p.add_argument("--unpack-iterations", type=int, help="unpack samples (default 5 small / 3 large; quick 2)")
    p.add_argument("--small-mb", type=int, default=50, help="size of the small layer (MB, uncompressed)")
    p.add_argument("--large", choices=("auto", "yes", "no"), default="auto",
                   help="the ~1 GB / ~60k files layer (auto: not with --quick)")
    p.add_argument("--source-tree", default="/root/.pyenv/versions/3.11.7",
                   help="directory the layers are made of (generated files when missing)")
    p.add_argument("--compressions", default="gzip,zstd")
    p.add_argument("--registry-iterations", type=int, help="pull/push samples (default 5, quick 2)")
    p.add_argument("--engine-iterations", type=int, help="containerd/podman iterations (default 20, quick 3)")
    p.add_argument("--calls-per", type=int, help="containers per engine run under the logging wrapper (default 5, quick 2)")
    p.add_argument("--runtimes", default="ocipy,runc,crun")
    p.add_argument("--baseline", help="another ocipy launcher (e.g. an older checkout's .venv/bin/ocipy, in a "
                                       "directory of its own: engines tell runtimes by name) timed alongside "
                                       "as ocipy-base (give it in --runtimes)")
    p.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "latest.md"))
    p.add_argument("--tmp", help="parent of the temp dir (default: $TMPDIR or /tmp)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (debugging)")
    return p.parse_args(argv)


def render(results: Results, info: dict[str, str], args: argparse.Namespace, elapsed: float) -> str:
    peers = ["ocipy-base", "runc", "crun", "python", "umoci", "tar", "skopeo", "podman", "ctr"]
    used = [t for t in ["ocipy", *peers] if any(r.samples.get(t) for r in results.rows)]
    used_peers = [t for t in used if t != "ocipy"]
    out = ["# ocipy benchmarks", ""]
    out.append("Machine: " + ", ".join(f"{k} {info[k]}" for k in ("nproc", "memory", "kernel")) + f"; {info['cpu']}")
    out.append("")
    for k in ("date", "python", "ocipy", "runc", "crun", "umoci", "skopeo", "docker-registry", "tar", "cgroups"):
        out.append(f"- {k}: {info[k]}")
    out.append(f"- mode: {'quick' if args.quick else 'full'}; command: `{' '.join(sys.argv)}`; took {elapsed:.0f} s")
    out.append("")
    out.append("Each cell: median (p90) over the samples; ratio = ocipy ÷ peer (medians); lower is better except c/s.")
    out.append("")
    head = ["workload", "metric", "unit", "n"] + used + [f"÷{p}" for p in used_peers] + ["target", "verdict", "note"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for r in results.rows:
        n = max((len(v) for v in r.samples.values()), default=0)
        cells = [r.workload, r.metric, r.unit, str(n)]
        for t in used:
            xs = r.samples.get(t)
            cells.append(f"{fmt(median(xs), r.unit)} ({fmt(p90(xs), r.unit)})" if xs else "")
        for p in used_peers:
            ratio = r.ratio(p)
            cells.append(f"{ratio:.2f}×" if ratio is not None else "")
        if r.target:
            cells.append(f"{'≥' if r.higher_is_better else '≤'} {r.target[1] if not r.higher_is_better else 1 / r.target[1]:.3g}× {r.target[0]}")
        else:
            cells.append("")
        cells.append(r.verdict())
        cells.append(r.note)
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    tgt = [r for r in results.rows if r.target]
    if tgt:
        passed = sum(1 for r in tgt if r.verdict() == "PASS")
        out.append(f"Targets: {passed} PASS, {sum(1 for r in tgt if r.verdict() == 'MISS')} MISS, "
                   f"{sum(1 for r in tgt if r.verdict() == 'n/a')} n/a of {len(tgt)}.")
        out.append("")
    out.append("## Leaks after each workload")
    out.append("")
    out.extend([f"- {leak}" for leak in results.leaks] or ["- none (state dirs, mounts, cgroup dirs, processes)"])
    out.append("")
    if results.notes:
        out.append("## Notes")
        out.append("")
        out.extend(f"- {n}" for n in results.notes)
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run.py needs root (containers, cgroups, mounts)", file=sys.stderr)
        return 2
    only = set(args.only.split(",")) if args.only else set(WORKLOADS)
    if args.skip:
        only -= set(args.skip.split(","))
    unknown = only - set(WORKLOADS)
    if unknown:
        print(f"unknown workloads: {sorted(unknown)}", file=sys.stderr)
        return 2
    q = args.quick
    its = args.iterations or (5 if q else 30)
    names = [n for n in args.runtimes.split(",") if n]
    if args.baseline:
        import common

        common.BASELINE = os.path.abspath(args.baseline)

    # SIGTERM/SIGHUP behave like Ctrl-C: unwind through the cleanup
    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)

    b = Bench(quick=q, keep_tmp=args.keep_tmp, tmp_parent=args.tmp)
    t0 = time.monotonic()
    rc = 0
    try:
        import imaging
        import lifecycle
        import resources
        import via_engines

        plan = []
        if "lifecycle" in only:
            plan.append(("lifecycle", lambda: lifecycle.lifecycle(b, its, names)))
        if "api" in only:
            plan.append(("api", lambda: lifecycle.api_vs_crun(b, its)))
        if "startup" in only:
            plan.append(("startup", lambda: lifecycle.startup(b, its, names)))
        if "floor" in only:
            plan.append(("floor", lambda: lifecycle.floor(b, its, names)))
        if "throughput" in only:
            ns = [int(x) for x in (args.concurrency or ("1,5" if q else "1,10,50")).split(",")]
            rounds = args.throughput_rounds or (1 if q else 3)
            plan.append(("throughput", lambda: resources.throughput(b, ns, rounds, names)))
        if "memory" in only:
            rss_its = args.rss_iterations or (2 if q else 5)
            res = int(args.floor_resolution or (512 if q else 64))
            plan.append(("memory", lambda: resources.memory(b, rss_its, res, names)))
        if "unpack" in only:
            large = args.large == "yes" or (args.large == "auto" and not q)
            u_its = args.unpack_iterations
            plan.append(("unpack", lambda: imaging.unpack(b, args, large, u_its)))
        if "registry" in only:
            r_its = args.registry_iterations or (2 if q else 5)
            plan.append(("registry", lambda: imaging.registry(b, args, r_its)))
        e_its = args.engine_iterations or (3 if q else 20)
        per = args.calls_per or (2 if q else 5)
        if "containerd" in only:
            plan.append(("containerd", lambda: via_engines.containerd(b, e_its, names, per)))
        if "podman" in only:
            plan.append(("podman", lambda: via_engines.podman(b, e_its, names, per)))
        if "store" in only:
            import store_run

            plan.append(("store", lambda: store_run.store(b, e_its, max(2, e_its // 4))))
        for name, fn in plan:
            print(f"== {name}", file=sys.stderr, flush=True)
            w0 = time.monotonic()
            try:
                fn()
            except Skip as e:
                b.results.note(f"{name}: skipped: {e}")
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - one broken workload must not hide the others
                traceback.print_exc()
                b.results.note(f"{name}: FAILED: {type(e).__name__}: {str(e)[:400]}")
                rc = 1
            print(f"   {name} took {time.monotonic() - w0:.1f} s", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        rc = 130
    finally:
        b.cleanup()
    info = machine_info()
    text = render(b.results, info, args, time.monotonic() - t0)
    print(text)
    if rc != 130:
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text + "\n")
        print(f"written to {args.output}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
