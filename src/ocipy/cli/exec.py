"""`ocipy exec`, with runc's flags."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ocipy.cli.lifecycle import _parse
from ocipy.errors import OcipyError


def run_exec(argv: list[str], opts: Any) -> int:
    from ocipy.runtime import exec as exec_mod
    from ocipy.runtime import store

    p = argparse.ArgumentParser(prog="ocipy exec", description="run a process in a container", allow_abbrev=False)
    p.add_argument("-p", "--process", help="path to a process.json")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--cwd")
    p.add_argument("-u", "--user", help="UID[:GID]")
    p.add_argument("-g", "--additional-gids", action="append", default=[])
    p.add_argument("-c", "--cap", action="append", default=[])
    p.add_argument("--no-new-privs", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--console-socket")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--pid-file")
    p.add_argument("--preserve-fds", type=int, default=0)
    p.add_argument("--ignore-paused", action="store_true")
    p.add_argument("--apparmor")
    p.add_argument("--process-label")
    p.add_argument("--cgroup", action="append", default=[])
    p.add_argument("container_id")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = _parse(p, argv)
    if args.process:
        try:
            with open(args.process, "rb") as f:
                process = json.loads(f.read())
        except OSError as e:
            raise OcipyError(f"--process {args.process}: {e.strerror}") from None
        except ValueError as e:
            raise OcipyError(f"--process {args.process}: malformed JSON: {e}") from None
    else:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            raise OcipyError("exec: no command given (args or --process)")
        gids: list[int] = []
        for item in args.additional_gids:
            for gid in str(item).split(","):
                if not gid.strip().isdigit():
                    raise OcipyError(f"--additional-gids: {gid!r} is not a number")
                gids.append(int(gid))
        config = store.load(opts.root, args.container_id).config
        process = exec_mod.build_process(config, command, env=args.env, cwd=args.cwd, user=args.user,
                                         additional_gids=gids, caps=args.cap, no_new_privs=args.no_new_privs,
                                         tty=args.tty)  # fmt: skip
    return exec_mod.exec_process(opts.root, args.container_id, process, detach=args.detach,
                                 pid_file=args.pid_file, console_socket=args.console_socket,
                                 preserve_fds=args.preserve_fds, ignore_paused=args.ignore_paused)  # fmt: skip
