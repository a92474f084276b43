"""cgroup v2 device control: a BPF_PROG_TYPE_CGROUP_DEVICE program.

cgroup v2 has no devices.allow file; the kernel instead runs an eBPF program
attached to the cgroup for every device open/mknod.  We compile the reduced
rule set (see ``devices.reduce``) to a straight-line program:

    r2 = ctx->access_type & 0xffff   (1 block, 2 char)
    r3 = ctx->access_type >> 16      (1 mknod, 2 read, 4 write)
    r4 = ctx->major; r5 = ctx->minor
    for each exception: if type/major/minor match and the access test passes:
        return the exception's verdict
    return the default verdict

An allow exception (default deny) matches when every requested access bit is
in the rule; a deny exception (default allow) matches when any requested bit
is in the rule -- the cgroup v1 semantics.
"""

from __future__ import annotations

import ctypes
import os
import struct

from ocipy.errors import KernelError
from ocipy.linux.cgroups.devices import reduce
from ocipy.spec.resources import Rule

_NR_BPF = 321  # x86_64; aarch64 is 280
if os.uname().machine == "aarch64":
    _NR_BPF = 280

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

# opcodes
_LDX_W = 0x61       # dst = *(u32 *)(src + off)
_AND32_K = 0x54
_RSH32_K = 0x74
_MOV32_X = 0xBC
_MOV64_K = 0xB7
_JNE_K = 0x55
_JEQ_K = 0x15
_EXIT = 0x95

_TYPE = {"b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _access_bits(access: str) -> int:
    return sum(_ACCESS[ch] for ch in access)


def program(rules: list[Rule]) -> bytes:
    """The eBPF instructions for `rules` (applied in order)."""
    default_allow, exceptions = reduce(rules)
    prog = [
        _insn(_LDX_W, 2, 1, 0),
        _insn(_AND32_K, 2, imm=0xFFFF),
        _insn(_LDX_W, 3, 1, 0),
        _insn(_RSH32_K, 3, imm=16),
        _insn(_LDX_W, 4, 1, 4),
        _insn(_LDX_W, 5, 1, 8),
    ]
    for allow, typ, major, minor, access in exceptions:
        checks: list[tuple[int, int, int]] = []  # (opcode, register, imm) meaning "skip if"
        if typ in _TYPE:
            checks.append((_JNE_K, 2, _TYPE[typ]))
        if major >= 0:
            checks.append((_JNE_K, 4, major))
        if minor >= 0:
            checks.append((_JNE_K, 5, minor))
        bits = _access_bits(access)
        block: list[tuple[str, int, int, int]] = [("j", op, reg, imm) for op, reg, imm in checks]
        if bits != 7:
            # r1 = r3 & mask; allow rule: skip if any requested bit is outside the rule;
            # deny rule: skip if no requested bit is inside the rule.
            block.append(("mov", 1, 3, 0))
            if allow:
                block.append(("and", 1, 0, (~bits) & 7))
                block.append(("j", _JNE_K, 1, 0))
            else:
                block.append(("and", 1, 0, bits))
                block.append(("j", _JEQ_K, 1, 0))
        block.append(("ret", int(allow), 0, 0))
        size = sum(2 if kind == "ret" else 1 for kind, *_ in block)
        pos = 0
        for kind, a, b, c in block:
            if kind == "j":
                pos += 1
                prog.append(_insn(a, b, off=size - pos, imm=c))
            elif kind == "mov":
                pos += 1
                prog.append(_insn(_MOV32_X, a, b))
            elif kind == "and":
                pos += 1
                prog.append(_insn(_AND32_K, a, imm=c))
            else:
                pos += 2
                prog.append(_insn(_MOV64_K, 0, imm=a))
                prog.append(_insn(_EXIT))
    prog.append(_insn(_MOV64_K, 0, imm=int(default_allow)))
    prog.append(_insn(_EXIT))
    return b"".join(prog)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    r = libc.syscall(ctypes.c_long(_NR_BPF), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if r < 0:
        raise KernelError(what, None, ctypes.get_errno())
    return int(r)


def load(rules: list[Rule]) -> int:
    """Load the program; returns its fd.  The verifier's log is in the error on failure."""
    code = program(rules)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = ctypes.create_string_buffer(128)
    # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level,
    # log_size, log_buf, kern_version, prog_flags, prog_name[16], ifindex, expected_attach_type
    struct.pack_into("<IIQQIIQII16sII", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license_), 0, 0, 0, 0, 0,
                     b"ocipy_devices", 0, BPF_CGROUP_DEVICE)
    try:
        return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD) device filter")
    except KernelError:
        struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                         ctypes.addressof(insns), ctypes.addressof(license_), 1, len(log),
                         ctypes.addressof(log))
        try:
            _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD) device filter")
        except KernelError as e:
            raise KernelError(f"bpf(BPF_PROG_LOAD) device filter [verifier: {log.value.decode(errors='replace').strip()[-300:]}]",
                              None, e.errno) from None
        raise


def attached(cgroup_dir: str) -> list[int]:
    """Ids of the device programs attached to the cgroup itself."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        ids = (ctypes.c_uint32 * 64)()
        attr = ctypes.create_string_buffer(128)
        # BPF_PROG_QUERY: target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
        struct.pack_into("<IIIIQI", attr, 0, fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64)
        _bpf(BPF_PROG_QUERY, attr, f"bpf(BPF_PROG_QUERY) {cgroup_dir}")
        count = struct.unpack_from("<I", attr, 24)[0]
        return [ids[i] for i in range(min(count, 64))]
    finally:
        os.close(fd)


def attach(cgroup_dir: str, rules: list[Rule]) -> None:
    """Load a program for `rules` and attach it to the cgroup, replacing ours if any.

    Attached without BPF_F_ALLOW_MULTI, so a second attach replaces the first
    atomically (used by `update`); the program stays attached after we exit."""
    prog = load(rules)
    try:
        fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        os.close(prog)
        raise KernelError("open", cgroup_dir, e.errno or 5) from None
    try:
        attr = ctypes.create_string_buffer(128)
        # BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags
        struct.pack_into("<IIII", attr, 0, fd, prog, BPF_CGROUP_DEVICE, 0)
        _bpf(BPF_PROG_ATTACH, attr, f"bpf(BPF_PROG_ATTACH) device filter to {cgroup_dir}")
    finally:
        os.close(fd)
        os.close(prog)
