"""runc's lifecycle commands: spec, create, start, run, state, list, kill, delete, features."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ocipy import api


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"ocipy {prog}", description=description, allow_abbrev=False)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    from ocipy.errors import OcipyError

    def error(message: str) -> Any:
        raise OcipyError(f"{parser.prog}: {message}")

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_args(argv)


def _add_create_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--bundle", default=".", help="path to the bundle (default: .)")
    p.add_argument("--pid-file", help="write the container process's pid here")
    p.add_argument("--console-socket", help="AF_UNIX socket that receives the pty master")
    p.add_argument("--no-pivot", action="store_true", help="use MS_MOVE + chroot instead of pivot_root")
    p.add_argument("--no-new-keyring", action="store_true", help="keep the caller's session keyring")
    p.add_argument("--preserve-fds", type=int, default=0, help="pass N extra fds (3..3+N-1)")
    p.add_argument("container_id")


def run_spec(argv: list[str], opts: Any) -> int:
    p = _parser("spec", "write a default config.json")
    p.add_argument("-b", "--bundle", default=".")
    p.add_argument("--rootless", action="store_true")
    args = _parse(p, argv)
    path = os.path.join(args.bundle, "config.json")
    from ocipy.errors import OcipyError

    if os.path.exists(path):
        raise OcipyError(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        json.dump(api.spec(args.rootless), f, indent="\t")
        f.write("\n")
    return 0


def run_create(argv: list[str], opts: Any) -> int:
    p = _parser("create", "create a container")
    _add_create_flags(p)
    args = _parse(p, argv)
    api.create(args.container_id, args.bundle, root=opts.root, console_socket=args.console_socket,
               pid_file=args.pid_file, no_pivot=args.no_pivot, no_new_keyring=args.no_new_keyring,
               preserve_fds=args.preserve_fds, systemd_cgroup=opts.systemd_cgroup)  # fmt: skip
    return 0


def run_run(argv: list[str], opts: Any) -> int:
    p = _parser("run", "create and start a container")
    _add_create_flags(p)
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--keep", action="store_true", help="do not delete the container after it exits")
    args = _parse(p, argv)
    return api.run(args.container_id, args.bundle, root=opts.root, detach=args.detach, keep=args.keep,
                   pid_file=args.pid_file, console_socket=args.console_socket, no_pivot=args.no_pivot,
                   no_new_keyring=args.no_new_keyring, preserve_fds=args.preserve_fds,
                   systemd_cgroup=opts.systemd_cgroup)  # fmt: skip


def run_start(argv: list[str], opts: Any) -> int:
    p = _parser("start", "run the user process of a created container")
    p.add_argument("container_id")
    api.start(_parse(p, argv).container_id, root=opts.root)
    return 0


def run_state(argv: list[str], opts: Any) -> int:
    p = _parser("state", "print a container's state")
    p.add_argument("container_id")
    state = api.state(_parse(p, argv).container_id, root=opts.root)
    sys.stdout.write(json.dumps(state, indent="  ") + "\n")
    return 0


def run_list(argv: list[str], opts: Any) -> int:
    p = _parser("list", "list containers")
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    p.add_argument("-q", "--quiet", action="store_true")
    args = _parse(p, argv)
    states = api.list_containers(root=opts.root)
    if args.quiet:
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif args.format == "json":
        sys.stdout.write(json.dumps(states) + "\n")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]) for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            sys.stdout.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    return 0


def run_kill(argv: list[str], opts: Any) -> int:
    p = _parser("kill", "send a signal to a container")
    p.add_argument("-a", "--all", action="store_true", help="signal every process in the container")
    p.add_argument("container_id")
    p.add_argument("signal", nargs="?", default="SIGTERM")
    args = _parse(p, argv)
    api.kill(args.container_id, args.signal, root=opts.root, all_processes=args.all)
    return 0


def run_delete(argv: list[str], opts: Any) -> int:
    if any(a.startswith("docker://") for a in argv):
        from ocipy.cli.registry import run_registry_delete

        return int(run_registry_delete(argv, opts))
    p = _parser("delete", "delete a container")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("container_id")
    args = _parse(p, argv)
    from ocipy.errors import ContainerNotFound

    try:
        api.delete(args.container_id, root=opts.root, force=args.force)
    except ContainerNotFound:
        if not args.force:
            raise
        # as runc: `delete --force` of a container that is gone succeeds (podman and
        # containerd clean up with it after a failed create)
    return 0


def run_features(argv: list[str], opts: Any) -> int:
    _parse(_parser("features", "print the runtime's features"), argv)
    sys.stdout.write(json.dumps(api.features(), indent="    ") + "\n")
    return 0
