"""Nothing lost, nothing leaked, without the kernel: state.json writes, corrupt
states, JSON nesting, signal and numeric edges (issue 12 class 6)."""

from __future__ import annotations

import copy
import errno
import os

import pytest

from ocipy import jsonfast
from ocipy.errors import ConfigError, KernelError, OcipyError
from ocipy.runtime import store
from ocipy.runtime.operations import list_states, parse_signal
from ocipy.spec.config import parse
from ocipy.spec.runtime import default_spec

# --- state.json is written whole or not at all --------------------------------------


def test_short_writes_are_retried(tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def one_byte(fd, data):
        calls.append(1)
        return real_write(fd, bytes(data[:1]))

    monkeypatch.setattr(store.posix, "write", one_byte)  # store writes through posix
    store.write_file(str(tmp_path / "state.json"), b'{"id": "x"}')
    monkeypatch.undo()
    assert (tmp_path / "state.json").read_bytes() == b'{"id": "x"}'
    assert len(calls) == len(b'{"id": "x"}')


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_a_failed_write_keeps_the_old_state_and_no_temp_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "state.json"
    path.write_bytes(b'{"old": true}')
    real_write = os.write

    def partial_then_enospc(fd, data):
        if len(data) > 4:
            return real_write(fd, bytes(data[:4]))  # a short write first, as a filling disk does
        raise OSError(errno.ENOSPC, "No space left on device")

    def fsync_fails(fd):
        raise OSError(errno.EIO, "Input/output error")

    if failing == "write":
        monkeypatch.setattr(store.posix, "write", partial_then_enospc)
    else:
        monkeypatch.setattr(store.posix, "fsync", fsync_fails)
    with pytest.raises(KernelError) as info:
        store.write_file(str(path), b'{"new": "a longer document"}')
    monkeypatch.undo()
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == b'{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_state_file_is_0600(tmp_path):
    c = store.Container(str(tmp_path), "c", {"id": "c", "config": {"process": {"env": ["SECRET=1"]}}})
    os.mkdir(c.dir)
    c.save()
    assert os.stat(os.path.join(c.dir, "state.json")).st_mode & 0o777 == 0o600


# --- a corrupt state.json -----------------------------------------------------------


def _save(root, cid, data):
    os.makedirs(os.path.join(root, cid), exist_ok=True)
    with open(os.path.join(root, cid, "state.json"), "w") as f:
        f.write(jsonfast.dumps(data))


@pytest.mark.parametrize("damage", ["truncated", "deep", "garbage", "not-an-object", "wrong-types", "prefix"])
def test_a_corrupt_state_is_that_containers_error_only(tmp_path, damage):
    root = str(tmp_path)
    cgroup = {"version": 1, "mode": "v1", "root": "/sys/fs/cgroup",
              "paths": {"pids": "/sys/fs/cgroup/pids/nowhere-xyz"}, "mounts": {"pids": "/sys/fs/cgroup/pids"},
              "created": ["/sys/fs/cgroup/pids/nowhere-xyz"]}  # fmt: skip
    good = {"id": "good", "bundle": "/b", "config": {"ociVersion": "1.0.0"}, "pid": 0, "created_done": True}
    _save(root, "good", good)
    bad = dict(good, id="bad", cgroup=cgroup, pid=4242, pid_start=77)
    text = jsonfast.dumps(bad)
    path = os.path.join(root, "bad", "state.json")
    os.makedirs(os.path.dirname(path))
    damaged = {
        "truncated": text[: len(text) // 2],
        "deep": '{"config": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "garbage": "\xff\xfe\x00 not json",
        "not-an-object": "[1, 2, 3]",
        "wrong-types": jsonfast.dumps(dict(bad, pid="4242", config=[])),
        "prefix": "x" + text,
    }[damage]
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(damaged)
    with pytest.raises(store.CorruptState) as info:
        store.load(root, "bad")
    message = str(info.value)
    assert "corrupt state" in message and path in message and "\n" not in message and len(message) < 400
    # list shows the others
    assert [s["id"] for s in list_states(root)] == ["good"]
    # what can be recovered is recovered: from an intact tail, the init and the cgroups
    recovered = info.value.container
    assert recovered.status == store.CREATING  # only delete may touch it
    if damage == "prefix":
        assert recovered.pid == 4242 and recovered.data["pid_start"] == 77
        assert recovered.data["cgroup"]["created"] == cgroup["created"]
    with store.locked(root, "bad", recover=True) as c:
        assert c.corrupt
    with pytest.raises(store.CorruptState), store.locked(root, "bad"):
        pass


def test_recovered_cgroup_paths_must_be_under_sys_fs_cgroup(tmp_path):
    evil = {"paths": {"pids": "/etc"}, "mounts": {"pids": "/"}, "created": ["/etc"]}
    raw = ("x" + jsonfast.dumps({"cgroup": evil, "pid": 1, "pid_start": 1})).encode()
    data = store._salvage(raw, "no-such-container-xyz")
    assert data.get("cgroup", {}).get("created", []) != ["/etc"]


# --- JSON nesting -------------------------------------------------------------------


@pytest.mark.parametrize("depth", [jsonfast.MAX_DEPTH + 1, 1000, 100_000])
@pytest.mark.parametrize("shape", ["list", "object", "unclosed"])
def test_deep_json_is_a_value_error(depth, shape):
    text = {"list": "[" * depth + "]" * depth, "object": '{"a":' * depth + "1" + "}" * depth,
            "unclosed": "[" * depth}[shape]  # fmt: skip
    with pytest.raises(ValueError) as info:
        jsonfast.loads(text)
    if shape != "unclosed" or depth > 1000:
        assert "nested deeper than" in str(info.value)


def test_json_within_the_limit_and_brackets_in_strings_are_fine():
    d = jsonfast.MAX_DEPTH
    assert jsonfast.loads("[" * d + "]" * d) is not None
    many = {"args": ["[[[[{{{{"] * 500, "x": [[1]] * 300}
    assert jsonfast.loads(jsonfast.dumps(many)) == many
    assert jsonfast.loads_at('xx {"a": [1]} yy', 3) == {"a": [1]}
    with pytest.raises(ValueError):
        jsonfast.loads_at("[" * 5000, 0)


# --- signals --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\u0661\u0665", "9" * 5000, "65", "-1", "", "RTMIN+" + "9" * 5000,
                                 "RTMIN+\u0663", "SIG" + "K" * 5000, "KILL\u00a0", "1e3"])  # fmt: skip
