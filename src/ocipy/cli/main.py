"""The `ocipy` command: runc's global flags, then one command.

Start-up time matters (containerd runs the runtime for every operation), so
this module parses the global flags by hand and imports only the module of
the command that was asked for.
"""

from __future__ import annotations

import gc
import sys

# The cyclic GC, put off: a runtime command allocates a few thousand objects
# (its modules' functions, dicts, the parsed config) and frees little of it
# before it exits, so the default threshold (700) makes `create` pay six or
# seven collections, ~1.2-2.5 ms of its CPU, and `state` two (~0.2 ms), for
# nothing to collect (bench/FINDINGS.md).  Collections still come after
# 50,000 net allocations: a long `run`, `exec` or `events` keeps collecting.
# Commands outside the runtime get the default back (`main`).
_GC_DEFAULT = gc.get_threshold()
gc.set_threshold(50_000, _GC_DEFAULT[1], _GC_DEFAULT[2])

# command name -> module under ocipy.cli that defines `run_<name>(argv, opts)`
COMMANDS: dict[str, str] = {
    "spec": "lifecycle",
    "create": "lifecycle",
    "start": "lifecycle",
    "run": "lifecycle",
    "state": "lifecycle",
    "list": "lifecycle",
    "kill": "lifecycle",
    "delete": "lifecycle",
    "features": "lifecycle",
    "checkpoint": "lifecycle",
    "restore": "lifecycle",
    "exec": "exec",
    "pause": "resources",
    "resume": "resources",
    "ps": "resources",
    "events": "resources",
    "update": "resources",
    "image": "image",
    "copy": "registry",
    "inspect": "registry",
    "tags": "registry",
}


class GlobalOptions:
    """runc's global flags, given before the command."""

    def __init__(self) -> None:
        self.root = "/run/ocipy"
        self.log: str | None = None
        self.log_format = "text"
        self.debug = False
        self.systemd_cgroup = False
        self.rootless = "auto"


_VALUED = {"root", "log", "log-format", "rootless", "criu"}
_FLAGS = {"debug", "systemd-cgroup", "no-subreaper"}


def _parse_globals(argv: list[str]) -> tuple[GlobalOptions, list[str]]:
    from ocipy.errors import OcipyError

    opts = GlobalOptions()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            break
        if arg in ("-v", "--version", "-version"):
            return opts, ["--version"]
        if arg in ("-h", "--help", "-help"):
            return opts, ["--help"]
        name, eq, value = arg.lstrip("-").partition("=")
        if name in _FLAGS:
            if name == "debug":
                opts.debug = value.lower() not in ("false", "0") if eq else True
            elif name == "systemd-cgroup":
                opts.systemd_cgroup = value.lower() not in ("false", "0") if eq else True
            i += 1
            continue
        if name not in _VALUED:
            raise OcipyError(f"unknown global option {arg!r} (see `ocipy --help`)")
        if not eq:
            i += 1
            if i >= len(argv):
                raise OcipyError(f"global option {arg!r} needs a value")
            value = argv[i]
        if name == "root":
            opts.root = value
        elif name == "log":
            opts.log = value
        elif name == "log-format":
            if value not in ("text", "json"):
                raise OcipyError(f"--log-format: {value!r} is not text or json")
            opts.log_format = value
        elif name == "rootless":
            opts.rootless = value
        i += 1
    return opts, argv[i:]


# The runtime's commands (runc's): they keep the GC threshold set above.
_RUNTIME_MODULES = ("lifecycle", "exec", "resources")
# Commands whose process may skip the interpreter's teardown (see `entry`).
_QUICK_EXIT_MODULES = ("lifecycle", "exec", "resources", "registry")
_quick_exit = False


def _name_process() -> None:
    # The launcher executes the interpreter through a detached mount, so the
    # kernel names the process after the interpreter's file ("python3.11"):
    # name it as users look for it in ps, and as the container sees its init.
    try:
        with open("/proc/self/comm", "wb", buffering=0) as f:
            f.write(b"ocipy")
    except OSError:
        pass


