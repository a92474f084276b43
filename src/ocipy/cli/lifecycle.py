"""runc's lifecycle commands: spec, create, start, run, state, list, kill, delete, features."""

from __future__ import annotations

import sys

from ocipy.cli.flags import Spec, parse

# create, start, state, kill and delete -- the commands an engine makes for
# every container -- call ocipy.runtime, which ocipy.api wraps, directly:
# importing ocipy.api too costs ~0.15 ms of a ~9 ms command.

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocipy.cli.main import GlobalOptions


_CREATE_FLAGS: Spec = {
    "-b": ("bundle", "str"), "--bundle": ("bundle", "str"),
    "--pid-file": ("pid_file", "str"),
    "--console-socket": ("console_socket", "str"),
    "--no-pivot": ("no_pivot", "bool"),
    "--no-new-keyring": ("no_new_keyring", "bool"),
    "--preserve-fds": ("preserve_fds", "int"),
}  # fmt: skip
_CREATE_USAGE = "[-b BUNDLE] [--pid-file F] [--console-socket S] [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID"


def run_spec(argv: list[str], opts: GlobalOptions) -> int:
    import os

    from ocipy import api, jsonfast
    from ocipy.errors import OcipyError

    flags, _ = parse("spec", argv, {"-b": ("bundle", "str"), "--bundle": ("bundle", "str"),
                                    "--rootless": ("rootless", "bool")}, "[-b BUNDLE] [--rootless]", max_args=0)  # fmt: skip
    path = os.path.join(str(flags["bundle"] or "."), "config.json")
    if os.path.exists(path):
        raise OcipyError(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        f.write(jsonfast.dumps(api.spec(bool(flags["rootless"])), indent="\t"))
        f.write("\n")
    return 0


def run_create(argv: list[str], opts: GlobalOptions) -> int:
    # The runtime's create, not api.create: the API's Container object (and
    # ocipy.api, ocipy._container) would cost ~0.5 ms of every engine's create.
    from ocipy.runtime.create import create

    f, args = parse("create", argv, _CREATE_FLAGS, _CREATE_USAGE, min_args=1, max_args=1)
    create(opts.root, args[0], str(f["bundle"] or "."), console_socket=f["console_socket"],
           pid_file=f["pid_file"], no_pivot=bool(f["no_pivot"]), no_new_keyring=bool(f["no_new_keyring"]),
           preserve_fds=int(f["preserve_fds"] or 0), systemd_cgroup=opts.systemd_cgroup)  # fmt: skip
    return 0


def run_run(argv: list[str], opts: GlobalOptions) -> int:
    # The runtime's run, not api.run (which calls it for a caller like this
    # one: one thread, stdio inherited): ocipy.api costs ~0.4 ms per container.
    from ocipy.runtime import operations

    spec = dict(_CREATE_FLAGS, **{"-d": ("detach", "bool"), "--detach": ("detach", "bool"), "--keep": ("keep", "bool")})
    f, args = parse("run", argv, spec, "[-d] [--keep] " + _CREATE_USAGE, min_args=1, max_args=1)
    return operations.run(opts.root, args[0], str(f["bundle"] or "."), detach=bool(f["detach"]),
                          keep=bool(f["keep"]), pid_file=f["pid_file"], console_socket=f["console_socket"],
                          no_pivot=bool(f["no_pivot"]), no_new_keyring=bool(f["no_new_keyring"]),
                          preserve_fds=int(f["preserve_fds"] or 0), systemd_cgroup=opts.systemd_cgroup,
                          forward_signals=not f["detach"])  # fmt: skip


def run_start(argv: list[str], opts: GlobalOptions) -> int:
    from ocipy.runtime import operations

    _, args = parse("start", argv, {}, "ID", min_args=1, max_args=1)
    operations.start(opts.root, args[0])
    return 0


def runc_state(state: dict[str, Any], owner: str | None = None) -> dict[str, Any]:
    """A state in runc's field order: ociVersion, id, pid, status, bundle,
    rootfs, created, annotations (sorted, only when there are some), owner."""
    ordered = {key: state.get(key, "") for key in ("ociVersion", "id", "pid", "status", "bundle", "rootfs", "created")}
    ordered["created"] = _go_time(str(ordered["created"]))
    annotations = state.get("annotations")
    if annotations:
        ordered["annotations"] = {key: annotations[key] for key in sorted(annotations)}
    ordered["owner"] = state.get("owner", "") if owner is None else owner
    return ordered


def _go_time(stamp: str) -> str:
    """RFC 3339 as Go's RFC3339Nano writes it: no trailing zeros in the fraction."""
    if not stamp.endswith("Z") or "." not in stamp:
        return stamp
    head, _, frac = stamp[:-1].partition(".")
    frac = frac.rstrip("0")
    return f"{head}.{frac}Z" if frac else head + "Z"


def _write(text: str) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))


