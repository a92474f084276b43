"""Help pages laid out as runc's (urfave/cli): NAME, USAGE, DESCRIPTION, OPTIONS.

Scripts and tests read the first lines: line 0 is ``NAME:``, line 1 names the
command.  The NAME line gives runc's name for the command too (``ocipy kill,
runc kill - ...``), as urfave/cli lists a command's aliases: the command does
what runc's does, under that name.  Only imported for -h, --help and help.
"""

from __future__ import annotations

import sys

_MAIN_DESCRIPTION = """\
ocipy runs applications packaged as Open Container Initiative bundles (a
directory with a config.json and a root filesystem), with runc's commands,
flags, output and exit codes, so that containerd, podman, CRI-O and scripts
written for runc can call it in runc's place.

To start a new instance of a container:

    # ocipy run [ -b bundle ] <container-id>

"<container-id>" names the instance; it must be unique under --root. The bundle
is the current directory unless "-b" names another.

ocipy also handles OCI images and registries (image, copy, inspect, tags)."""

# name -> (summary, usage after the command name, description, [(flags, help)])
Page = tuple[str, str, str, list[tuple[str, str]]]

_CONSOLE = ("--console-socket value", "path to an AF_UNIX socket that receives the pty master of the container's console")
_BUNDLE = ("--bundle value, -b value", "the bundle directory (default: the current directory)")
_PID_FILE = ("--pid-file value", "write the process id to this file")
_NO_PIVOT = ("--no-pivot", "move the rootfs to / instead of pivot_root (for a rootfs on a ramdisk)")
_NO_KEYRING = ("--no-new-keyring", "keep the caller's session keyring instead of a new one named after the container")
_PRESERVE = ("--preserve-fds value", "pass N more file descriptors to the container (stdio + $LISTEN_FDS + N) (default: 0)")
_NO_CRIU = ("checkpoint and restore need CRIU, which ocipy does not drive: the command exits with an error "
            "and changes nothing.")  # fmt: skip

PAGES: dict[str, Page] = {
    "checkpoint": ("checkpoint a running container (not supported: needs CRIU)", "[command options] <container-id>",
                   "Saves the state of a running container with CRIU. " + _NO_CRIU,
                   [("--image-path value", "path for the CRIU image files"),
                    ("--work-path value", "path for work files and logs"),
                    ("--leave-running", "leave the process running after the checkpoint"),
                    ("--pre-dump", "dump the memory only and leave the container running")]),
    "restore": ("restore a container from a checkpoint (not supported: needs CRIU)", "[command options] <container-id>",
                "Restores a container saved by checkpoint. " + _NO_CRIU,
                [_CONSOLE, ("--image-path value", "path of the CRIU image files"), _BUNDLE,
                 ("--detach, -d", "detach from the container's process"), _PID_FILE, _NO_PIVOT]),
    "create": ("create a container", "[command options] <container-id>",
               "Creates the container from the bundle: namespaces, mounts, cgroups and the process settings are in\n"
               "place, and the process waits; \"start\" runs the user program.",
               [_BUNDLE, _CONSOLE, _PID_FILE, _NO_PIVOT, _NO_KEYRING, _PRESERVE]),
    "delete": ("delete a container and everything create made", "[command options] <container-id>",
               "Removes a stopped container (its state, cgroups and mounts) and runs its poststop hooks.",
               [("--force, -f", "kill the container first if it is running or paused; "
                                "no error if it does not exist")]),
    "events": ("show a container's events (OOM) and resource statistics", "[command options] <container-id>",
               "Prints JSON events until the container stops: OOM notifications and, at each interval, stats.",
               [("--interval value", "interval between stats events (default: 5s)"),
                ("--stats", "print the statistics once and exit")]),
    "exec": ("run a new process inside the container", "[command options] <container-id> <command> [args...]  "
             "|| -p process.json <container-id>",
             "Runs <command> in the running container's namespaces, cgroups and security settings.\n"
             "<command> may be empty only with -p. The exit code is the process's own; failures of the\n"
             "runtime before the process starts exit 255.",
             [_CONSOLE, ("--cwd value", "working directory in the container"),
              ("--env value, -e value", "set an environment variable (KEY=VALUE)"),
              ("--tty, -t", "allocate a pseudo-TTY"), ("--user value, -u value", "UID[:GID]"),
              ("--additional-gids value, -g value", "additional group ids"),
              ("--process value, -p value", "path to a process.json"),
              ("--detach, -d", "detach from the process"), _PID_FILE,
              ("--process-label value", "the SELinux label of the process"),
              ("--apparmor value", "the AppArmor profile of the process"),
              ("--no-new-privs", "set no_new_privs for the process"),
              ("--cap value, -c value", "add a capability to the process's sets"), _PRESERVE,
              ("--cgroup value", "run in an existing sub-cgroup: [<controller>:]<path>"),
              ("--ignore-paused", "allow exec in a paused container")]),
    "kill": ("send a signal (default: SIGTERM) to the container's init", "[command options] <container-id> [signal]",
             "The signal is a name (KILL, SIGKILL) or a number.",
             [("--all, -a", "send the signal to every process of the container")]),
    "list": ("list the containers under --root", "[command options]",
             "Lists the containers whose state is under the global --root directory.",
             [("--format value, -f value", "table or json (default: \"table\")"),
              ("--quiet, -q", "print only the container ids")]),
    "pause": ("freeze every process of the container", "<container-id>",
              "Suspends all processes of the container with the cgroup freezer.", []),
    "ps": ("list the processes of the container", "[command options] <container-id> [ps options]",
           "Runs ps(1) on the container's processes.",
           [("--format value, -f value", "table or json (default: \"table\")")]),
    "resume": ("thaw a paused container", "<container-id>",
               "Resumes all processes that pause suspended.", []),
    "run": ("create and run a container", "[command options] <container-id>",
            "create, then start; without --detach waits for the process and exits with its status.",
            [_BUNDLE, _CONSOLE, ("--detach, -d", "detach from the container's process"),
             ("--keep", "do not delete the container after it exits"), _PID_FILE, _NO_PIVOT, _NO_KEYRING,
             _PRESERVE]),
    "spec": ("write a new config.json", "[command options]",
             "Writes a default config.json into the bundle (runc's defaults) for editing.",
             [_BUNDLE, ("--rootless", "a config for a container run by an unprivileged user")]),
    "start": ("run the user program of a created container", "<container-id>",
              "Lets the process that create prepared exec the user program.", []),
    "state": ("print the state of a container as JSON", "<container-id>",
              "Prints the runtime-spec state: ociVersion, id, pid, status, bundle, rootfs, created, owner,\n"
              "annotations.", []),
    "update": ("change a running container's resource limits", "[command options] <container-id>",
               "Updates the cgroup limits of the container, from flags or a JSON file (-r).",
               [("--resources value, -r value", "path to a JSON linux.resources object ('-' for stdin)"),
                ("--blkio-weight value", "block IO weight, 10 to 1000"),
                ("--cpu-period value", "CPU CFS period in microseconds"),
                ("--cpu-quota value", "CPU CFS quota in microseconds"),
                ("--cpu-burst value", "CPU CFS burst in microseconds"),
                ("--cpu-share value", "CPU shares (relative weight)"),
                ("--cpu-rt-period value", "CPU realtime period in microseconds"),
                ("--cpu-rt-runtime value", "CPU realtime runtime in microseconds"),
                ("--cpu-idle value", "1: SCHED_IDLE for the cgroup, 0: the default"),
                ("--cpuset-cpus value", "CPUs to use (0-3, 0,1)"), ("--cpuset-mems value", "memory nodes to use"),
                ("--memory value", "memory limit (e.g. 64m)"), ("--memory-reservation value", "memory soft limit"),
                ("--memory-swap value", "memory+swap limit (-1: unlimited)"),
                ("--pids-limit value", "maximum number of processes (-1: unlimited)"),
                ("--kernel-memory value, --kernel-memory-tcp value", "deprecated; ignored by newer kernels"),
                ("--l3-cache-schema value, --mem-bw-schema value", "Intel RDT (not supported)")]),
    "features": ("print what this runtime supports", "",
                 "Prints the runtime-spec features document as JSON.", []),
    "help": ("show the commands, or the help of one command", "[command]", "", []),
}  # fmt: skip