def entry() -> None:
    """The `ocipy` executable: main(), then exit.

    The runtime commands end with os._exit after flushing: tearing down the
    modules and objects of a create costs ~2 ms, a tenth of the command
    (bench/FINDINGS.md).  They hold no buffered files; atexit handlers still
    run.  The registry commands (copy, inspect, tags) do the same: every file
    they write is closed, fsynced and renamed before they return, and
    tearing down the HTTP stack costs more than a tenth of a small pull.
    Image commands exit normally.
    """
    _name_process()
    code = main()
    if _quick_exit:
        import posix  # os would cost ~0.9 ms here (runtime/store.py)

        atexit = sys.modules.get("atexit")  # not imported: nothing registered a handler
        if atexit is not None:
            atexit._run_exitfuncs()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            code = code or 1
        posix._exit(code)
    sys.exit(code)


def _help(topic: str | None, opts: GlobalOptions) -> int:
    """`help [COMMAND]`: runc's page; the image and registry commands show their own."""
    from ocipy.cli import help

    if topic is not None and topic not in help.PAGES and topic in COMMANDS:
        return main(["--root", opts.root, topic, "--help"])
    return help.show(topic)


def main(argv: list[str] | None = None) -> int:
    from ocipy import log
    from ocipy.errors import HookError, OcipyError

    args = sys.argv[1:] if argv is None else argv
    try:
        opts, rest = _parse_globals(args)
    except OcipyError as e:
        log.setup(None, "text", False)
        log.error(str(e))
        return 1
    log.setup(opts.log, opts.log_format, opts.debug)
    if not rest or rest[0] == "--help":
        from ocipy.cli import help

        return help.show()  # runc prints its help and exits 0 without a command too
    if rest[0] in ("--version", "version"):
        from ocipy.cli import version

        return version.show()
    command, cmd_args = rest[0], rest[1:]
    if command in ("help", "h"):
        return _help(cmd_args[0] if cmd_args else None, opts)
    module_name = COMMANDS.get(command)
    if module_name not in _RUNTIME_MODULES:
        gc.set_threshold(*_GC_DEFAULT)
    global _quick_exit
    _quick_exit = module_name in _QUICK_EXIT_MODULES
    if module_name is None or (cmd_args[:1] and cmd_args[0] in ("-h", "--help", "-help")):
        from ocipy.cli import help

        # runc's wording and exit code (3) for an unknown command, with or without -h
        if module_name is None or command in help.PAGES:
            return help.show(command)
    log.debug(f"ocipy {command}")  # not its arguments: `exec -e` may carry secrets
    from ocipy.cli.flags import HelpShown, UsageError

    # runc's exec exits 255 when the runtime fails (the process's own status
    # passes through); a bad flag or argument count is 1, as for every command.
    failure = 255 if command == "exec" else 1
    try:
        __import__(f"ocipy.cli.{module_name}")  # importlib itself costs ~0.5 ms of start-up
        module = sys.modules[f"ocipy.cli.{module_name}"]
        handler = getattr(module, "run_" + command.replace("-", "_"))
        return int(handler(cmd_args, opts) or 0)
    except UsageError as e:
        log.error(str(e))
        return 1
    except OcipyError as e:
        message = str(e)
        if isinstance(e, HookError) and "error running" not in message:
            message = "error running hook: " + message  # runc's wording: scripts grep for it
        if failure == 255 and not message.startswith("exec failed"):
            message = "exec failed: " + message
        log.error(message)
        code = int(getattr(e, "exit_code", 1))
        return failure if code == 1 else code
    except KeyboardInterrupt:
        return 130
    except HelpShown:
        return 0
    except BrokenPipeError:  # e.g. `ocipy list | head`
        return failure
    except OSError as e:  # a path the user named that cannot be used
        where = f": {e.filename}" if e.filename else ""
        log.error(f"{command}: {e.strerror or e}{where}")
        return failure
    except Exception as e:  # a bug: one line, the traceback only with --debug
        if opts.debug:
            import traceback

            traceback.print_exc()
        log.error(f"{command}: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        return failure
