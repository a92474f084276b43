"""The parent side of create: validate, fork the children, answer them, save state.

On any failure everything create made is undone before the error is raised:
children killed, cgroups removed, the state directory deleted (runtime.md
"Errors": the environment is left as if the operation were never attempted).
"""

from __future__ import annotations

import errno
import os
import time

from ocipy import jsonfast, log
from ocipy.errors import ConfigError, KernelError, OcipyError
from ocipy.runtime import store
from ocipy.runtime.handshake import Channel, FdOwner, Msg, pipes
from ocipy.runtime.init import InitContext
from ocipy.spec.config import Config, parse
from ocipy.spec.runtime import NAMESPACES

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

    from ocipy.spec.config import IdMapping, Linux, Namespace
    from ocipy.spec.seccomp import SeccompPlan


def load_config(bundle: str) -> Config:
    """The bundle's config.json, parsed (spec/config.py); ConfigError names a bad field."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise OcipyError(f"bundle {bundle}: config.json not found") from None
    except OSError as e:
        raise OcipyError(f"{path}: {e.strerror}") from None
    try:
        config = jsonfast.loads(raw)
    except ValueError as e:
        raise OcipyError(f"{path}: malformed JSON: {e}") from None
    if b"\\u0000" in raw:  # the only way JSON can carry a NUL: find where, cheaply otherwise
        from ocipy.spec.runtime import find_nul

        field = find_nul(config)
        if field:
            raise ConfigError(field, "contains a NUL character")
    return parse(config)


def check_preserve_fds(count: int) -> None:
    """--preserve-fds counts fds after 3: a negative count would close the
    container's stdout and stderr (runc's flag is unsigned)."""
    if count < 0:
        raise OcipyError(f"invalid value \"{count}\" for flag --preserve-fds: must be 0 or more")


def rfc3339_now() -> str:
    now = time.time_ns()
    secs, nanos = divmod(now, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{nanos:09d}Z"


def _open_namespace_paths(namespaces: list[Namespace]) -> tuple[list[tuple[str, int]], int]:
    """Open every namespace `path` and check it is a namespace of that type."""
    import fcntl

    joins: list[tuple[str, int]] = []
    new_flags = 0
    try:
        for ns in namespaces:
            flag, path = ns.flag, ns.path
            if not path:
                new_flags |= flag
                continue
            field = f"linux.namespaces[{ns.index}].path"
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise ConfigError(field, f"{path}: {e.strerror}") from None
            joins.append((ns.type, fd))
            try:
                actual = fcntl.ioctl(fd, 0xB703)  # NS_GET_NSTYPE
            except OSError:
                raise ConfigError(field, f"{path} is not a namespace") from None
            if actual != flag:
                kind = next((k for k, (f, _) in NAMESPACES.items() if f == actual), hex(actual))
                raise ConfigError(field, f"{path} is a {kind} namespace, not {ns.type}")
    except BaseException:
        for _, fd in joins:
            os.close(fd)
        raise
    # user namespace first (it owns the others), mount last (paths vanish after it)
    joins.sort(key=lambda item: (item[0] != "user", item[0] == "mount"))
    return joins, new_flags


def _write_id_maps(pid: int, linux: Linux) -> None:
    maps: tuple[tuple[str, str, list[IdMapping]], ...] = (
        ("uidMappings", "uid_map", linux.uid_mappings), ("gidMappings", "gid_map", linux.gid_mappings))
    for key, name, mappings in maps:
        lines = "".join(m.line() for m in mappings)
        if not lines:
            continue
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(lines)
        except OSError as e:
            raise ConfigError(f"linux.{key}", f"writing {name}: {e.strerror}") from None


def cgroup_manager(linux: Linux, container_id: str, systemd: bool) -> Any:
    from ocipy.linux import cgroups
    from ocipy.spec.resources import Resources

    return cgroups.manager(linux.resources or Resources(), linux.cgroups_path, container_id, systemd)


def create(
    root: str,
    container_id: str,
    bundle: str,
    *,
    console_socket: str | None = None,
    console_fd: int | None = None,
    pid_file: str | None = None,
    no_pivot: bool = False,
    no_new_keyring: bool = False,
    preserve_fds: int = 0,
    systemd_cgroup: bool = False,
    stdio: tuple[int | None, int | None, int | None] | None = None,
    config: Config | None = None,
) -> store.Container:
    """Create a container; its init waits for `start` (see runtime/init.py).

    `stdio`: fds that become the container process's 0, 1 and 2 (None: the
    caller's own, inherited); the caller closes its copies afterwards.
    `config`: the bundle's config.json as `load_config` parsed it, when the
    caller already read it (`run`: each parse costs ~1 ms)."""
    store.check_id(container_id)
    check_preserve_fds(preserve_fds)
    bundle = os.path.abspath(bundle)
    if config is None:
        config = load_config(bundle)
    process = config.process
    if process is None:
        raise ConfigError("process", "is required to create a container")
    rootfs = os.path.normpath(os.path.join(bundle, config.root_path))
    if not os.path.isdir(rootfs):
        raise ConfigError("root.path", f"rootfs {rootfs} does not exist or is not a directory")
    linux = config.linux
    if process.terminal and console_socket is None and console_fd is None:
        raise OcipyError("cannot allocate tty if ocipy will detach without setting console socket")
    if not process.terminal and console_socket is not None:
        raise OcipyError("cannot use console socket if ocipy will not allocate tty")
    if (config.hostname or config.domainname) and "uts" not in linux.ns_types:
        # config.md: setting hostname without a UTS namespace MUST be an error
        raise ConfigError("hostname", "needs a new uts namespace")
    # Socket activation: fds passed to us by systemd go on to the container (runc does the same).
    listen = os.environ.get("LISTEN_FDS", "")
    listen_fds = int(listen) if listen.isdigit() else 0
    extra_fds = listen_fds + preserve_fds

    from ocipy.runtime.init import preload
    from ocipy.runtime.rootfs import check_sysctl_namespaces, mount_plan, prepare_mount_sources

    if linux.sysctl:
        check_sysctl_namespaces(linux)

    ctx = InitContext()
    ctx.config, ctx.bundle, ctx.rootfs = config, bundle, rootfs
    ctx.new_keyring = not no_new_keyring
    ctx.no_pivot, ctx.extra_fds, ctx.listen_env = no_pivot, extra_fds, listen_fds > 0
    ctx.stdio = stdio
    ctx.parent_hooks = bool(config.hooks.of("prestart") or config.hooks.of("createRuntime"))
    preload(config, process.terminal)
    if linux.seccomp is not None:
        from ocipy.linux import seccomp

        ctx.seccomp_filter = seccomp.prepare(linux.seccomp, cache=True)
    fds = FdOwner()  # every fd made for the children, closed on every error path
    bootstrap_pid = init_pid = 0
    pid_file_written = ""  # engines read the pid file only after a create that succeeded
    manager = None
    data: dict[str, Any] = {}  # the container's state, for the cleanup below
    try:
        ns_fds, new_flags = _open_namespace_paths(linux.namespaces)
        for _, fd in ns_fds:
            fds.own(fd)
        ctx.ns_fds = ns_fds
        ctx.new_userns = bool(new_flags & NAMESPACES["user"][0])
        ctx.new_ns_flags = new_flags & ~NAMESPACES["user"][0]
        with store.new_container(root, container_id) as (container, _lock):
            ctx.fifo_path = os.path.join(container.dir, store.EXEC_FIFO)
            old_umask = os.umask(0)
            try:
                os.mkfifo(ctx.fifo_path, 0o622)
            finally:
                os.umask(old_umask)
            ctx.fifo_fd = fds.own(os.open(ctx.fifo_path, os.O_PATH | os.O_CLOEXEC))
            container.data = {
                "id": container_id,
                "bundle": bundle,
                "rootfs": rootfs,
                "owner": _owner(),
                "config": config.raw,  # as written (keys folded); exec and update parse it again
                "preserve_fds": extra_fds,
            }
            data = container.data
            ctx.state = {
                "ociVersion": config.oci_version, "id": container_id, "status": "creating",
                "bundle": bundle, "annotations": config.annotations,
            }  # fmt: skip
            from ocipy.runtime.init import bootstrap, can_clone_init, clone_init, fork_bootstrap

            manager = cgroup_manager(linux, container_id, systemd_cgroup)
            direct = can_clone_init(ctx)
            saved: dict[str, Any] | None = None
            if manager is not None:
                saved = container.data["cgroup"] = manager.to_state()  # with what it will make ("planned")
                container.save(sync=False)  # before any mkdir: `delete -f` finds them
                # Cloned directly, the init needs only its cgroup2 directory at
                # birth: the rest is made while it mounts (see clone_init).
                direct = direct and manager.create_unified()
                if not direct:
                    manager.create()
                container.data["cgroup"] = manager.to_state()
                ctx.cgroup_manager = manager
            if saved is None or not _cleans_up_alike(saved, container.data["cgroup"]):
                container.save(sync=False)  # early, so `delete -f` can clean up if we are killed

            if console_socket is not None:
                console_fd = fds.own(_connect_console(console_socket))
            ctx.console_fd = console_fd
            ctx.mount_plan = mount_plan(config.mounts, bundle)
            userns = ctx.new_userns or any(t == "user" for t, _ in ctx.ns_fds)
            ctx.idmap_trees = prepare_mount_sources(ctx.mount_plan, linux, userns)
            for fd in ctx.idmap_trees.values():
                fds.own(fd)
            parent, ctx.channel = pipes(fds)
            ctx.parent_only_fds = [_lock, parent.rfd, parent.wfd]

            # runc's names for the steps (nsexec, init) in the debug lines: tools and tests grep for them
            log.debug(f"nsexec container setup: {'cloning the init' if direct else 'forking the bootstrap'}"
                      f" of {container_id}")  # fmt: skip
            init_pid = clone_init(ctx) if direct else 0
            if direct and not init_pid and manager is not None:
                manager.create()  # clone3 refused: the bootstrap path needs every directory first
                container.data["cgroup"] = manager.to_state()
            if not init_pid:
                bootstrap_pid, ctx.cgroup_self_join = fork_bootstrap(manager)
                if bootstrap_pid == 0:
                    bootstrap(ctx)
            # What the children got is theirs now: close our copies.
            child_fds = [ctx.channel.rfd, ctx.channel.wfd, ctx.fifo_fd, *ctx.idmap_trees.values(),
                         *(fd for _, fd in ns_fds)]  # fmt: skip
            if console_socket is not None and ctx.console_fd is not None:
                child_fds.append(ctx.console_fd)
            for fd in child_fds:
                fds.close(fd)
            ctx.fifo_fd, ctx.idmap_trees, ns_fds = -1, {}, []
            if init_pid:
                if manager is not None:
                    manager.create(resources=False)  # the directories the init joins
                    container.data["cgroup"] = manager.to_state()
                # The init joins its cgroups and goes on mounting while we finish:
                # limits and device rules are in place before it reports "ready".
                parent.send(Msg.INIT_GO)
                _init_born(init_pid, linux, container)
                if manager is not None:
                    manager.apply_resources()
                if pid_file:  # now, while the init mounts (its fsync off the critical path); removed on failure
                    _write_pid_file(pid_file, init_pid)
                    pid_file_written = pid_file
            else:
                if manager is not None and not ctx.cgroup_self_join:
                    manager.apply(bootstrap_pid)
                parent.send(Msg.GO)
            init_pid = _converse(parent, bootstrap_pid, init_pid, linux, ctx, container)
            fds.close_all()

            container.data["created"] = rfc3339_now()
            container.data["created_done"] = True
            container.save()
            if pid_file and not pid_file_written:
                _write_pid_file(pid_file, init_pid)
            return container
    except BaseException:
        fds.close_all()
        if pid_file_written:
            from ocipy.fsutil import unlink_quietly

            unlink_quietly(os.path.abspath(pid_file_written))
        _kill_children(bootstrap_pid, init_pid or data.get("pid", 0))
        if manager is not None:
            try:
                manager.destroy()
            except OcipyError:
                pass
        raise


def _cleans_up_alike(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether `delete -f` removes the same cgroups from the saved record as
    from `now` (Manager.to_state): the directories made since were all planned
    and nothing else changed.  Then that record need not be written again
    (each write is synced: ~0.5 ms here, several on a busy disk)."""
    return (now["planned"] == saved["planned"] and now["owned"] == saved["owned"]
            and now["paths"] == saved["paths"] and set(now["created"]) <= set(saved["planned"]))