def test_bad_signals_are_one_line_errors(bad):
    with pytest.raises(OcipyError) as info:
        parse_signal(bad)
    assert "\n" not in str(info.value) and len(str(info.value)) < 120


def test_signal_zero_is_accepted_as_runc_does():
    # runc kill -a ID 0 (kill.bats) checks the processes exist
    assert parse_signal("0") == 0 and parse_signal("64") == 64 and parse_signal("RTMAX") == 64


# --- numeric config fields ---------------------------------------------------------------


def _with(edit):
    c = copy.deepcopy(default_spec())
    edit(c)
    return c


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda c: c["process"]["user"].update(uid=2**32), "process.user.uid"),
        (lambda c: c["process"]["user"].update(uid=2**32 - 1), "process.user.uid"),  # (uid_t)-1: "no change"
        (lambda c: c["process"]["user"].update(gid=2**32), "process.user.gid"),
        (lambda c: c["process"]["user"].update(uid=10**5000), "process.user.uid"),
        (lambda c: c["process"]["user"].update(additionalGids=[5, 2**40]), "process.user.additionalGids[1]"),
        (lambda c: c["process"]["user"].update(umask=0o1000), "process.user.umask"),
        (lambda c: c["process"]["user"].update(umask=-1), "process.user.umask"),
        (lambda c: c["process"]["rlimits"][0].update(hard=2**64, soft=1), "process.rlimits[0].hard"),
        (lambda c: c["process"]["rlimits"][0].update(soft=-(2**70)), "process.rlimits[0].soft"),
        (lambda c: c["process"].update(oomScoreAdj=1001), "process.oomScoreAdj"),
        (lambda c: c["process"].update(consoleSize={"height": 2**16, "width": 80}), "process.consoleSize.height"),
        (lambda c: c["process"].update(scheduler={"policy": "SCHED_OTHER", "nice": 20}), "process.scheduler.nice"),
        (lambda c: c["process"].update(ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 10**5000}),
         "process.ioPriority.priority"),
        (lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 2**32, "size": 1}],
                                     gidMappings=[{"containerID": 0, "hostID": 0, "size": 1}],
                                     namespaces=[*c["linux"]["namespaces"], {"type": "user"}]),
         "linux.uidMappings[0].hostID"),
    ],
)
def test_numbers_out_of_range_name_the_field(edit, field):
    with pytest.raises(ConfigError) as info:
        parse(_with(edit))
    assert info.value.field == field
    assert field in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 200


def test_numbers_at_the_edges_are_accepted():
    def edit(c):
        c["process"]["user"].update(uid=2**32 - 2, gid=0, umask=0o777, additionalGids=[2**32 - 2])
        c["process"]["rlimits"][0].update(soft=2**64 - 1, hard=2**64 - 1)  # RLIM_INFINITY
        c["process"]["oomScoreAdj"] = -1000

    parse(_with(edit))


def test_records_are_synced_unless_asked_not_to(tmp_path, monkeypatch):
    # create's records on the way are saved with sync=False (store.Container.save):
    # still whole and renamed into place, only not fsync'd
    synced = []
    real_fsync = store.posix.fsync
    monkeypatch.setattr(store.posix, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    (tmp_path / "c1").mkdir()
    container = store.Container(str(tmp_path), "c1", {"id": "c1"})
    container.save(sync=False)
    assert synced == [] and (tmp_path / "c1" / "state.json").read_bytes() == b'{"id":"c1"}'
    container.data["pid"] = 7
    container.save()
    assert len(synced) == 1 and (tmp_path / "c1" / "state.json").read_bytes() == b'{"id":"c1","pid":7}'
    store.write_file(str(tmp_path / "pid"), b"7")
    assert len(synced) == 2
    assert sorted(p.name for p in (tmp_path / "c1").iterdir()) == ["state.json"]


def test_an_unsynced_record_is_still_written_whole(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(store.posix, "write", lambda fd, data: real_write(fd, bytes(data[:1])))
    (tmp_path / "c1").mkdir()
    store.Container(str(tmp_path), "c1", {"id": "c1", "pid": 12345}).save(sync=False)
    monkeypatch.undo()
    assert (tmp_path / "c1" / "state.json").read_bytes() == b'{"id":"c1","pid":12345}'
