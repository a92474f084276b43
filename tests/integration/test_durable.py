"""Nothing lost, nothing leaked (issue 12 class 6), on the real kernel.

runtime.md "Errors": "Unless otherwise stated, generating an error MUST leave
the state of the environment as if the operation were never attempted".  So
a create that fails (full disk) or is killed (then `delete -f`) leaves no
state directory, no cgroup directory and no process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.helpers import IS_ROOT, unique_id, wait_for, zombie_children

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not IS_ROOT, reason="needs root: namespaces and mounts")]

CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_dirs(name: str) -> list[str]:
    """Every cgroup directory (any hierarchy, near the top) whose name mentions `name`."""
    found = []
    for hierarchy in os.listdir(CGROUP_ROOT):
        top = os.path.join(CGROUP_ROOT, hierarchy)
        if os.path.islink(top) or not os.path.isdir(top):
            continue
        for dirpath, dirnames, _ in os.walk(top):
            for d in dirnames:
                if name in d:
                    found.append(os.path.join(dirpath, d))
            if dirpath.count("/") > top.count("/") + 2:
                dirnames[:] = []
    return found


def processes_in(name: str) -> list[int]:
    """Live processes whose cgroup path mentions `name`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if name in Path(f"/proc/{entry}/cgroup").read_text():
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def assert_nothing_left(root: Path, cid: str, cgroup_name: str | None = None) -> None:
    name = cgroup_name or cid
    assert wait_for(lambda: not processes_in(name), 5), f"processes left: {processes_in(name)}"
    assert cgroup_dirs(name) == [], f"cgroups left: {cgroup_dirs(name)}"
    assert not (root / cid).exists(), f"state left: {list((root / cid).iterdir())}"


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return lines[0]


# --- disk full under --root ---------------------------------------------------------------


@pytest.fixture
def tiny_root(tmp_path, runtime):
    """A 64 KiB tmpfs as --root (unmounted afterwards, after its containers are deleted)."""
    mnt = tmp_path / "tiny-root"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0711", "tmpfs", str(mnt)], check=True)
    rt = runtime.__class__(mnt)
    try:
        yield rt
    finally:
        filler = mnt / "filler"
        if filler.exists():
            filler.unlink()
        rt.cleanup()
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path, leave: int) -> None:
    """Fill the tmpfs so that only `leave` bytes (in whole pages) stay free."""
    filler = mnt / "filler"
    if filler.exists():
        filler.unlink()
    st = os.statvfs(mnt)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * size)
        except OSError:
            pass


def test_create_on_a_full_disk_fails_and_leaves_nothing(tiny_root, make_bundle):
    # state.json spans pages (tmpfs allocates 4 KiB at a time): with one or two pages
    # free its write is short, which is how a truncated state.json came about
    bundle = make_bundle(["sleep", "60"], edit=lambda c: c.update(annotations={"big": "x" * 9000}))
    state_size = None
    outcomes = []
    # from no free page at all to enough for every save create makes
    for pages in range(0, 10):
        cid = unique_id("full")
        fill(tiny_root.root, pages * 4096)
        pid_file = tiny_root.root / "init.pid"  # engines read it: it is written whole too
        proc = tiny_root("create", "--pid-file", str(pid_file), "-b", str(bundle), cid, check=False)
        if proc.returncode == 0:
            # success is only success with a whole state: state, list and delete work
            assert tiny_root.state(cid)["status"] == "created"
            assert int(pid_file.read_text()) == tiny_root.state(cid)["pid"]
            pid_file.unlink()
            state_size = (tiny_root.root / cid / "state.json").stat().st_size
            assert cid in tiny_root("list", "-q").stdout
            (tiny_root.root / "filler").unlink()
            tiny_root("delete", "-f", cid)
            outcomes.append("ok")
        else:
            line = one_line_error(proc)
            assert "No space left on device" in line, line
            assert sorted(p.name for p in tiny_root.root.iterdir()) == ["filler"]  # no pid file, no temp file
            outcomes.append("enospc")
        assert_nothing_left(tiny_root.root, cid)
    assert outcomes[0] == "enospc" and outcomes[-1] == "ok", outcomes
    assert state_size and state_size > 9000


