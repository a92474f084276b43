"""The compiled-program cache of seccomp.prepare (linux/seccomp_cache.py), on this kernel.

A program taken from the cache must be the very program libseccomp compiles,
must confine a process as the fresh one does, and an entry that is not sound
(changed, foreign-owned, in an open directory) must never be used.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from test_seccomp_filters import mkdir_probe, run_filtered

from ocipy.errors import ConfigError
from ocipy.linux import seccomp, seccomp_cache
from ocipy.spec.seccomp import parse_seccomp

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads filters without no_new_privs"),
]

def prepare(doc: dict[str, Any], cache: bool = False) -> seccomp.Filter:
    return seccomp.prepare(parse_seccomp(doc), cache=cache)


def profile() -> dict[str, Any]:
    """Deny mkdir (EPERM by default action), allow what a forked Python child needs."""
    allowed = ["read", "write", "close", "exit", "exit_group", "getpid", "rt_sigreturn", "rt_sigaction",
               "rt_sigprocmask", "mmap", "munmap", "brk", "madvise", "futex", "fstat", "newfstatat", "lseek",
               "getrandom", "mprotect", "sigaltstack", "gettid", "clock_gettime", "openat", "ioctl", "fcntl"]
    return {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]}


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setattr(seccomp_cache, "DIR", str(d))
    return d


def test_a_cached_program_is_the_compiled_one_and_confines(cache_dir: Path, tmp_path: Path) -> None:
    fresh = prepare(profile())
    first = prepare(profile(), cache=True)  # compiles and stores
    entries = os.listdir(cache_dir)
    assert len(entries) == 1 and oct(cache_dir.stat().st_mode & 0o777) == "0o700"
    assert oct((cache_dir / entries[0]).stat().st_mode & 0o777) == "0o600"
    hit = prepare(profile(), cache=True)
    assert hit._ctx is None and first._ctx is not None  # from the file, not libseccomp
    assert hit._raw_prog is not None and fresh._raw_prog is not None
    assert hit._raw_prog.raw == fresh._raw_prog.raw and hit._raw_flags == fresh._raw_flags
    for f in (fresh, first, hit):
        f.release()

    # the cached filter confines a process exactly as a fresh one
    probe = mkdir_probe(str(tmp_path))
    res, status = run_filtered(profile(), probe)  # fresh (run_filtered calls prepare without cache)
    assert res == {"mkdir": errno.EPERM, "getpid": 0}
    real_prepare = seccomp.prepare
    try:
        seccomp.prepare = lambda config: real_prepare(config, cache=True)  # type: ignore[assignment]
        res, status = run_filtered(profile(), probe)
    finally:
        seccomp.prepare = real_prepare  # type: ignore[assignment]
    assert res == {"mkdir": errno.EPERM, "getpid": 0}
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert not (tmp_path / "d").exists()


def test_validation_runs_on_a_hit(cache_dir: Path) -> None:
    prepare(profile(), cache=True).release()
    bad = profile()
    bad["syscalls"][0]["action"] = "SCMP_ACT_NONSENSE"
    with pytest.raises(ConfigError, match="action"):
        prepare(bad, cache=True)


def test_another_profile_is_another_entry(cache_dir: Path) -> None:
    prepare(profile(), cache=True).release()
    other = profile()
    other["syscalls"][0]["names"] = other["syscalls"][0]["names"][:-1]
    prepare(other, cache=True).release()
    assert len(os.listdir(cache_dir)) == 2


@pytest.mark.parametrize("attack", ["flipped byte", "truncated", "group-writable file", "open directory",
                                    "symlink", "foreign owner"])
def test_an_unsound_entry_is_never_used(cache_dir: Path, tmp_path: Path, attack: str) -> None:
    prepare(profile(), cache=True).release()
    (entry,) = cache_dir.iterdir()
    good = entry.read_bytes()
    if attack == "flipped byte":
        # an ALLOW where the program said ERRNO would let everything through: the digest catches it
        data = bytearray(good)
        data[-1] ^= 0xFF
        entry.write_bytes(bytes(data))
    elif attack == "truncated":
        entry.write_bytes(good[:-8])
    elif attack == "group-writable file":
        entry.chmod(0o620)
    elif attack == "open directory":
        cache_dir.chmod(0o755)
    elif attack == "symlink":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.write_bytes(good)
        elsewhere.chmod(0o600)
        entry.unlink()
        entry.symlink_to(elsewhere)
    else:
        os.chown(entry, 65534, 65534)
    assert seccomp_cache.load(entry.name) is None
    again = prepare(profile(), cache=True)
    try:
        assert again._ctx is not None  # compiled afresh
    finally:
        again.release()
    if attack in ("flipped byte", "truncated"):
        assert entry.read_bytes() == good  # and the entry written anew


def test_no_cache_when_the_directory_cannot_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp_cache, "DIR", str(tmp_path / "no-such-parent" / "deeper" / "cache"))
    flt = prepare(profile(), cache=True)
    try:
        assert flt._ctx is not None and flt._raw_prog is not None
    finally:
        flt.release()
    assert not (tmp_path / "no-such-parent").exists()
