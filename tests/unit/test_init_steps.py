"""The container init's steps (runtime/init.py INIT_STEPS) and the handshake (runtime/handshake.py).

No root needed: the order is checked on the table, the call order of the
process-side steps with recording fakes, and the imports of every
child-side function against what `init.preload` loads.
"""

from __future__ import annotations

import dis
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from ocipy.runtime import handshake, init
from ocipy.runtime.handshake import Channel, FdOwner, Msg
from support.helpers import parsed_config  # tests/ is on sys.path (conftest.py)

NAMES = [name for name, _needs, _fn in init.INIT_STEPS]


def test_every_step_says_what_it_needs() -> None:
    assert len(NAMES) == len(set(NAMES))
    for name, needs, fn in init.INIT_STEPS:
        assert needs.strip() and callable(fn), name


def test_seccomp_is_the_last_step_before_the_handover_and_execve() -> None:
    # runc's order: with no_new_privs the filter is loaded after the exec
    # checks; only "ready", the exec fifo, the startContainer hooks (which
    # run under the filter: runc's seccomp.bats) and execve come after it.
    assert NAMES[-1] == "execve"
    after = NAMES[NAMES.index("seccomp") + 1:]
    assert after == ["ready", "exec fifo", "startContainer hooks", "execve"]
    # Without no_new_privs loading needs CAP_SYS_ADMIN: right before the user change.
    assert NAMES.index("seccomp without no_new_privs") + 1 == NAMES.index("user")


def test_fds_are_close_on_exec_before_any_filter() -> None:
    prepare = NAMES.index("exec prepare")
    assert prepare < NAMES.index("seccomp without no_new_privs") < NAMES.index("seccomp")


def test_host_steps_come_before_pivot_root() -> None:
    pivot = NAMES.index("pivot_root")
    for name in ("mounts", "cgroups", "runtime hooks", "createContainer hooks", "proc fd dir"):
        assert NAMES.index(name) < pivot, name


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def fn(self, name: str, result: Any = None) -> Any:
        def record(*_a: Any, **_k: Any) -> Any:
            self.calls.append(name)
            return result
        return record


@pytest.mark.parametrize("nnp", [True, False])
def test_process_steps_call_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, nnp: bool) -> None:
    """Run the steps from "cwd as root" on with the kernel-facing calls recorded."""
    from ocipy.linux import syscalls as sc
    from ocipy.runtime import hooks, process

    rec = _Recorder()
    monkeypatch.setattr(process, "chdir_as_root", rec.fn("chdir", result=False))
    monkeypatch.setattr(process, "chdir_as_user", rec.fn("chdir-as-user"))
    monkeypatch.setattr(process, "prepare_exec", rec.fn("cloexec"))
    monkeypatch.setattr(process, "change_user", rec.fn("user"))
    monkeypatch.setattr(process, "check_executable", rec.fn("check"))
    monkeypatch.setattr(process, "exec_now", rec.fn("execve"))
    monkeypatch.setattr(hooks, "run_hooks", rec.fn("startContainer hooks"))
    monkeypatch.setattr(sc, "prctl", rec.fn("prctl"))

    class Filter:
        def load(self) -> None:
            rec.calls.append("seccomp")

    r_fd, w_fd = os.pipe()
    fifo = tmp_path / "fifo-stand-in"
    fifo.write_text("")
    ctx = init.InitContext()
    ctx.config = parsed_config({"process": {"args": ["true"], "cwd": "/", "noNewPrivileges": nnp},
                                "hooks": {"startContainer": [{"path": "/bin/true"}]}})
    ctx.seccomp_filter = Filter()
    ctx.fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    ch = Channel(os.open(os.devnull, os.O_RDONLY), w_fd)
    run = init._Run(ctx, ch)
    run.proc_fd_dir = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for _name, _needs, step in init.INIT_STEPS[NAMES.index("cwd as root"):]:
            step(run)
        assert os.read(r_fd, 100) == b"ready\n"
    finally:
        os.close(r_fd)
    assert fifo.read_text() == "0"  # the exec fifo was written
    if nnp:
        assert rec.calls == ["chdir", "cloexec", "user", "chdir-as-user", "prctl", "check", "seccomp",
                             "startContainer hooks", "execve"]
    else:
        assert rec.calls == ["chdir", "cloexec", "seccomp", "user", "chdir-as-user", "check",
                             "startContainer hooks", "execve"]


