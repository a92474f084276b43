"""The container init's order in real containers: seccomp last, cwd as root, hooks as runc runs them.

Restrictive profiles (default deny) allow only what busybox sh needs plus
the few calls the runtime makes after loading the filter: if the init did
anything else after it (close_range, opening files, ...), the container
would fail to start.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.helpers import OCIPY, REPO, unique_id

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates namespaces and mounts"),
]

MakeBundle = Callable[..., Path]

# What busybox sh -c '...' calls (strace of `busybox sh -c 'echo; ls; cat; mkdir'`).
SHELL = ["arch_prctl", "brk", "clone", "close", "dup2", "execve", "exit_group", "fcntl", "getdents64", "getpid",
         "getppid", "getrandom", "getuid", "ioctl", "mkdir", "mmap", "mprotect", "munmap", "newfstatat", "openat",
         "prctl", "prlimit64", "read", "readlink", "rseq", "rt_sigaction", "rt_sigreturn", "sendfile",
         "set_robust_list", "set_tid_address", "umask", "uname", "wait4", "write", "exit", "stat", "fstat",
         "lseek", "rt_sigprocmask", "getcwd", "geteuid", "getgid", "getegid", "futex"]
# The runtime after the filter with no_new_privs: "ready" (write, close), the
# exec fifo (openat, write, close), the final execveat of the trampoline.
AFTER_NNP = ["execveat"]
# Without no_new_privs the filter is loaded before the user change, as runc does.
AFTER_PRIVILEGED = AFTER_NNP + ["setgroups", "setresgid", "setresuid", "capget", "capset", "chdir", "fchdir",
                                "openat2", "access", "faccessat", "faccessat2"]


def profile(allow: list[str], default_errno: int | None = None) -> dict[str, Any]:
    sc: dict[str, Any] = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                          "syscalls": [{"names": allow, "action": "SCMP_ACT_ALLOW"}]}
    if default_errno is not None:
        sc["defaultErrnoRet"] = default_errno
    return sc


def with_seccomp(sc: dict[str, Any], nnp: bool) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["seccomp"] = sc
        config["process"]["noNewPrivileges"] = nnp
    return edit


@pytest.mark.parametrize("nnp", [True, False])
@pytest.mark.parametrize("default_errno", [None, errno.ENOSYS, errno.ENXIO])
def test_default_deny_profile_runs_a_shell(runtime: Any, make_bundle: MakeBundle, nnp: bool,
                                           default_errno: int | None) -> None:
    # Issue 12 class 1: any profile without close_range broke every container
    # ("container init: close_range: Operation not permitted").  The filter
    # is loaded last: only what the profile allows for the shell is needed.
    allow = SHELL + (AFTER_NNP if nnp else AFTER_PRIVILEGED)
    assert "close_range" not in allow
    bundle = make_bundle(["sh", "-c", "echo started; chmod 600 /etc/passwd; echo chmod=$?"],
                         edit=with_seccomp(profile(allow, default_errno), nnp))
    proc = runtime("run", "-b", str(bundle), unique_id("deny"), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "started" in proc.stdout
    # chmod (fchmodat) is not allowed: it fails with the default errno
    assert "chmod=1" in proc.stdout
    want = os.strerror(default_errno if default_errno is not None else errno.EPERM)
    assert want in proc.stderr, proc.stderr


@pytest.mark.parametrize("nnp", [True, False])
def test_exec_under_the_default_deny_profile(runtime: Any, make_bundle: MakeBundle, nnp: bool) -> None:
    allow = SHELL + (AFTER_NNP if nnp else AFTER_PRIVILEGED) + ["nanosleep", "clock_nanosleep", "pause"]
    bundle = make_bundle(["sleep", "60"], edit=with_seccomp(profile(allow, errno.ENOSYS), nnp))
    cid = unique_id("deny-exec")
    runtime("run", "-d", "-b", str(bundle), cid)
    try:
        proc = runtime("exec", cid, "sh", "-c", "echo in-exec; chmod 600 /etc/passwd; echo chmod=$?", check=False)
        assert proc.returncode == 0, proc.stderr
        assert "in-exec" in proc.stdout and "chmod=1" in proc.stdout
        assert os.strerror(errno.ENOSYS) in proc.stderr
    finally:
        runtime("delete", "-f", cid, check=False)


def test_start_container_hook_runs_under_the_filter(runtime: Any, make_bundle: MakeBundle) -> None:
    # runc's seccomp.bats "startContainer hook": the hook runs with the
    # container's filter applied; a hook killed by it fails the container
    # with "error running hook".  config.md: "If any `startContainer` hook
    # fails, the runtime MUST generate an error".
    def edit(c: dict[str, Any]) -> None:
        c["process"]["noNewPrivileges"] = True
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]}
        c["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "mkdir /tmp/hooked"]}]}

    bundle = make_bundle(["true"], edit=edit)
    proc = runtime("run", "-b", str(bundle), unique_id("hook-sc"), check=False)
    assert proc.returncode != 0
    assert "error running hook" in proc.stderr and "bad system call" in proc.stderr, proc.stderr
    assert not (bundle / "rootfs/tmp/hooked").exists()


def test_start_container_hook_without_filter_runs(runtime: Any, make_bundle: MakeBundle) -> None:
    def edit(c: dict[str, Any]) -> None:
        c["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "mkdir /tmp/hooked"]}]}

    bundle = make_bundle(["true"], edit=edit)
    runtime("run", "-b", str(bundle), unique_id("hook-ok"))
    assert (bundle / "rootfs/tmp/hooked").is_dir()


def test_exec_user_root_reaches_a_cwd_only_its_owner_can(runtime: Any, make_bundle: MakeBundle) -> None:
    # runc's cwd.bats "runc exec --user with no access to cwd": root without
    # CAP_DAC_OVERRIDE cannot enter a 0700 directory of uid 42 once its
    # capabilities are dropped; runc chdirs before the user change.
    def edit(c: dict[str, Any]) -> None:
        c["process"]["cwd"] = "/root"
        c["process"]["user"] = {"uid": 42, "gid": 42}

    bundle = make_bundle(["sleep", "60"], edit=edit)
    os.chown(bundle / "rootfs/root", 42, 42)
    os.chmod(bundle / "rootfs/root", 0o700)
    cid = unique_id("cwd")
    runtime("run", "-d", "-b", str(bundle), cid)
    try:
        proc = runtime("exec", "--user", "0", cid, "sh", "-c", "pwd", check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "/root"
    finally:
        runtime("delete", "-f", cid, check=False)


def test_cwd_unreachable_for_everyone_is_a_create_error(runtime: Any, make_bundle: MakeBundle) -> None:
    def edit(c: dict[str, Any]) -> None:
        c["process"]["cwd"] = "/etc/passwd"  # not a directory

    bundle = make_bundle(["true"], edit=edit)
    cid = unique_id("cwd-bad")
    proc = runtime("run", "-b", str(bundle), cid, check=False)
    assert proc.returncode != 0
    assert "process.cwd" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (runtime.root / cid).exists()


def test_hooks_inherit_the_runtime_environment_and_run_where_runc_runs_them(
        runtime: Any, make_bundle: MakeBundle, tmp_path: Path) -> None:
    # A hook without `env` gets the runtime's environment (runc's behaviour:
    # GPU hooks rely on PATH); createContainer hooks run in the rootfs.
    out = tmp_path / "hooks.out"

    def edit(c: dict[str, Any]) -> None:
        c["hooks"] = {
            "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo rt=$OCIPY_TEST_VAR >> {out}"]}],
            "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo cc=$(pwd) >> {out}"]}],
            "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo ps=${{OCIPY_TEST_VAR:-unset}} >> {out}"],
                           "env": ["OTHER=1"]}],
        }

    bundle = make_bundle(["true"], edit=edit)
    env = dict(os.environ, OCIPY_TEST_VAR="inherited")
    runtime("run", "-b", str(bundle), unique_id("hook-env"), env=env)
    lines = out.read_text().split()
    assert "rt=inherited" in lines
    assert f"cc={bundle / 'rootfs'}" in lines
    assert "ps=unset" in lines  # an explicit env replaces the runtime's


def test_userns_container_from_a_checkout_in_a_0700_directory(busybox_rootfs: Path, tmp_path: Path) -> None:
    # Issue 12 class 5: with the package under a directory the mapped root
    # cannot read, a lazy import after unshare(user) failed with a raw
    # ModuleNotFoundError.  Everything the children run is imported first.
    private = Path(tempfile.mkdtemp(prefix="ocipy-0700-"))
    try:
        os.chmod(private, 0o700)
        shutil.copytree(REPO / "src" / "ocipy", private / "ocipy",
                        ignore=shutil.ignore_patterns("__pycache__"))
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        subprocess.run(["cp", "-a", str(busybox_rootfs), str(bundle / "rootfs")], check=True)
        subprocess.run(["chown", "-R", "100000:100000", str(bundle / "rootfs")], check=True)
        for parent in [bundle, *bundle.parents]:
            if parent == Path("/tmp"):
                break
            parent.chmod(parent.stat().st_mode | 0o005)
        sys.path.insert(0, str(REPO / "src"))
        from ocipy.spec.runtime import default_spec

        config = default_spec()
        config["process"]["terminal"] = False
        config["process"]["args"] = ["sh", "-c", "echo uid=$(id -u); ls /sys/fs/cgroup >/dev/null && echo ok"]
        config["root"]["readonly"] = False
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        config["linux"].pop("resources", None)
        (bundle / "config.json").write_text(json.dumps(config))
        python = os.path.realpath(OCIPY.replace("/bin/ocipy", "/bin/python3"))
        root = tmp_path / "state"
        launcher = f"import sys; sys.path[:0] = [{str(private)!r}]; from ocipy.cli.main import entry; entry()"
        cid = unique_id("private")
        proc = subprocess.run([python, "-IS", "-c", launcher, "--root", str(root), "run", "-b", str(bundle), cid],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        subprocess.run([python, "-IS", "-c", launcher, "--root", str(root), "delete", "-f", cid],
                       capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "ModuleNotFoundError" not in proc.stderr
        assert "uid=0" in proc.stdout and "ok" in proc.stdout
    finally:
        shutil.rmtree(private, ignore_errors=True)