def test_update_on_a_full_disk_keeps_the_old_state(tiny_root, make_bundle):
    cid = unique_id("full")
    tiny_root("run", "-d", "-b", str(make_bundle(["sleep", "60"])), cid)
    before = (tiny_root.root / cid / "state.json").read_bytes()
    fill(tiny_root.root, 0)
    proc = tiny_root("update", "--pids-limit", "77", cid, check=False)
    assert "No space left on device" in one_line_error(proc)
    assert (tiny_root.root / cid / "state.json").read_bytes() == before
    assert sorted(p.name for p in (tiny_root.root / cid).iterdir()) == ["state.json"]
    (tiny_root.root / "filler").unlink()
    assert tiny_root.state(cid)["status"] == "running"
    tiny_root("delete", "-f", cid)
    assert_nothing_left(tiny_root.root, cid)


# --- create killed at any point ---------------------------------------------------------


def _start_create(runtime, bundle, cid) -> subprocess.Popen[bytes]:
    return subprocess.Popen(runtime.cmd("create", "-b", str(bundle), cid), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def _nested_cgroup(cid: str):
    """A cgroupsPath with a parent that create makes too (and must record)."""
    nested = f"ocipy-durable-{cid}"

    def edit(c):
        c["linux"]["cgroupsPath"] = f"/{nested}/inner"

    return nested, edit


@pytest.mark.parametrize("hook_kind", ["prestart", "createRuntime", "createContainer"])
def test_delete_force_after_create_was_killed_in_a_hook(runtime, make_bundle, tmp_path, hook_kind):
    # A hook that blocks holds create at that step; SIGKILL the runtime there.
    # (createContainer runs in the container's mount namespace before pivot_root: host paths work)
    marker = tmp_path / "hook-started"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}; exec sleep 60"]}
    cid = unique_id("killed")
    nested, nest = _nested_cgroup(cid)

    def edit(c):
        nest(c)
        c["hooks"] = {hook_kind: [hook]}

    proc = _start_create(runtime, make_bundle(["sleep", "60"], edit=edit), cid)
    try:
        assert wait_for(marker.exists, 20), "create never reached the hook"
    finally:
        proc.kill()
        proc.wait()
    assert (runtime.root / cid).exists()
    runtime("delete", "-f", cid)
    subprocess.run(["pkill", "-f", f"touch {marker}; exec sleep 60"], check=False)
    assert_nothing_left(runtime.root, cid, nested)


def _in_user_namespace(c):
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]


@pytest.mark.parametrize("userns", [False, True], ids=["direct-clone", "bootstrap-userns"])
def test_delete_force_after_create_was_killed_as_its_cgroups_appear(runtime, make_bundle, userns):
    # The moment a cgroup directory is made is the moment it must already be recorded.
    # (A user namespace takes the other create path: a bootstrap process, every cgroup made first.)
    hierarchies = [h for h in ("pids", "memory", "cpu", "devices", "freezer", "unified")
                   if os.path.isdir(os.path.join(CGROUP_ROOT, h))]  # fmt: skip
    appeared = 0
    for hierarchy in hierarchies * 2:
        cid = unique_id("appear")
        nested, nest = _nested_cgroup(cid)

        def edit(c, nest=nest):
            nest(c)
            if userns:
                _in_user_namespace(c)

        watched = os.path.join(CGROUP_ROOT, hierarchy, nested)
        proc = _start_create(runtime, make_bundle(["sleep", "60"], edit=edit), cid)
        deadline = time.monotonic() + 20
        while not os.path.isdir(watched) and proc.poll() is None and time.monotonic() < deadline:
            pass  # spin: the window is short
        appeared += os.path.isdir(watched)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (runtime.root / cid).exists():
            runtime("delete", "-f", cid)
        assert_nothing_left(runtime.root, cid, nested)
    assert appeared >= len(hierarchies), "create was killed before it made its cgroups: the test tested nothing"
    # and the config does create a container when left alone
    cid = unique_id("appear")
    nested, nest = _nested_cgroup(cid)
    runtime("create", "-b", str(make_bundle(["sleep", "60"], edit=lambda c: (nest(c), userns and _in_user_namespace(c)))), cid)
    runtime("delete", "-f", cid)
    assert_nothing_left(runtime.root, cid, nested)