def run_state(argv: list[str], opts: GlobalOptions) -> int:
    from ocipy.cli import gojson
    from ocipy.runtime import operations

    _, args = parse("state", argv, {}, "ID", min_args=1, max_args=1)
    # As runc's: indented, no newline after the closing brace, and the owner
    # left empty (runc's `state` does not fill it; `list` does).
    _write(gojson.dumps(runc_state(operations.state(opts.root, args[0]), owner=""), indent="  "))
    return 0


def run_list(argv: list[str], opts: GlobalOptions) -> int:
    from ocipy import api
    from ocipy.cli import gojson
    from ocipy.cli.flags import UsageError

    f, _ = parse("list", argv, {"-f": ("format", "str"), "--format": ("format", "str"), "-q": ("quiet", "bool"),
                                "--quiet": ("quiet", "bool")}, "[-f table|json] [-q]", max_args=0)  # fmt: skip
    fmt = f["format"] or "table"
    if fmt not in ("table", "json"):
        raise UsageError(f"list: invalid format option {fmt!r} (table or json)")
    states = [c.state(refresh=False) for c in api.list_containers(root=opts.root)]
    if f["quiet"]:
        _write("".join(s["id"] + "\n" for s in states))
    elif fmt == "json":
        # compact, one line; `null` when there is no container, as runc's
        _write(gojson.dumps([runc_state(s) for s in states] or None) + "\n")
    else:
        _write(_table(states))
    return 0


def _table(states: list[dict[str, Any]]) -> str:
    """runc's table (Go's tabwriter: cells padded by 3, at least 12 wide; the
    last column, OWNER, is not padded)."""
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], _go_time(s["created"]), s["owner"]) for s in states]
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(5)]
    return "".join("".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + r[5] + "\n" for r in rows)


def run_kill(argv: list[str], opts: GlobalOptions) -> int:
    from ocipy.runtime import operations

    f, args = parse("kill", argv, {"-a": ("all", "bool"), "--all": ("all", "bool")}, "[--all] ID [SIGNAL]",
                    min_args=1, max_args=2)  # fmt: skip
    operations.kill(opts.root, args[0], args[1] if len(args) > 1 else "SIGTERM", all_processes=bool(f["all"]))
    return 0


def run_delete(argv: list[str], opts: GlobalOptions) -> int:
    # container ids never hold ':' (runc's ^[\w+-.]+$), image references of every transport do
    image_refs = [a for a in argv if ":" in a and ("://" in a or a.split(":", 1)[0] in ("oci", "oci-archive",
                                                                                        "docker-archive"))]
    if image_refs:
        from ocipy.cli.flags import UsageError

        # runc's verb, runc's meaning: never a registry's manifest by accident
        raise UsageError(f"delete: {image_refs[0]!r} is an image reference; `ocipy delete` deletes "
                         "containers (use `ocipy image delete` for images)")
    f, args = parse("delete", argv, {"-f": ("force", "bool"), "--force": ("force", "bool")}, "[-f] ID",
                    min_args=1, max_args=1)  # fmt: skip
    if f["force"] and _not_there(opts.root, args[0]):
        return 0  # as runc: nothing to delete is no error with --force
    from ocipy.runtime import operations

    # Not api.delete: that also reaps an init that is the caller's child, which
    # a new CLI process never has (operations.delete waits for the init to die).
    operations.delete(opts.root, args[0], force=bool(f["force"]))
    return 0


def _not_there(root: str, container_id: str) -> bool:
    """No directory for this (valid) id under --root.  containerd deletes
    every container twice (its shim's cleanup runs `delete --force` after the
    task's `delete`): the second call ends here, without loading the runtime
    (~1 ms of a ~9 ms command)."""
    import posix

    from ocipy.runtime.ids import check_id

    check_id(container_id)
    try:
        posix.lstat(root.rstrip("/") + "/" + container_id)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        pass  # the runtime's path reports it
    return False


def run_features(argv: list[str], opts: GlobalOptions) -> int:
    from ocipy import api, jsonfast

    parse("features", argv, {}, "", max_args=0)
    sys.stdout.write(jsonfast.dumps(api.features(), indent="    ") + "\n")
    return 0


def run_checkpoint(argv: list[str], opts: GlobalOptions) -> int:
    import os

    from ocipy.errors import OcipyError

    # runc checks --parent-path before it reaches CRIU; scripts rely on its words
    values = {"--parent-path": "", "--image-path": "checkpoint"}
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in values:
            values[name] = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
    parent = values["--parent-path"]
    if parent:
        if os.path.isabs(parent):
            raise OcipyError("--parent-path must be relative")
        real = os.path.normpath(os.path.join(values["--image-path"], parent))  # as Go's filepath.Join
        if not os.path.isdir(real):
            raise OcipyError(f"invalid --parent-path: stat {real}: "
                             + ("not a directory" if os.path.exists(real) else "no such file or directory"))
    return _no_criu("checkpoint")


def run_restore(argv: list[str], opts: GlobalOptions) -> int:
    return _no_criu("restore")


def _no_criu(command: str) -> int:
    from ocipy.errors import OcipyError

    raise OcipyError(f"{command}: not supported: ocipy does not implement CRIU checkpoint/restore")