# --- nothing imported lazily after the namespaces are entered ------------------


def _imports(code: types.CodeType) -> set[tuple[str, tuple[str, ...]]]:
    found: set[tuple[str, tuple[str, ...]]] = set()
    fromlist: tuple[str, ...] = ()
    for ins in dis.get_instructions(code):
        if ins.opname == "LOAD_CONST" and isinstance(ins.argval, tuple):
            fromlist = ins.argval
        elif ins.opname == "IMPORT_NAME":
            found.add((ins.argval, fromlist or ()))
            fromlist = ()
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= _imports(const)
    return found


def _child_side_functions() -> list[Any]:
    from ocipy.linux import exe_guard
    from ocipy.linux.cgroups import Manager
    from ocipy.linux.cgroups import mount as cgmount
    from ocipy.runtime import exec as exec_mod
    from ocipy.runtime import hooks, process, rootfs

    fns: list[Any] = [fn for _n, _d, fn in init.INIT_STEPS]
    fns += [init.container_init, init.bootstrap, init.enter_container, init.report_error, init._join_cgroups,
            init.hand_over_notify_fd, init._write_time_offsets, init.run_steps, exec_mod._exec_child,
            exec_mod._bootstrap, Manager.join_self_v1, exe_guard.execve, exe_guard.precheck]
    for module in (process, hooks, rootfs, cgmount):
        fns += [v for k, v in vars(module).items() if isinstance(v, types.FunctionType)
                and v.__module__ == module.__name__ and k not in ("prepare_idmapped_mounts",)]
    return fns


def test_child_side_imports_are_preloaded() -> None:
    wanted: set[tuple[str, tuple[str, ...]]] = set()
    for fn in _child_side_functions():
        wanted |= _imports(fn.__code__)
    wanted = {(name, fl) for name, fl in wanted if name not in ("typing", "collections.abc")}
    src = Path(init.__file__).resolve().parents[2]
    probe = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(src)!r})\n"
        "from ocipy.runtime import init\n"
        "from ocipy.spec.config import parse\n"
        "cfg = parse({'ociVersion': '1.0.2', 'root': {'path': 'r'}, 'mounts': [{'destination': '/c', 'type': 'cgroup'}],"
        " 'hooks': {'startContainer': [{'path': '/x'}]}})\n"
        "init.preload(cfg, True)\n"
        "wanted = json.loads(sys.stdin.read())\n"
        "missing = []\n"
        "for name, fromlist in wanted:\n"
        "    if name not in sys.modules: missing.append(name); continue\n"
        "    for item in fromlist:\n"
        "        sub = name + '.' + item\n"
        "        if sub not in sys.modules and not hasattr(sys.modules[name], item): missing.append(sub)\n"
        "print(json.dumps(missing))\n"
    )
    import json

    proc = subprocess.run([sys.executable, "-I", "-c", probe], input=json.dumps(sorted(wanted)),
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == [], "imported lazily in a child but not preloaded"


# --- the handshake -------------------------------------------------------------


def test_handshake_table_names_every_message() -> None:
    doc = handshake.__doc__ or ""
    assert len(set(Msg.ALL)) == len(Msg.ALL)
    for word in Msg.ALL:
        if word != Msg.ERROR:
            assert f"``{word}" in doc, word


def test_channel_round_trip_and_eof() -> None:
    with FdOwner() as fds:
        parent, child = handshake.pipes(fds)
        child.send(Msg.PID, 42)
        child.send(Msg.ERROR, "two\nlines")
        assert parent.recv() == ("pid", "42")
        assert parent.recv() == ("error", "two lines")  # one line per message, always
        fds.close(child.wfd)
        with pytest.raises(EOFError):
            parent.recv()


def test_fd_owner_closes_everything_on_error() -> None:
    made: list[int] = []
    with pytest.raises(RuntimeError), FdOwner() as fds:
        parent, child = handshake.pipes(fds)
        made += [parent.rfd, parent.wfd, child.rfd, child.wfd]
        kept = fds.release(os.dup(parent.rfd))
        raise RuntimeError
    for fd in made:
        with pytest.raises(OSError):
            os.fstat(fd)
    os.fstat(kept)  # released: not closed
    os.close(kept)