def _converse(parent: Channel, bootstrap_pid: int, init_pid: int, linux: Linux, ctx: InitContext,
              container: store.Container) -> int:  # fmt: skip
    """Answer the children until the init reports "ready"; return the init's pid."""
    from ocipy.runtime import hooks

    while True:
        try:
            word, rest = parent.recv()
        except EOFError:
            raise OcipyError("container init exited before it was ready") from None
        if word == Msg.ERROR:
            raise OcipyError(rest)
        if word == Msg.USERNS:
            _write_id_maps(bootstrap_pid, linux)
            parent.send(Msg.MAPPED)
        elif word == Msg.PID:
            init_pid = int(rest)
            os.waitpid(bootstrap_pid, 0)
            _init_born(init_pid, linux, container)
            parent.send(Msg.INIT_GO)
        elif word == Msg.SECCOMP:
            assert linux.seccomp is not None
            forward_notify_fd(init_pid, int(rest), linux.seccomp, dict(ctx.state, pid=init_pid))
            parent.send(Msg.SECCOMP_DONE)
        elif word == Msg.HOOKS:
            state = dict(ctx.state, pid=init_pid)
            cfg = ctx.config.hooks
            # runtime.md steps 3-4: a failing hook fails create
            hooks.run_hooks("prestart", cfg.of("prestart"), state)
            hooks.run_hooks("createRuntime", cfg.of("createRuntime"), state)
            parent.send(Msg.HOOKS_DONE)
        elif word == Msg.READY:
            log.debug(f"init: closing the pipe to signal completion (init {init_pid} is ready)")
            return init_pid


