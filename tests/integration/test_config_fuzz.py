"""Property: any mutation of a valid config.json either creates a container or gives a
one-line error with no traceback and nothing left behind (runtime.md "Errors")."""

from __future__ import annotations

import json
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.helpers import IS_ROOT, unique_id

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not IS_ROOT, reason="needs root: creates containers")]

PATHS = [
    ("ociVersion",), ("root",), ("root", "path"), ("root", "readonly"), ("process",), ("process", "args"),
    ("process", "cwd"), ("process", "env"), ("process", "user"), ("process", "user", "uid"),
    ("process", "user", "additionalGids"), ("process", "capabilities"), ("process", "capabilities", "bounding"),
    ("process", "rlimits"), ("process", "noNewPrivileges"), ("process", "oomScoreAdj"), ("hostname",),
    ("mounts",), ("hooks",), ("annotations",), ("linux",), ("linux", "namespaces"), ("linux", "uidMappings"),
    ("linux", "maskedPaths"), ("linux", "readonlyPaths"), ("linux", "sysctl"), ("linux", "devices"),
    ("linux", "resources"), ("linux", "cgroupsPath"), ("linux", "seccomp"), ("linux", "rootfsPropagation"),
]  # fmt: skip
values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=12) | st.sampled_from(["/", "/tmp", "..", "pid"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["type", "path", "limit", "a"]), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


@given(path=st.sampled_from(PATHS), value=values)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mutated_configs_never_crash_or_leak(runtime, make_bundle, path, value):
    bundle = make_bundle(["true"])
    config = json.loads((bundle / "config.json").read_text())
    target = config
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(target, dict) else {}
    if isinstance(target, dict):
        target[path[-1]] = value
    (bundle / "config.json").write_text(json.dumps(config))
    cid = unique_id("fz")
    proc = runtime("create", "-b", str(bundle), cid, check=False, timeout=30)
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 0:
        runtime("delete", "-f", cid)
    else:
        assert proc.stderr.strip(), "an error must say what is wrong"
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not (runtime.root / cid).exists()
    cgroups = subprocess.run(["sh", "-c", f"ls -d /sys/fs/cgroup/*/{cid} 2>/dev/null"], capture_output=True, text=True).stdout
    assert cgroups == ""