def test_delete_force_after_create_was_killed_at_random_points(runtime, make_bundle):
    rng = random.Random(12)
    for delay in sorted(rng.uniform(0.0, 0.15) for _ in range(12)):
        cid = unique_id("rand")
        nested, edit = _nested_cgroup(cid)
        proc = _start_create(runtime, make_bundle(["sleep", "60"], edit=edit), cid)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (runtime.root / cid).exists():
            runtime("delete", "-f", cid)
        assert_nothing_left(runtime.root, cid, nested)


# --- a corrupt state.json ----------------------------------------------------------------


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.mark.parametrize("damage", ["prefix", "truncated", "deep"])
def test_a_corrupt_state_breaks_only_its_container_and_delete_force_cleans_it(runtime, make_bundle, damage):
    good, bad = unique_id("good"), unique_id("bad")
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "60"])), good)
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "60"])), bad)
    init = runtime.state(bad)["pid"]
    path = runtime.root / bad / "state.json"
    text = path.read_text()
    path.write_text({"prefix": "x" + text, "truncated": text[: len(text) // 3],
                     "deep": '{"config": ' + "[" * 50_000 + "]" * 50_000 + "}"}[damage])  # fmt: skip
    assert "corrupt state" in one_line_error(runtime("state", bad, check=False))
    one_line_error(runtime("kill", bad, "KILL", check=False))
    one_line_error(runtime("delete", bad, check=False))
    listed = runtime("list", "-q")
    assert listed.stdout.split() == [good]
    assert f"load container {bad}" in listed.stderr and "corrupt state" in listed.stderr  # runc warns too
    assert [s["id"] for s in json.loads(runtime("list", "-f", "json").stdout)] == [good]
    # delete -f: the init (from the recovered pid, or through the cgroup the id gives) and
    # the cgroups are gone with the state directory
    runtime("delete", "-f", bad)
    assert wait_for(lambda: _dead(init))
    assert_nothing_left(runtime.root, bad)
    assert runtime.state(good)["status"] == "running"


# --- deep JSON in every document the runtime reads ----------------------------------------


def _deep(n: int = 100_000) -> str:
    return "[" * n + "]" * n


def test_deeply_nested_config_is_a_clear_error(runtime, make_bundle):
    bundle = make_bundle(["true"])
    config = (bundle / "config.json").read_text()
    (bundle / "config.json").write_text(config[:-1] + ', "x-deep": ' + _deep() + "}")
    cid = unique_id()
    line = one_line_error(runtime("create", "-b", str(bundle), cid, check=False))
    assert "config.json" in line and "nested deeper than" in line
    assert not (runtime.root / cid).exists()


def test_deeply_nested_exec_process_and_update_resources_are_clear_errors(runtime, make_bundle, tmp_path):
    cid = unique_id()
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "60"])), cid)
    process = tmp_path / "process.json"
    process.write_text('{"args": ["true"], "cwd": "/", "x": ' + _deep() + "}")
    assert "nested deeper than" in one_line_error(runtime("exec", "-p", str(process), cid, check=False))
    resources = tmp_path / "resources.json"
    resources.write_text('{"pids": ' + _deep() + "}")
    assert "nested deeper than" in one_line_error(runtime("update", "-r", str(resources), cid, check=False))
    assert runtime.state(cid)["status"] == "running"


# --- small CLI edges -----------------------------------------------------------------------


@pytest.mark.parametrize("sig", ["\u0661\u0665", "9" * 5000, "RTMIN+" + "1" * 5000, "65"],
                         ids=["arabic-digits", "5000-digits", "rtmin-5000-digits", "65"])  # fmt: skip
def test_kill_with_a_bad_signal_is_a_one_line_error(runtime, make_bundle, sig):
    cid = unique_id()
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "60"])), cid)
    line = one_line_error(runtime("kill", cid, sig, check=False))
    assert "signal" in line and len(line) < 200
    assert runtime.state(cid)["status"] == "running"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda c: c["process"]["user"].update(uid=2**32), "process.user.uid"),
        (lambda c: c["process"]["user"].update(uid=2**32 - 1), "process.user.uid"),  # (uid_t)-1
        (lambda c: c["process"]["user"].update(gid=2**32), "process.user.gid"),
        (lambda c: c["process"]["rlimits"][0].update(soft=2**64, hard=2**64), "process.rlimits[0].soft"),
        (lambda c: c["process"]["user"].update(umask=0o10000), "process.user.umask"),
        (lambda c: c["process"]["user"].update(uid="9" * 5000), "config.json"),
    ],
    ids=["uid-2^32", "uid-2^32-1", "gid-2^32", "rlimit-2^64", "umask", "uid-5000-digits"],
)
def test_numbers_out_of_range_fail_create_naming_the_field(runtime, make_bundle, edit, field):
    bundle = make_bundle(["true"], edit=edit)
    config = bundle / "config.json"
    config.write_text(config.read_text().replace('"' + "9" * 5000 + '"', "9" * 5000))  # a 5,000-digit number
    cid = unique_id()
    line = one_line_error(runtime("create", "-b", str(bundle), cid, check=False))
    assert field in line, line
    assert_nothing_left(runtime.root, cid)