def _init_born(init_pid: int, linux: Linux, container: store.Container) -> None:
    """Record the init (so that `delete -f` finds it if we are killed) and
    give it its network devices."""
    container.data["pid"] = init_pid
    container.data["pid_start"] = store.process_start_time(init_pid)
    container.save(sync=False)
    if linux.net_devices:
        from ocipy.linux import netdev

        netns = linux.namespace("network")
        netdev.move_devices(linux.net_devices, init_pid, netns is not None and not netns.path)


def _kill_children(bootstrap_pid: int, init_pid: int) -> None:
    for pid in (init_pid, bootstrap_pid):
        if pid > 0:
            try:
                os.kill(pid, 9)  # SIGKILL
            except ProcessLookupError:
                pass
    if bootstrap_pid > 0:
        try:
            os.waitpid(bootstrap_pid, 0)
        except ChildProcessError:
            pass
    if init_pid > 0:
        try:
            os.waitpid(init_pid, 0)  # ours when cloned directly, or when we are the subreaper (run)
        except ChildProcessError:
            store.wait_gone(init_pid)


def _connect_console(path: str) -> int:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise OcipyError(f"--console-socket {path}: {e.strerror}") from None
    return sock.detach()


def forward_notify_fd(pid: int, child_fd: int, plan: SeccompPlan, state: dict[str, Any]) -> None:
    """Copy the child's seccomp notify fd and send it to linux.seccomp.listenerPath, as runc does."""
    from ocipy.linux import seccomp, syscalls

    fd = syscalls.pidfd_getfd(pid, child_fd)
    try:
        seccomp.send_listener(plan.listener_path, fd, state, plan.listener_metadata)
    finally:
        os.close(fd)


def _write_pid_file(path: str, pid: int) -> None:
    try:  # whole, synced and renamed into place (engines read it), no temp file left on failure
        store.write_file(os.path.abspath(path), str(pid).encode(), 0o644)
    except KernelError as e:
        raise KernelError("write pid file", path, e.errno or errno.EIO) from None


def _owner() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
