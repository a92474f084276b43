"""`ocipy image run`'s options, as podman run reads them, applied to config.json.

image/conversion.runtime_config turns the image's config into the runtime's
(conversion.md); `apply` then changes that config as the user asked, one
option at a time, in the order podman documents them.  Pure: no root, no
kernel; tests/unit/test_engine_options.py covers every option.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ocipy.errors import OcipyError

# podman's default for --read-only (its --read-only-tmpfs): a read-only root,
# but these are writable, private tmpfs.
READ_ONLY_TMPFS = ("/tmp", "/var/tmp", "/run")
_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_CPU_PERIOD = 100_000


class RunOptions:
    """What `ocipy image run` was given (None / empty: the image's own)."""

    __slots__ = ("args", "entrypoint", "env", "env_files", "volumes", "workdir", "user", "tty", "interactive",
                 "hostname", "memory", "cpus", "pids_limit", "cap_add", "cap_drop", "read_only")  # fmt: skip

    def __init__(self, *, args: list[str] | None = None, entrypoint: str | None = None, env: list[str] | None = None,
                 env_files: list[str] | None = None, volumes: list[str] | None = None, workdir: str | None = None,
                 user: str | None = None, tty: bool = False, interactive: bool = False, hostname: str | None = None,
                 memory: str | None = None, cpus: str | None = None, pids_limit: str | None = None,
                 cap_add: list[str] | None = None, cap_drop: list[str] | None = None,
                 read_only: bool = False) -> None:  # fmt: skip
        self.args = args or []
        self.entrypoint = entrypoint
        self.env = env or []
        self.env_files = env_files or []
        self.volumes = volumes or []
        self.workdir = workdir
        self.user = user
        self.tty = tty
        self.interactive = interactive
        self.hostname = hostname
        self.memory = memory
        self.cpus = cpus
        self.pids_limit = pids_limit
        self.cap_add = cap_add or []
        self.cap_drop = cap_drop or []
        self.read_only = read_only


def check(opts: RunOptions) -> None:
    """Refuse now what :func:`apply` would refuse whatever the image: `image run`
    calls this before it pulls or mounts anything (-u is checked against the
    image's /etc/passwd later, by apply)."""
    import copy

    from ocipy.spec.runtime import default_spec

    probe = copy.copy(opts)
    probe.user = None
    if not probe.args and probe.entrypoint is None:
        probe.args = ["true"]  # the image's command is not known yet
    apply(default_spec(), {}, "/", probe)


def apply(config: dict[str, Any], image_config: dict[str, Any], rootfs: str, opts: RunOptions) -> None:
    """Change `config` (from runtime_config) as `opts` asks; OcipyError naming the option otherwise."""
    process = config["process"]
    process["args"] = _args(image_config, opts)
    process["env"] = _env(process.get("env") or [], opts)
    if opts.workdir is not None:
        if not opts.workdir.startswith("/"):
            raise OcipyError(f"-w {opts.workdir}: the working directory must be an absolute path")
        process["cwd"] = opts.workdir
    if opts.user is not None:
        from ocipy.image.conversion import resolve_user

        try:
            process["user"] = resolve_user(rootfs, opts.user)
        except OcipyError as e:
            raise OcipyError(f"-u {opts.user}: {e}") from None
    process["terminal"] = opts.tty
    if opts.hostname is not None:
        if not opts.hostname or len(opts.hostname) > 64 or "/" in opts.hostname:
            raise OcipyError(f"--hostname {opts.hostname!r}: not a host name")
        config["hostname"] = opts.hostname
    _capabilities(process, opts)
    _resources(config, opts)
    _volumes(config, opts)
    if opts.read_only:
        config.setdefault("root", {})["readonly"] = True
        for path in READ_ONLY_TMPFS:
            config.setdefault("mounts", []).append({"destination": path, "type": "tmpfs", "source": "tmpfs",
                                                    "options": ["rw", "nosuid", "nodev", "mode=1777"]})  # fmt: skip


def _args(image_config: dict[str, Any], opts: RunOptions) -> list[str]:
    # podman: --entrypoint replaces the image's Entrypoint and drops its Cmd;
    # arguments replace the Cmd.  An entrypoint may be a JSON array.
    cfg = image_config.get("config") or {}
    if opts.entrypoint is not None:
        entrypoint: list[str]
        if opts.entrypoint.startswith("["):
            try:
                parsed = json.loads(opts.entrypoint)
            except ValueError:
                raise OcipyError(f"--entrypoint {opts.entrypoint}: not a JSON array of strings") from None
            if not isinstance(parsed, list) or not all(isinstance(a, str) for a in parsed):
                raise OcipyError(f"--entrypoint {opts.entrypoint}: not a JSON array of strings")
            entrypoint = parsed
        else:
            entrypoint = [opts.entrypoint] if opts.entrypoint else []
        cmd = list(opts.args)
    else:
        entrypoint = list(cfg.get("Entrypoint") or [])
        cmd = list(opts.args) or list(cfg.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise OcipyError("no command: the image has no Entrypoint or Cmd, give one after the image")
    return args


def _env(env: list[str], opts: RunOptions) -> list[str]:
    # --env-file first, then -e, each later value of a name winning (podman).
    given: list[str] = []
    for path in opts.env_files:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise OcipyError(f"--env-file {path}: {getattr(e, 'strerror', None) or e}") from None
        given += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    given += opts.env
    merged = {e.partition("=")[0]: e for e in env}
    for item in given:
        name, eq, _ = item.partition("=")
        if not name or "\0" in item:
            raise OcipyError(f"-e {item!r}: expected NAME=VALUE or NAME")
        if not eq:  # -e NAME: the value from this environment, skipped if unset (podman)
            if name not in os.environ:
                continue
            item = f"{name}={os.environ[name]}"
        merged.pop(name, None)
        merged[name] = item
    return list(merged.values())


def _capabilities(process: dict[str, Any], opts: RunOptions) -> None:
    from ocipy.spec.runtime import CAPABILITIES as CAPS  # name -> number

    def canonical(name: str, flag: str) -> str:
        up = name.upper()
        up = up if up.startswith("CAP_") or up == "ALL" else "CAP_" + up
        if up != "ALL" and up not in CAPS:
            raise OcipyError(f"{flag} {name}: unknown capability")
        return up

    if not opts.cap_add and not opts.cap_drop:
        return
    sets = process.setdefault("capabilities", {})
    add = [canonical(c, "--cap-add") for c in opts.cap_add]
    drop = [canonical(c, "--cap-drop") for c in opts.cap_drop]
    for name in ("bounding", "effective", "permitted"):
        current = list(sets.get(name) or [])
        if "ALL" in drop:
            current = []
        current = [c for c in current if c not in drop]
        for cap in (sorted(CAPS) if "ALL" in add else add):
            if cap not in current and cap != "ALL":
                current.append(cap)
        sets[name] = current
    sets.pop("inheritable", None)
    sets.pop("ambient", None)


def parse_bytes(text: str, flag: str) -> int:
    """512m, 1g, 1048576: podman's sizes (binary units)."""
    digits = text.strip().lower()
    if digits.endswith(("kb", "mb", "gb")):
        digits = digits[:-1]
    unit = 1
    if digits[-1:] in _UNITS:
        unit, digits = _UNITS[digits[-1]], digits[:-1]
    if not digits or not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        raise OcipyError(f"{flag} {text}: expected a size such as 512m or 1g")
    value = int(digits) * unit
    if not 0 < value < 1 << 63:
        raise OcipyError(f"{flag} {text}: out of range")
    return value


def _resources(config: dict[str, Any], opts: RunOptions) -> None:
    resources = config.setdefault("linux", {}).setdefault("resources", {})
    if opts.memory is not None:
        limit = parse_bytes(opts.memory, "--memory")
        if limit < 6 << 20:
            raise OcipyError(f"--memory {opts.memory}: the minimum is 6m")
        resources.setdefault("memory", {})["limit"] = limit
    if opts.cpus is not None:
        try:
            cpus = float(opts.cpus) if opts.cpus.isascii() else -1.0
        except ValueError:
            cpus = -1.0
        if not 0 < cpus <= 1024:
            raise OcipyError(f"--cpus {opts.cpus}: expected a number of CPUs such as 0.5 or 2")
        resources.setdefault("cpu", {}).update({"quota": round(cpus * _CPU_PERIOD), "period": _CPU_PERIOD})
    if opts.pids_limit is not None:
        text = opts.pids_limit
        if not (text.lstrip("-").isascii() and text.lstrip("-").isdigit()) or len(text) > 19:
            raise OcipyError(f"--pids-limit {text}: expected a number (-1 or 0: unlimited)")
        n = int(text)
        resources.setdefault("pids", {})["limit"] = -1 if n <= 0 else n


def _volumes(config: dict[str, Any], opts: RunOptions) -> None:
    for spec in opts.volumes:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise OcipyError(f"-v {spec}: expected SRC:DST[:OPTIONS]")
        src, dst = parts[0], parts[1]
        flags = parts[2].split(",") if len(parts) == 3 else []
        if not src.startswith("/"):
            raise OcipyError(f"-v {spec}: named volumes are not supported: the source must be an absolute path")
        if not dst.startswith("/"):
            raise OcipyError(f"-v {spec}: the destination must be an absolute path")
        if not os.path.exists(src):
            raise OcipyError(f"-v {spec}: {src}: no such file or directory")
        unknown = [f for f in flags if f not in ("ro", "rw", "z", "Z", "rprivate", "private", "rshared", "shared",
                                                 "rslave", "slave", "nosuid", "nodev", "noexec")]  # fmt: skip
        if unknown or ("ro" in flags and "rw" in flags):
            raise OcipyError(f"-v {spec}: unknown or conflicting option {','.join(unknown) or 'ro,rw'}")
        options = ["rbind", "ro" if "ro" in flags else "rw"]
        options += [f for f in flags if f not in ("ro", "rw", "z", "Z")]  # SELinux relabel: not on this host
        if not any(f.endswith(("private", "shared", "slave")) for f in flags):
            options.append("rprivate")
        config.setdefault("mounts", []).append({"destination": dst, "type": "bind", "source": os.path.abspath(src),
                                                "options": options})  # fmt: skip
