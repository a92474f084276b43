"""The raw system call layer: the C extension built by `make install`, and the
ctypes fallback it replaces, agree on results, pointers and errors."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from ocipy.errors import KernelError
from ocipy.linux import syscalls as sc

BACKENDS = {"c": sc._raw, "ctypes": sc._ctypes_syscall()}
PR_GET_DUMPABLE = 3
NR_GETCWD = 79 if os.uname().machine == "x86_64" else 17


def test_make_install_built_the_c_extension():
    # without it every runtime command pays ~2.8 ms for importing ctypes
    assert type(sc._raw).__name__ == "builtin_function_or_method", "run `make install`"


@pytest.mark.parametrize("backend", BACKENDS)
def test_integers_and_results(backend):
    raw = BACKENDS[backend]
    assert raw(sc._NR["prctl"], PR_GET_DUMPABLE, 0, 0, 0, 0) == sc.prctl(PR_GET_DUMPABLE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_writable_buffer_is_filled_by_the_kernel(backend):
    buf = bytearray(4096)
    n = BACKENDS[backend](NR_GETCWD, buf, len(buf))
    assert bytes(buf[: n - 1]).decode() == os.getcwd()


@pytest.mark.parametrize("backend", BACKENDS)
def test_bytes_none_and_errno(backend):
    with pytest.raises(OSError) as info:
        BACKENDS[backend](sc._NR["mount"], b"none", b"/nonexistent/ocipy-test", None, 0, None)
    assert info.value.errno == errno.ENOENT


def test_wrappers_raise_kernel_error_naming_the_call_and_path():
    with pytest.raises(KernelError) as info:
        sc.openat2(-100, "/nonexistent/ocipy-test", os.O_RDONLY)
    assert info.value.errno == errno.ENOENT and "openat2 /nonexistent/ocipy-test" in str(info.value)


def test_structures_are_packed_as_the_kernel_reads_them(tmp_path):
    # open_how: flags, mode, resolve (three u64); resolve honoured proves the offsets
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to("target")
    fd = sc.openat2(-100, str(tmp_path / "link"), os.O_RDONLY | os.O_DIRECTORY)
    assert os.fstat(fd).st_ino == (tmp_path / "target").stat().st_ino
    os.close(fd)
    with pytest.raises(KernelError) as info:
        sc.openat2(-100, str(tmp_path / "link"), os.O_RDONLY, resolve=0x04)  # RESOLVE_NO_SYMLINKS
    assert info.value.errno == errno.ELOOP


def test_runtime_commands_do_not_import_ctypes():
    code = ("import sys; sys.argv = ['ocipy', '--root', '/nonexistent/ocipy-root', 'state', 'x'];"
            "from ocipy.cli.main import main; main();"
            "import ocipy.runtime.create, ocipy.linux.caps;"
            "print('ctypes' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