# runc's commands, in runc's order, then ocipy's own.
_ORDER = ["checkpoint", "create", "delete", "events", "exec", "kill", "list", "pause", "ps", "restore", "resume",
          "run", "spec", "start", "state", "update", "features"]  # fmt: skip
_OWN = [("image", "images, registries and the local store: pull, ls, run, copy, inspect, tags, rm, prune, unpack, ..."),
        ("copy", "= image copy: copy an image between docker://, oci:, oci-archive:, docker-archive:"),
        ("inspect", "= image inspect: show an image's manifest and config"),
        ("tags", "= image tags: list the tags of a repository, layout or archive")]  # fmt: skip

_GLOBALS = [
    ("--debug", "enable debug logging"),
    ("--log value", "the log file (default: stderr)"),
    ("--log-format value", "the log format: 'text' (default) or 'json' (default: \"text\")"),
    ("--root value", "the directory of the containers' state (default: \"/run/ocipy\")"),
    ("--systemd-cgroup", "systemd cgroup paths: cgroupsPath is \"slice:prefix:name\""),
    ("--rootless value", "ignore cgroup permission errors ('true', 'false' or 'auto') (default: \"auto\")"),
    ("--help, -h", "show help"),
    ("--version, -v", "print the version"),
]


def _table(rows: list[tuple[str, str]]) -> str:
    width = max((len(a) for a, _ in rows), default=0)
    return "".join(f"   {a.ljust(width)}  {b}\n" for a, b in rows)


def main_page() -> str:
    from ocipy.cli.version import version_lines

    commands = [(name, PAGES[name][0]) for name in _ORDER] + _OWN + [("help, h", PAGES["help"][0])]
    return (
        "NAME:\n   ocipy, runc - Open Container Initiative runtime\n\n" + _MAIN_DESCRIPTION + "\n\n"
        "USAGE:\n   ocipy [global options] command [command options] [arguments...]\n\n"
        "VERSION:\n   " + "\n".join(version_lines()).removeprefix("ocipy version ")
        + "\n\nCOMMANDS:\n" + _table(commands) + "\nGLOBAL OPTIONS:\n" + _table(_GLOBALS)
    )  # fmt: skip


def page(name: str) -> str | None:
    entry = PAGES.get(name)
    if entry is None:
        return None
    summary, usage, description, options = entry
    text = f"NAME:\n   ocipy {name}, runc {name} - {summary}\n\nUSAGE:\n   ocipy {name} {usage}".rstrip() + "\n"
    if description:
        text += "\nDESCRIPTION:\n" + "".join(f"   {line}\n" for line in description.splitlines())
    if options:
        text += "\nOPTIONS:\n" + _table(options + [("--help, -h", "show help")])
    return text


def show(name: str | None = None) -> int:
    """Print the main page or a command's; runc's message and exit code 3 for an unknown topic."""
    from ocipy.cli import log

    if name is None:
        sys.stdout.write(main_page())
        return 0
    if name == "h":
        name = "help"
    text = page(name)
    if text is None:
        log.error(f"No help topic for '{name}'")
        return 3
    sys.stdout.write(text)
    return 0
