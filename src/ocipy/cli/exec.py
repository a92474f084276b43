"""`ocipy exec`, with runc's flags."""

from __future__ import annotations

from ocipy import jsonfast, log
from ocipy.cli.flags import Spec, parse
from ocipy.errors import OcipyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocipy.cli.main import GlobalOptions


_FLAGS: Spec = {
    "-p": ("process", "str"), "--process": ("process", "str"),
    "-e": ("env", "list"), "--env": ("env", "list"),
    "--cwd": ("cwd", "str"),
    "-u": ("user", "str"), "--user": ("user", "str"),
    "-g": ("additional_gids", "list"), "--additional-gids": ("additional_gids", "list"),
    "-c": ("cap", "list"), "--cap": ("cap", "list"),
    "--no-new-privs": ("no_new_privs", "bool"),
    "-t": ("tty", "bool"), "--tty": ("tty", "bool"),
    "--console-socket": ("console_socket", "str"),
    "-d": ("detach", "bool"), "--detach": ("detach", "bool"),
    "--pid-file": ("pid_file", "str"),
    "--preserve-fds": ("preserve_fds", "int"),
    "--ignore-paused": ("ignore_paused", "bool"),
    "--apparmor": ("apparmor", "str"),
    "--process-label": ("process_label", "str"),
    "--cgroup": ("cgroup", "list"),
}  # fmt: skip
_USAGE = ("[-p process.json] [-e K=V] [--cwd DIR] [-u UID[:GID]] [-g GID] [--cap CAP] [--no-new-privs] [-t] "
          "[--console-socket S] [-d] [--pid-file F] [--preserve-fds N] [--ignore-paused] ID [COMMAND [ARG...]]")  # fmt: skip


def run_exec(argv: list[str], opts: GlobalOptions) -> int:
    from ocipy import api

    f, args = parse("exec", argv, _FLAGS, _USAGE, stop_at_positional=True, min_args=1)
    container_id, command = args[0], args[1:]
    process = None
    if f["process"]:
        try:
            with open(str(f["process"]), "rb") as fp:
                process = jsonfast.loads(fp.read())
        except OSError as e:
            raise OcipyError(f"--process {f['process']}: {e.strerror}") from None
        except ValueError as e:
            raise OcipyError(f"--process {f['process']}: malformed JSON: {e}") from None
    gids: list[int] = []
    for item in f["additional_gids"] if process is None and command else ():
        for gid in str(item).split(","):
            if not gid.strip().isdigit():
                raise OcipyError(f"--additional-gids: {gid!r} is not a number")
            gids.append(int(gid))
    result = api.exec(container_id, command, root=opts.root, process=process, env=f["env"], cwd=f["cwd"],
                      user=f["user"], additional_gids=gids, caps=f["cap"], no_new_privs=bool(f["no_new_privs"]),
                      tty=bool(f["tty"]),  # --apparmor/--process-label: parsed, not applied (as before)
                      detach=bool(f["detach"]), pid_file=f["pid_file"], console_socket=f["console_socket"],
                      preserve_fds=int(f["preserve_fds"] or 0), ignore_paused=bool(f["ignore_paused"]),
                      cgroup=[str(c) for c in f["cgroup"]])  # fmt: skip
    if not f["detach"]:
        log.debug(f"process exited: status {result.exit_code}")
    return result.exit_code
