"""The Python API as a product (issue 15): Container objects, capture and
streaming with exit codes, every verb, typed errors, threads, asyncio, and
no zombies — on real containers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from support.helpers import IS_ROOT, unique_id, wait_for, zombie_children

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not IS_ROOT, reason="needs root: namespaces and mounts")]



@pytest.fixture
def root(tmp_path: Path):  # type: ignore[no-untyped-def]
    from ocipy import api

    state = tmp_path / "state"
    yield str(state)
    left = [c.id for c in api.list_containers(root=str(state))]
    for cid in left:
        api.delete(cid, root=str(state), force=True)
    assert left == [], f"containers left behind: {left}"


@pytest.fixture
def sleeper(make_bundle):  # type: ignore[no-untyped-def]
    return str(make_bundle(["sleep", "60"]))


def test_container_object_lifecycle_and_live_attributes(root, make_bundle):
    from ocipy import api

    def edit(c):  # type: ignore[no-untyped-def]
        c["annotations"] = {"org.example.k": "v"}

    bundle = str(make_bundle(["sleep", "60"], edit=edit))
    cid = unique_id("api")
    c = api.create(cid, bundle, root=root)
    try:
        assert isinstance(c, api.Container)
        assert (c.id, c.root, c.status, c.bundle) == (cid, root, "created", bundle)
        assert c.pid > 0 and c.created.endswith("Z") and c.annotations == {"org.example.k": "v"}
        assert c.state()["status"] == "created"
        same = api.get(cid, root=root)
        assert same == c and same.pid == c.pid
        assert api.Container.get(cid, root=root) == c
        assert [x.id for x in api.list_containers(root=root)] == [cid]
        c.start()
        assert c.status == "running" and same.status == "running"  # re-read, not cached
        assert c.processes() == [c.pid]
        c.pause()
        assert c.status == "paused"
        c.resume()
        assert c.status == "running"
        c.kill("KILL")
        assert c.wait(timeout=10) == 128 + 9
        assert c.status == "stopped" and c.pid == 0
        c.delete()
    finally:
        api.delete(cid, root=root, force=True)
    from ocipy.errors import ContainerNotFound

    with pytest.raises(ContainerNotFound) as e:
        c.status  # noqa: B018
    assert e.value.id == cid


def test_wait_returns_the_exit_code_and_times_out(root, make_bundle):
    from ocipy import api

    cid = unique_id("api")
    with api.create(cid, str(make_bundle(["sh", "-c", "sleep 0.5; exit 42"])), root=root) as c:
        c.start()
        with pytest.raises(TimeoutError):
            c.wait(timeout=0.05)
        assert c.wait() == 42
        assert c.wait() == 42  # asked again: the status was kept


def test_context_manager_deletes_also_on_exception(root, sleeper):
    from ocipy import api

    cid = unique_id("api")
    with pytest.raises(RuntimeError, match="boom"):
        with api.create(cid, sleeper, root=root) as c:
            c.start()
            raise RuntimeError("boom")
    assert api.list_containers(root=root) == []
    assert not (Path(root) / cid).exists()


def test_exec_captures_stdout_stderr_and_the_exit_code(root, sleeper, capfd):
    from ocipy import api

    with api.run(unique_id("api"), sleeper, root=root, detach=True) as c:
        r = c.exec(["sh", "-c", "echo hi; echo oops >&2; exit 3"], capture=True)
        assert (r.exit_code, r.stdout, r.stderr) == (3, b"hi\n", b"oops\n")
        exit_code, out, err = r  # unpacks as the (exit_code, stdout, stderr)
        assert (exit_code, out, err) == (3, b"hi\n", b"oops\n")
        big = c.exec(["sh", "-c", "head -c 1000000 /dev/zero"], capture=True)
        assert big.stdout == b"\0" * 1000000 and big.exit_code == 0
        killed = c.exec(["sh", "-c", "kill -9 $$"], capture=True)
        assert killed.exit_code == 128 + 9
        plain = c.exec(["sh", "-c", "exit 5"])
        assert plain.exit_code == 5 and plain.stdout is None and plain.stderr is None
    # the capture went through pipes given to the process, not through our own fd 1 and 2
    seen = capfd.readouterr()
    assert "hi" not in seen.out and "oops" not in seen.err


def test_exec_feeds_stdin_from_bytes_and_from_a_file(root, sleeper, tmp_path):
    from ocipy import api

    data = tmp_path / "input"
    data.write_bytes(b"from a file\n")
    with api.run(unique_id("api"), sleeper, root=root, detach=True) as c:
        assert c.exec(["cat"], capture=True, stdin=b"fed\n").stdout == b"fed\n"
        with open(data, "rb") as f:
            assert c.exec(["cat"], capture=True, stdin=f).stdout == b"from a file\n"
        assert c.exec(["wc", "-c"], capture=True, stdin=b"x" * 300000).stdout.strip() == b"300000"
        assert c.exec(["cat"], capture=True, stdin=api.DEVNULL).stdout == b""


def test_exec_with_every_option(root, sleeper, tmp_path):
    from ocipy import api

    with api.run(unique_id("api"), sleeper, root=root, detach=True) as c:
        r = c.exec(["sh", "-c", "id -u; id -g; id -G; pwd; echo $FOO; grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status"],
                   capture=True, user="1000:1000", additional_gids=[10, 20], cwd="/tmp", env={"FOO": "bar"},
                   caps=["CAP_SYS_ADMIN"], no_new_privs=True)  # fmt: skip
        lines = r.stdout.decode().splitlines()
        assert r.exit_code == 0, r.stderr
        assert lines[0:2] == ["1000", "1000"]
        assert set(lines[2].split()) >= {"10", "20"}
        assert lines[3:5] == ["/tmp", "bar"]
        bounding = int(lines[5].split()[1], 16)
        assert bounding & (1 << 21), "CAP_SYS_ADMIN (21) was added to the bounding set"
        assert lines[6].split() == ["NoNewPrivs:", "1"]
        # a full process object, as `exec --process`
        process = dict(c.config["process"], args=["sh", "-c", "echo $X"], env=["X=full"])
        assert c.exec(process=process, capture=True).stdout == b"full\n"
        # preserve_fds: fd 3 of the caller is fd 3 of the process
        rfd, wfd = os.pipe()
        os.set_inheritable(wfd, True)
        saved = os.dup(3) if _fd_open(3) else None
        os.dup2(wfd, 3)
        try:
            assert c.exec(["sh", "-c", "echo three >&3"], preserve_fds=1).exit_code == 0
        finally:
            if saved is None:
                os.close(3)
            else:
                os.dup2(saved, 3)
                os.close(saved)
            os.close(wfd)
        assert os.read(rfd, 100) == b"three\n"
        os.close(rfd)
        # pid_file
        pid_file = tmp_path / "exec.pid"
        r = c.exec(["sh", "-c", "echo $$"], capture=True, pid_file=str(pid_file))
        assert int(pid_file.read_text()) == r.pid
    from ocipy.errors import InvalidConfig

    with api.run(unique_id("api"), sleeper, root=root, detach=True) as c, pytest.raises(InvalidConfig) as e:
        c.exec(["true"], user="nobody")
    assert e.value.field == "--user"


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_exec_stream_yields_chunks_as_they_come_and_the_exit_code(root, sleeper):
    from ocipy import api

    with api.run(unique_id("api"), sleeper, root=root, detach=True) as c:
        stream = c.exec_stream(["sh", "-c", "echo first; sleep 1; echo second >&2; exit 7"])
        got = []
        started = time.monotonic()
        for name, data in stream:
            got.append((name, data, time.monotonic() - started))
        assert [(n, d) for n, d, _ in got] == [("stdout", b"first\n"), ("stderr", b"second\n")]
        assert got[1][2] - got[0][2] > 0.5, "the first chunk came as it was written, not at the end"
        assert stream.exit_code == 7
        # leaving early kills the process and still collects it
        with c.exec_stream(["sh", "-c", "while :; do echo y; sleep 0.01; done"]) as endless:
            for _ in endless:
                break
        assert endless.exit_code == 128 + 9
        assert endless.pid not in c.processes()


def test_spawn_gives_the_pty_master_in_terminal_mode(root, sleeper):
    from ocipy import api

    with api.run(unique_id("api"), sleeper, root=root, detach=True) as c:
        with c.spawn(["sh", "-c", "tty; read line; echo got $line"], tty=True) as p:
            assert p.master is not None and os.isatty(p.master)
            os.write(p.master, b"typed\n")
            out = b""
            while b"got typed" not in out:
                chunk = os.read(p.master, 1024)
                assert chunk
                out += chunk
        assert p.exit_code == 0
        assert b"/dev/pts/" in out  # (the pty echoes what was typed, too)
        r = c.exec(["sh", "-c", "tty; echo err >&2"], tty=True, capture=True)
        assert r.exit_code == 0 and r.stderr is None and b"/dev/pts/" in r.stdout and b"err" in r.stdout
        with c.spawn(["cat"], stdin=api.PIPE, stdout=api.PIPE) as p:
            assert p.stdin is not None and p.stdout is not None
            os.write(p.stdin, b"piped\n")
            os.close(p.stdin)
            p.stdin = None
            assert os.read(p.stdout, 100) == b"piped\n"
        assert p.exit_code == 0


def test_run_captures_streams_and_detaches(root, make_bundle):
    from ocipy import api

    bundle = str(make_bundle(["sh", "-c", "echo out; echo err >&2; read x; echo got $x; exit 4"]))
    r = api.run(unique_id("api"), bundle, root=root, capture=True, stdin=b"fed\n")
    assert r == api.Result(4, b"out\ngot fed\n", b"err\n")
    stream = api.run_stream(unique_id("api"), bundle, root=root, stdin=b"s\n")
    chunks = list(stream)
    assert b"".join(d for n, d in chunks if n == "stdout") == b"out\ngot s\n"
    assert stream.exit_code == 4
    assert api.list_containers(root=root) == []  # deleted once they ended
    with api.run(unique_id("api"), bundle, root=root, detach=True, stdin=b"d\n", stdout=api.DEVNULL) as c:
        assert isinstance(c, api.Container)
        assert c.wait(timeout=10) == 4


def test_run_with_a_terminal_config_captures_through_the_pty(root, make_bundle):
    from ocipy import api

    def edit(c):  # type: ignore[no-untyped-def]
        c["process"]["terminal"] = True

    r = api.run(unique_id("api"), str(make_bundle(["sh", "-c", "tty; exit 2"], edit=edit)), root=root, capture=True)
    assert r.exit_code == 2 and r.stdout.startswith(b"/dev/pts/") and r.stderr is None


def test_stats_update_and_events(root, sleeper):
    from ocipy import api

    with api.run(unique_id("api"), sleeper, root=root, detach=True) as c:
        stats = c.stats()
        assert {"cpu", "memory", "pids"} <= set(stats)
        assert stats["pids"]["current"] >= 1
        new = c.update(memory=64 << 20, pids_limit=50, cpu_shares=512)
        assert new["memory"]["limit"] == 64 << 20 and new["pids"]["limit"] == 50
        assert c.config["linux"]["resources"]["pids"]["limit"] == 50
        assert c.update({"pids": {"limit": 60}})["pids"]["limit"] == 60
        events = c.events(interval=0.05)
        first = next(events)
        events.close()
        assert first["type"] == "stats" and first["id"] == c.id
        from ocipy.errors import OcipyError

        with pytest.raises(OcipyError, match="Intel RDT"):
            c.update(l3_cache_schema="L3:0=f")
        with pytest.raises(TypeError, match="unknown limit"):
            c.update(memroy=1)


def test_typed_errors(root, sleeper, make_bundle):
    from ocipy import api
    from ocipy.errors import (
        ConfigError,
        ContainerExists,
        ContainerNotFound,
        InvalidConfig,
        KernelError,
        OcipyError,
    )

    cid = unique_id("api")
    with pytest.raises(ContainerNotFound) as nf:
        api.get(cid, root=root)
    assert nf.value.id == cid and str(nf.value) == f"container does not exist: {cid}"
    with api.create(cid, sleeper, root=root):
        with pytest.raises(ContainerExists) as ex:
            api.create(cid, sleeper, root=root)
        assert ex.value.id == cid
    assert ConfigError is InvalidConfig and issubclass(KernelError, OcipyError)

    def bad(c):  # type: ignore[no-untyped-def]
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": "many", "soft": 1}]

    with pytest.raises(InvalidConfig) as ic:
        api.create(unique_id("api"), str(make_bundle(["true"], edit=bad)), root=root)
    assert ic.value.field.startswith("process.rlimits[0]")
    assert api.list_containers(root=root) == []


def test_library_warnings_go_through_logging(root, sleeper, caplog):
    from ocipy import api

    cid = unique_id("api")
    with api.create(cid, sleeper, root=root):
        broken = unique_id("api")
        (Path(root) / broken).mkdir()
        (Path(root) / broken / "state.json").write_text("{not json")
        with caplog.at_level(logging.WARNING, logger="ocipy"):
            assert [c.id for c in api.list_containers(root=root)] == [cid]
        assert [r.name for r in caplog.records] == ["ocipy.runtime"]
        assert f"load container {broken}" in caplog.text
        api.delete(broken, root=root, force=True)


def test_two_threads_drive_different_containers(root, make_bundle):
    """Each thread creates, starts, execs with capture, waits and deletes its
    own containers; a container created meanwhile by the other thread (it
    inherits our pipe ends until its own execve) must not stall a capture."""
    from ocipy import api

    bundle = str(make_bundle(["sleep", "60"]))
    errors: list[BaseException] = []
    done = {"a": 0, "b": 0}

    def drive(name: str) -> None:
        try:
            for i in range(8):
                with api.create(unique_id(f"thr{name}"), bundle, root=root) as c:
                    c.start()
                    r = c.exec(["sh", "-c", f"echo {name}{i}; exit {i}"], capture=True)
                    assert (r.exit_code, r.stdout) == (i, f"{name}{i}\n".encode())
                    c.kill("KILL")
                    assert c.wait(timeout=10) == 137
                done[name] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=drive, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert done == {"a": 8, "b": 8}


def test_capture_is_not_stalled_by_a_created_container_holding_the_pipe(root, make_bundle):
    from ocipy import api

    bundle = str(make_bundle(["sleep", "60"]))
    with api.run(unique_id("api"), bundle, root=root, detach=True) as c:
        with c.spawn(["sh", "-c", "sleep 0.3; echo late"], stdout=api.PIPE) as p:
            # another container, forked while our pipe's write end is open in this process
            with api.create(unique_id("api"), bundle, root=root):
                stream = api.Stream(p.pid, p._plan)
                started = time.monotonic()
                assert list(stream) == [("stdout", b"late\n")]
                assert time.monotonic() - started < 5
                assert stream.exit_code == 0


def test_asyncio_wait_exec_and_streaming(root, make_bundle):
    from ocipy import aio

    bundle = str(make_bundle(["sleep", "60"]))

    async def main() -> None:
        async with await aio.create(unique_id("aio"), bundle, root=root) as c:
            await c.start()
            r = await c.exec(["sh", "-c", "echo hi; exit 2"], capture=True)
            assert (r.exit_code, r.stdout) == (2, b"hi\n")
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1

            task = asyncio.create_task(ticker())
            stream = c.exec_stream(["sh", "-c", "echo a; sleep 0.5; echo b >&2; exit 9"])
            chunks = [chunk async for chunk in stream]
            assert chunks == [("stdout", b"a\n"), ("stderr", b"b\n")] and stream.exit_code == 9
            assert ticks >= 5, "the loop ran while the stream waited"
            await c.kill("KILL")
            assert await c.wait(timeout=10) == 137
            task.cancel()
        r = await aio.run(unique_id("aio"), str(make_bundle(["sh", "-c", "echo x; exit 3"])), root=root, capture=True)
        assert (r.exit_code, r.stdout) == (3, b"x\n")

    asyncio.run(main())


def test_many_cycles_leave_no_zombie(root, make_bundle):
    """200 create/start/exec/kill/delete cycles in one process: the inits,
    the exec'd processes (waited for, detached and never waited for,
    streamed and left early) and, without a pid namespace, the container's
    other processes are all collected."""
    from ocipy import api

    def no_pidns(c):  # type: ignore[no-untyped-def]
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] != "pid"]

    bundles = [str(make_bundle(["sleep", "60"])), str(make_bundle(["sh", "-c", "sleep 60 & sleep 60"], edit=no_pidns))]
    before = zombie_children()
    for i in range(200):
        with api.create(unique_id("cyc"), bundles[i % 2], root=root) as c:
            c.start()
            assert c.exec(["true"], capture=True).exit_code == 0
            if i % 4 == 0:
                c.exec(["sleep", "30"], detach=True)  # never waited for: collected at delete
            if i % 4 == 1:
                with c.exec_stream(["sh", "-c", "echo x; sleep 30"]) as s:
                    next(iter(s))
            if i % 4 == 2:
                c.spawn(["sh", "-c", "exit 0"]).wait()
            c.kill("KILL", all=i % 3 == 0)
            if i % 5 == 0:
                c.wait(timeout=10)
    assert wait_for(lambda: not (zombie_children() - before), 5), (
        f"{len(zombie_children() - before)} zombie children after 200 cycles")
    assert api.list_containers(root=root) == []


def test_cli_output_unchanged_for_update_and_exec_errors(runtime, make_bundle):
    """The CLI now goes through the API: its errors keep their wording and codes."""
    cid = unique_id("cli")
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "60"])), cid)
    try:
        r = runtime("update", "--memory", "lots", cid, check=False)
        assert r.returncode == 1 and "invalid value for --memory: 'lots'" in r.stderr
        r = runtime("exec", cid, check=False)
        assert r.returncode == 255 and r.stderr.strip().endswith("exec: no command given (args or --process)")
        r = runtime("exec", cid, "sh", "-c", "exit 6", check=False)
        assert r.returncode == 6
        r = runtime("exec", "-g", "x", cid, "true", check=False)
        assert r.returncode == 255 and "--additional-gids: 'x' is not a number" in r.stderr
        assert json.loads(runtime("ps", "-f", "json", cid).stdout) == [runtime.state(cid)["pid"]]
    finally:
        runtime("delete", "-f", cid, check=False)