# --- the API leaves no zombie ------------------------------------------------------------



def test_api_cycles_leave_no_zombie(make_bundle, tmp_path):
    from ocipy import api

    bundle = str(make_bundle(["sleep", "60"]))
    root = str(tmp_path / "api-root")
    before = set(zombie_children())
    ids = []
    try:
        for i in range(100):
            cid = unique_id("api")
            ids.append(cid)
            api.create(cid, bundle, root=root)
            api.start(cid, root=root)
            assert api.exec(cid, ["true"], root=root).exit_code == 0
            # kill the init in every way that races with the delete that follows
            api.kill(cid, "KILL", root=root, all_processes=i % 2 == 0)
            if i % 3 == 0:
                wait_for(lambda c=cid: api.state(c, root=root)["status"] == "stopped", 5)
                api.delete(cid, root=root)
            else:
                api.delete(cid, root=root, force=True)
    finally:
        for cid in ids:
            try:
                api.delete(cid, root=root, force=True)
            except Exception:
                pass
    left = set(zombie_children()) - before
    assert left == set(), f"{len(left)} zombie children after 100 cycles"


def test_delete_force_of_a_missing_container_succeeds_as_runcs(runtime):
    # runc 1.1.5 delete.bats "runc delete --force ignore not exist"; without -f it is an error
    cid = unique_id("missing")
    assert runtime("delete", "-f", cid).returncode == 0
    assert "container does not exist" in one_line_error(runtime("delete", cid, check=False))


def test_a_container_paused_before_start_is_paused_and_resumes_as_created(runtime, make_bundle):
    # runc 1.1.5 reports it paused (it checks the freezer before the exec fifo) and refuses to
    # start it; before, ocipy said "created", refused `resume`, and `start` hung on the frozen init.
    cid = unique_id("pz")
    runtime("create", "-b", str(make_bundle(["sleep", "60"])), cid)
    runtime("pause", cid)
    assert runtime.state(cid)["status"] == "paused"
    assert "paused" in one_line_error(runtime("start", cid, check=False, timeout=20))
    assert "not stopped: paused" in one_line_error(runtime("delete", cid, check=False))
    runtime("resume", cid)
    assert runtime.state(cid)["status"] == "created"
    runtime("start", cid, timeout=20)
    assert runtime.state(cid)["status"] == "running"
    runtime("delete", "-f", cid)
    assert_nothing_left(runtime.root, cid)


def test_create_syncs_the_record_the_container_lives_by(make_bundle, tmp_path, monkeypatch):
    # The records create makes on the way are not fsync'd (store.Container.save:
    # what they describe does not outlive a crash of the machine); the last one is.
    import posix

    from ocipy import api

    synced: list[bytes] = []
    real_fsync = posix.fsync

    def recording_fsync(fd: int) -> None:
        with open(f"/proc/self/fd/{fd}", "rb") as f:  # the temp file, opened write-only
            synced.append(f.read())
        real_fsync(fd)

    bundle = str(make_bundle(["sleep", "60"]))
    root = str(tmp_path / "root")
    cid = unique_id("sync")
    monkeypatch.setattr(posix, "fsync", recording_fsync)
    try:
        api.create(cid, bundle, root=root)
        monkeypatch.undo()
        records = [json.loads(b) for b in synced if b.startswith(b"{")]
        assert len(records) == 1 and records[0].get("created_done") is True
        with open(os.path.join(root, cid, "state.json"), "rb") as f:
            assert json.loads(f.read()) == records[0]
    finally:
        monkeypatch.undo()
        api.delete(cid, root=root, force=True)
