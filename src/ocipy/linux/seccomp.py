"""linux.seccomp: build, load and serve seccomp filters through libseccomp.

The filter is compiled by the system's libseccomp (``libseccomp.so.2``,
called through ctypes; no hand-written BPF).  The module imports only
``ctypes`` and ``os`` at load time; the library itself is opened lazily by
:func:`prepare`, :func:`features` and the notify helpers.

How the runtime uses it (the order runc uses, libcontainer/standard_init_linux.go)
-------------------------------------------------------------------------------

1. ``flt = prepare(config.linux.seccomp)`` (the plan the one parse of
   config.json made, spec/config.parse_seccomp) in the runtime, BEFORE the
   container's ``pivot_root``: it checks what this libseccomp and kernel
   support (raising :class:`~ocipy.errors.ConfigError` naming the field),
   opens libseccomp.so and builds the filter context in memory.  Nothing is
   enforced yet.
2. When ``process.noNewPrivileges`` is **false**: call ``flt.load()`` BEFORE
   dropping capabilities and before setuid/setgid.  Without no_new_privs the
   kernel only accepts a filter from a task with CAP_SYS_ADMIN (in its user
   namespace), which the init process still has at that point.  The filter
   then also applies to the runtime's own remaining syscalls (capset,
   setgroups, setresuid, prctl, close, execve...), exactly as with runc.
3. When ``process.noNewPrivileges`` is **true**: set PR_SET_NO_NEW_PRIVS
   first, drop capabilities and change user, and call ``flt.load()`` as the
   very last step before ``execve`` (after waiting on the exec fifo), so as
   few runtime syscalls as possible run under the filter.

   This module never sets no_new_privs itself: libseccomp's
   SCMP_FLTATR_CTL_NNP attribute is turned off; the runtime owns that
   decision (runc does the same).
4. ``load()`` returns the seccomp notify fd when a rule uses
   SCMP_ACT_NOTIFY (else ``None``).  The init process must hand it to the
   runtime's parent IMMEDIATELY after ``load()`` returns, before any other
   syscall it can avoid (runc's syncParentSeccomp: the init writes the
   fd *number* to the parent, which fetches the fd with pidfd_getfd(2)),
   then close its own copy (the fd is O_CLOEXEC anyway).  The parent calls
   :func:`send_listener` with ``listenerPath``, the fd, the container state
   (status ``creating``, with ``pid``) and ``listenerMetadata``, then closes
   its copy.  Until the agent holds the fd, every notified syscall of the
   init process blocks forever; this is why SCMP_ACT_NOTIFY is refused for
   ``write`` and as the default action (as runc does).  Passing the fd with
   sendmsg(2)/SCM_RIGHTS instead of write + pidfd_getfd makes ``sendmsg``
   the syscall that must not be notified.
   Loading needs no file access (the library is already mapped), so it
   works after ``pivot_root``.
"""

from __future__ import annotations

import ctypes
import os

from ocipy.errors import ConfigError, KernelError, OcipyError
from ocipy.spec.runtime import SECCOMP_ACTIONS, SECCOMP_ARCHS, SECCOMP_FLAGS, SECCOMP_OPERATORS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocipy.spec.seccomp import SeccompPlan, SeccompRule


# ---------------------------------------------------------------------------
# Names from libseccomp's seccomp.h and the kernel's linux/seccomp.h
# ---------------------------------------------------------------------------

ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000  # | (errno & 0xffff)
ACT_TRACE = 0x7FF00000  # | (msg & 0xffff)
ACT_LOG = 0x7FFC0000
ACT_NOTIFY = 0x7FC00000
ACT_ALLOW = 0x7FFF0000

# The names and values config.json uses are spec vocabulary (one table, spec/runtime.py).
ACTIONS = SECCOMP_ACTIONS
OPERATORS = SECCOMP_OPERATORS
ARCHS = SECCOMP_ARCHS
FLAGS = SECCOMP_FLAGS

# enum scmp_filter_attr
_ATTR_ACT_DEFAULT = 1
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_CTL_WAITKILL = 10

SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
_NR_SCMP_ERROR = -1

# ---------------------------------------------------------------------------
# libseccomp through ctypes, loaded on first use
# ---------------------------------------------------------------------------


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class _Version(ctypes.Structure):
    """struct scmp_version."""

    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


class _SeccompData(ctypes.Structure):
    """struct seccomp_data (kernel)."""

    _fields_ = [
        ("nr", ctypes.c_int),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
    ]


class _Notif(ctypes.Structure):
    """struct seccomp_notif (kernel)."""

    _fields_ = [
        ("id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("data", _SeccompData),
    ]


class _NotifResp(ctypes.Structure):
    """struct seccomp_notif_resp (kernel)."""

    _fields_ = [
        ("id", ctypes.c_uint64),
        ("val", ctypes.c_int64),
        ("error", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
    ]


_lib: ctypes.CDLL | None = None
_LIBNAME = "libseccomp.so.2"


class SeccompUnavailable(OcipyError):
    """libseccomp.so.2 cannot be loaded, or is too old for what the config asks."""


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL(_LIBNAME, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"seccomp: cannot load {_LIBNAME}: {exc}") from None
    vp, u32, cint, cp = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_char_p
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "seccomp_init": (vp, [u32]),
        "seccomp_release": (None, [vp]),
        "seccomp_attr_set": (cint, [vp, cint, u32]),
        "seccomp_arch_add": (cint, [vp, u32]),
        "seccomp_arch_native": (u32, []),
        "seccomp_arch_resolve_name": (u32, [cp]),
        "seccomp_syscall_resolve_name": (cint, [cp]),
        "seccomp_syscall_resolve_name_arch": (cint, [u32, cp]),
        "seccomp_syscall_resolve_num_arch": (vp, [u32, cint]),
        "seccomp_rule_add_array": (cint, [vp, u32, cint, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]),
        "seccomp_load": (cint, [vp]),
        "seccomp_export_bpf": (cint, [vp, cint]),
        "seccomp_export_pfc": (cint, [vp, cint]),
        "seccomp_api_get": (ctypes.c_uint, []),
        "seccomp_version": (ctypes.POINTER(_Version), []),
        "seccomp_notify_fd": (cint, [vp]),
        "seccomp_notify_alloc": (cint, [ctypes.POINTER(vp), ctypes.POINTER(vp)]),
        "seccomp_notify_free": (None, [vp, vp]),
        "seccomp_notify_receive": (cint, [cint, vp]),
        "seccomp_notify_respond": (cint, [cint, vp]),
        "seccomp_notify_id_valid": (cint, [cint, ctypes.c_uint64]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    _lib = lib
    return lib


def library_version() -> str:
    """The loaded libseccomp's version, e.g. ``"2.5.4"``."""
    v = _library().seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def api_level() -> int:
    """libseccomp's API level: what this library *and* the running kernel support."""
    return int(_library().seccomp_api_get())


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.free.argtypes = [ctypes.c_void_p]
        libc.free.restype = None
        libc.syscall.restype = ctypes.c_long
        _libc = libc
    return _libc


def _libc_free(ptr: int) -> None:
    _c().free(ptr)


# seccomp(2) itself, for the one flag libseccomp < 2.6 cannot pass
_SECCOMP_SET_MODE_FILTER = 1
_KFLAG_TSYNC = 1
_KFLAG_LOG = 2
_KFLAG_SPEC_ALLOW = 4
_KFLAG_NEW_LISTENER = 8
_KFLAG_TSYNC_ESRCH = 16
_KFLAG_WAIT_KILLABLE_RECV = 32


class _SockFprog(ctypes.Structure):
    """struct sock_fprog."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _sys_seccomp(flags: int, prog: int) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): the result, or -errno."""
    nr = _library().seccomp_syscall_resolve_name(b"seccomp")
    ret = _c().syscall(ctypes.c_long(nr), ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
                       ctypes.c_ulong(flags), ctypes.c_void_p(prog))
    return int(ret) if ret >= 0 else -ctypes.get_errno()


def _kernel_has_wait_killable() -> bool:
    """Probe the kernel like libseccomp does: a known flag set with a NULL
    program fails with EFAULT, an unknown one with EINVAL (Linux >= 5.19)."""
    return _sys_seccomp(_KFLAG_NEW_LISTENER | _KFLAG_WAIT_KILLABLE_RECV, 0) == -14


def syscall_name(nr: int, arch: int = 0) -> str | None:
    """The name of syscall ``nr`` on ``arch`` (a libseccomp token; 0 = native)."""
    lib = _library()
    ptr = lib.seccomp_syscall_resolve_num_arch(arch, nr)
    if not ptr:
        return None
    name = ctypes.string_at(ptr).decode()
    _libc_free(ptr)
    return name


_FIELD = "linux.seccomp"


# ---------------------------------------------------------------------------
# The filter
# ---------------------------------------------------------------------------


def _check(rc: int, op: str) -> None:
    if rc < 0:
        raise KernelError(op, None, -rc)


class Filter:
    """A libseccomp filter context built by :func:`prepare`, ready to load.

    ``needs_notify`` tells whether a rule uses SCMP_ACT_NOTIFY (``load()`` then
    returns the listener fd).  ``skipped`` lists the syscall names this
    library does not know (skipped, as runc does).
    """

    needs_notify: bool

    def __init__(self, ctx: int | None, needs_notify: bool, skipped: list[str]) -> None:
        self._ctx: int | None = ctx
        self.needs_notify = needs_notify
        self.skipped = skipped
        # Set when a flag must reach seccomp(2) that this libseccomp cannot
        # pass (WAIT_KILLABLE_RECV before 2.6): load() then installs the
        # program libseccomp compiled, with these kernel flags.
        self._raw_flags: int | None = None
        self._raw_prog: ctypes.Array[ctypes.c_char] | None = None

    def _use_raw_load(self, flags: int, prefix: bytes = b"") -> None:
        self._raw_flags = flags
        bpf = prefix + self.export_bpf()  # compiled now: load() must not allocate much or open files
        self._raw_prog = ctypes.create_string_buffer(bpf, len(bpf))
        _c()  # libc's syscall() resolved now, in the parent

    def _context(self) -> int:
        if self._ctx is None:
            raise OcipyError("seccomp: filter already released")
        return self._ctx

    def load(self) -> int | None:
        """seccomp_load(): enforce the filter on the calling process from now on.

        Returns the notify fd when a rule uses SCMP_ACT_NOTIFY, else None.
        Needs no file access.  See the module docstring for when to call it
        (before dropping capabilities unless no_new_privs is set).
        """
        if self._raw_flags is not None and self._raw_prog is not None:  # no context when from the cache
            prog = _SockFprog(len(self._raw_prog) // 8, ctypes.addressof(self._raw_prog))
            ret = _sys_seccomp(self._raw_flags, ctypes.addressof(prog))
            _check(ret, "seccomp(SECCOMP_SET_MODE_FILTER)")
            return ret if self.needs_notify else None
        lib = _library()
        ctx = self._context()
        _check(lib.seccomp_load(ctx), "seccomp_load")
        if not self.needs_notify:
            return None
        fd = int(lib.seccomp_notify_fd(ctx))
        _check(fd, "seccomp_notify_fd")
        return fd

    def export_bpf(self) -> bytes:
        """The compiled BPF program (struct sock_filter[]), as libseccomp emits it."""
        return self._export("seccomp_export_bpf")

    def export_pfc(self) -> str:
        """A human-readable pseudo-filter listing (for --debug and tests)."""
        return self._export("seccomp_export_pfc").decode()

    def _export(self, fn: str) -> bytes:
        ctx = self._context()
        mfd = os.memfd_create("ocipy-seccomp", os.MFD_CLOEXEC)
        try:
            _check(getattr(_library(), fn)(ctx, mfd), fn)
            os.lseek(mfd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(mfd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(mfd)

    def release(self) -> None:
        """Free the context (the loaded filter, if any, stays in force)."""
        if self._ctx is not None:
            _library().seccomp_release(self._ctx)
            self._ctx = None

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _add_rule(lib: ctypes.CDLL, ctx: int, nr: int, rule: SeccompRule, cmps: list[tuple[int, int, int, int]]) -> None:
    arr = (_ArgCmp * max(len(cmps), 1))()
    for n, (index, op, a, b) in enumerate(cmps):
        arr[n].arg, arr[n].op, arr[n].datum_a, arr[n].datum_b = index, op, a, b
    rc = lib.seccomp_rule_add_array(ctx, rule.action, nr, len(cmps), arr)
    if rc < 0:
        raise ConfigError(f"{_FIELD}.syscalls[{rule.index}]",
                          f"cannot add the rule for syscall {rule.name!r}: {os.strerror(-rc)}")


_X32_TOKEN = 0x4000003E  # SCMP_ARCH_X32: its calls come as AUDIT_ARCH_X86_64 with bit 30 set
_X32_SYSCALL_BIT = 0x40000000
_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_ERRNO = 0x00050000
_BPF_LD_W_ABS, _BPF_JEQ, _BPF_JGT, _BPF_JSET, _BPF_JA, _BPF_RET = 0x20, 0x15, 0x25, 0x45, 0x05, 0x06


def _enosys_stub(lib: ctypes.CDLL, plan: SeccompPlan) -> bytes:
    """BPF put before libseccomp's program: a syscall newer than every one
    the profile names gets ENOSYS, not the default action.

    runc does the same (its seccomp.bats "-ENOSYS handling"): a profile
    written before a syscall existed then makes the C library fall back to
    the older call (clone3 -> clone, faccessat2 -> faccessat) instead of
    failing with EPERM.  Per architecture, the highest number of a named
    syscall; x32 calls are left to libseccomp's program.
    """
    import struct

    tokens = [int(lib.seccomp_arch_native())]
    for _, arch in plan.archs:
        token = int(lib.seccomp_arch_resolve_name(ARCHS[arch].encode()))
        if token and token not in tokens:
            tokens.append(token)
    names = {rule.name.encode() for rule in plan.rules}
    lasts: list[tuple[int, int]] = []
    for token in tokens:
        if token == _X32_TOKEN:
            continue
        numbers = [int(lib.seccomp_syscall_resolve_name_arch(token, n)) for n in names]
        last = max((nr for nr in numbers if nr >= 0), default=-1)
        if last >= 0:
            lasts.append((token, last))
    if not lasts:
        return b""
    # Symbolic program: (code, jt label, jf label, k); labels resolved below.
    prog: list[tuple[int, str | None, str | None, int]] = [(_BPF_LD_W_ABS, None, None, 4)]  # A = arch
    for i, (token, last) in enumerate(lasts):
        nxt = f"arch{i + 1}" if i + 1 < len(lasts) else "prog"
        prog.append((_BPF_JEQ, None, nxt, token))  # label arch{i} is the instruction after it
        prog.append((_BPF_LD_W_ABS, None, None, 0))  # A = nr
        if token == _AUDIT_ARCH_X86_64:
            prog.append((_BPF_JSET, "prog", None, _X32_SYSCALL_BIT))
        prog.append((_BPF_JGT, "enosys", "prog", last))
        if i + 1 < len(lasts):
            prog.append((_BPF_LD_W_ABS, None, None, 4))  # arch{i+1}: reload the arch
    prog.append((_BPF_RET, None, None, _RET_ERRNO | 38))  # enosys: ENOSYS
    # labels: "enosys" is the last instruction, "prog" the first one after the stub
    labels = {"enosys": len(prog) - 1, "prog": len(prog)}
    arch_at = [pc for pc, ins in enumerate(prog) if ins[0] == _BPF_LD_W_ABS and ins[3] == 4]
    for i, pc in enumerate(arch_at[1:], start=1):
        labels[f"arch{i}"] = pc
    out = bytearray()
    for pc, (code, jt, jf, k) in enumerate(prog):
        t = labels[jt] - pc - 1 if jt else 0
        f = labels[jf] - pc - 1 if jf else 0
        out += struct.pack("=HBBI", code, t, f, k)
    return bytes(out)


def prepare(plan: SeccompPlan, cache: bool = False) -> Filter:
    """Build the libseccomp filter of linux.seccomp (checked by the parse,
    spec/config.parse_seccomp); not loaded yet.

    Call before pivot_root: this opens libseccomp.so.2 from the host.
    Raises ConfigError naming the field for architectures, flags and actions
    this libseccomp/kernel cannot apply; syscall names unknown to the library
    are skipped (as runc does).

    With `cache` (the runtime's create and exec), a program compiled earlier
    for the same profile, library and kernel is used (see seccomp_cache.py);
    the checks above run all the same.  Such a filter has no libseccomp
    context (it cannot be exported).
    """
    lib = _library()
    api = int(lib.seccomp_api_get())
    version = library_version()

    def too_old(field: str, what: str, level: int) -> ConfigError:
        return ConfigError(field, f"{what} needs libseccomp API level {level}, but libseccomp "
                                  f"{version} with this kernel provides level {api}")

    if ACTIONS[plan.default_name][2] > api:
        raise too_old(f"{_FIELD}.defaultAction", plan.default_name, ACTIONS[plan.default_name][2])
    for rule in plan.rules:
        need = ACTIONS[rule.action_name][2]
        if need > api:
            raise too_old(f"{_FIELD}.syscalls[{rule.index}].action", rule.action_name, need)

    name = ""
    if cache:
        from ocipy.linux import seccomp_cache

        name = seccomp_cache.key(plan.source, _LIBNAME, version, api)
        hit = seccomp_cache.load(name)
        if hit is not None:
            flags, needs_notify, known_skipped, program = hit
            flt = Filter(None, needs_notify, known_skipped)
            flt._raw_flags = flags
            flt._raw_prog = ctypes.create_string_buffer(program, len(program))
            _c()  # libc's syscall() resolved now, in the parent
            return flt
    ctx = lib.seccomp_init(plan.default_action)
    if not ctx:
        raise KernelError("seccomp_init", None, ctypes.get_errno() or 22)
    ok = False
    try:
        # The runtime decides no_new_privs from process.noNewPrivileges.
        _check(lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0), "seccomp_attr_set(SCMP_FLTATR_CTL_NNP)")
        for i, arch in plan.archs:
            token = lib.seccomp_arch_resolve_name(ARCHS[arch].encode())
            if not token:
                raise ConfigError(f"{_FIELD}.architectures[{i}]",
                                  f"{arch} is not supported by libseccomp {version}")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc == -33:  # -EDOM
                raise ConfigError(f"{_FIELD}.architectures[{i}]",
                                  f"libseccomp cannot combine {arch} with the native "
                                  f"architecture in one filter (different byte order)")
            if rc < 0 and rc != -17:  # -EEXIST: the native arch is always there
                raise ConfigError(f"{_FIELD}.architectures[{i}]",
                                  f"cannot add {arch} to the filter: {os.strerror(-rc)}")
        raw_flags = 0
        for i, flag in plan.flags:
            attr, level = FLAGS[flag]
            if attr == _ATTR_CTL_WAITKILL:
                # Only meaningful (and only accepted by the kernel) with a
                # notify listener; without SCMP_ACT_NOTIFY rules it is a no-op.
                if level > api and _kernel_has_wait_killable():
                    if plan.needs_notify:
                        raw_flags |= _KFLAG_WAIT_KILLABLE_RECV
                    continue
                if not plan.needs_notify and level <= api:
                    continue
            rc = lib.seccomp_attr_set(ctx, attr, 1) if level <= api else -95
            if rc < 0:
                raise ConfigError(f"{_FIELD}.flags[{i}]",
                                  f"{flag} is not supported by libseccomp {version} "
                                  f"(API level {api}) on this kernel")
        if len(plan.rules) > 32:
            # As runc: a binary tree of syscalls for long rule sets
            # (libseccomp <= 2.5.4 misbehaves with it and no rules).
            lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)

        skipped: list[str] = []
        for rule in plan.rules:
            if rule.action == plan.default_action:
                continue  # redundant; libseccomp refuses it (runc skips it too)
            nr = lib.seccomp_syscall_resolve_name(rule.name.encode())
            if nr == _NR_SCMP_ERROR:
                skipped.append(rule.name)  # unknown to this library: skipped, as runc does
                continue
            indexes = [c[0] for c in rule.args]
            if len(set(indexes)) != len(indexes):
                # As runc: when one argument index appears more than once, every
                # condition becomes a rule of its own (they are OR'ed).
                for cmp in rule.args:
                    _add_rule(lib, ctx, nr, rule, [cmp])
            else:
                # Otherwise one rule with all conditions (AND'ed).
                _add_rule(lib, ctx, nr, rule, rule.args)
        flt = Filter(ctx, plan.needs_notify, skipped)
        stub = b"" if plan.default_name in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG") else _enosys_stub(lib, plan)
        if raw_flags or stub:
            # The same kernel flags libseccomp would pass, plus ours.
            names = {f for _, f in plan.flags}
            if "SECCOMP_FILTER_FLAG_TSYNC" in names:
                raw_flags |= _KFLAG_TSYNC | (_KFLAG_TSYNC_ESRCH if plan.needs_notify else 0)
            if "SECCOMP_FILTER_FLAG_LOG" in names:
                raw_flags |= _KFLAG_LOG
            if "SECCOMP_FILTER_FLAG_SPEC_ALLOW" in names:
                raw_flags |= _KFLAG_SPEC_ALLOW
            flt._use_raw_load(raw_flags | (_KFLAG_NEW_LISTENER if plan.needs_notify else 0), stub)
            if name and flt._raw_prog is not None:  # only raw-loaded programs are kept
                from ocipy.linux import seccomp_cache

                seccomp_cache.store(name, flt._raw_flags or 0, plan.needs_notify, skipped, flt._raw_prog.raw)
        ok = True
        return flt
    finally:
        if not ok:
            lib.seccomp_release(ctx)


# ---------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------


def features() -> dict[str, Any]:
    """The ``linux.seccomp`` object of ``ocipy features`` (features-linux.md).

    ``actions``, ``archs`` and ``supportedFlags`` are what this libseccomp
    and the running kernel can actually apply; ``knownFlags`` is every flag
    this module recognizes.
    """
    try:
        lib = _library()
    except SeccompUnavailable:
        return {"enabled": False}
    api = int(lib.seccomp_api_get())
    archs = sorted(n for n, tok in ARCHS.items() if lib.seccomp_arch_resolve_name(tok.encode()))
    supported: list[str] = []
    ctx = lib.seccomp_init(ACT_ALLOW)
    try:
        for flag, (attr, level) in FLAGS.items():
            if level <= api and ctx and lib.seccomp_attr_set(ctx, attr, 1) == 0:
                supported.append(flag)
            elif attr == _ATTR_CTL_WAITKILL and api >= 6 and _kernel_has_wait_killable():
                supported.append(flag)  # passed to seccomp(2) by ocipy itself
    finally:
        if ctx:
            lib.seccomp_release(ctx)
    return {
        "enabled": True,
        "actions": sorted(n for n, (_, _, level) in ACTIONS.items() if level <= api),
        "operators": sorted(OPERATORS),
        "archs": archs,
        "knownFlags": list(FLAGS),
        "supportedFlags": supported,
    }


# ---------------------------------------------------------------------------
# Seccomp notify: the runtime side (send_listener) and an agent side
# ---------------------------------------------------------------------------

SECCOMP_FD_NAME = "seccompFd"


def send_listener(listener_path: str, notify_fd: int, state: dict[str, Any], metadata: str) -> None:
    """Send the container process state and the notify fd to a seccomp agent.

    runc's protocol (config-linux.md "The Container Process State"): connect
    an AF_UNIX SOCK_STREAM socket to ``listener_path``, send one JSON
    ContainerProcessState (``ociVersion``, ``fds: ["seccompFd"]``, ``pid``,
    ``metadata`` when not empty, ``state``) with the fd attached by
    SCM_RIGHTS to the first sendmsg, then close the connection.  Raises
    OcipyError ("failed to connect with seccomp agent ...") when the agent
    cannot be reached, KernelError when the send fails.
    """
    import array
    import json
    import socket

    msg = {
        "ociVersion": state.get("ociVersion", "1.0.2"),
        "fds": [SECCOMP_FD_NAME],
        "pid": state.get("pid", 0),
    }
    if metadata:
        msg["metadata"] = metadata
    msg["state"] = state
    data = json.dumps(msg, separators=(",", ":")).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(listener_path)
        except OSError as exc:
            # runc's wording, which tools and tests look for
            raise OcipyError(f"failed to connect with seccomp agent specified in the seccomp profile: "
                             f"linux.seccomp.listenerPath {listener_path}: {exc.strerror}") from None
        try:
            fds = array.array("i", [notify_fd])
            sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
            if sent < len(data):
                # The fd went with the first sendmsg; the rest is plain payload.
                sock.sendall(data[sent:])
        except OSError as exc:
            raise KernelError("send to seccomp listener", listener_path, exc.errno or 5) from None
    finally:
        sock.close()


def recv_listener(conn: Any, max_fds: int = 8) -> tuple[dict[str, Any], list[int]]:
    """Agent side of :func:`send_listener`: read one ContainerProcessState.

    ``conn`` is an accepted (or socketpair) ``socket.socket``.  Reads until
    the bytes received form one complete JSON document, or until EOF: the
    spec says the runtime closes the connection, but runc leaks its end
    until it exits, so an agent must not wait for EOF.  Returns the decoded
    JSON and the received fds (SCM_RIGHTS order; the caller owns them).
    """
    import array
    import json
    import socket

    fds: list[int] = []
    buf = b""
    doc: Any = None
    try:
        while True:
            data, ancdata, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(max_fds * 4))
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    arr = array.array("i")
                    arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
                    fds.extend(arr)
            buf += data
            try:
                doc = json.loads(buf)
                break
            except ValueError:
                if not data:
                    raise
        if not isinstance(doc, dict):
            raise ValueError("the container process state is not a JSON object")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return doc, fds


class Notification:
    """One seccomp user notification (struct seccomp_notif)."""

    __slots__ = ("id", "pid", "flags", "nr", "arch", "instruction_pointer", "args")

    def __init__(self, n: _Notif) -> None:
        self.id = int(n.id)
        self.pid = int(n.pid)
        self.flags = int(n.flags)
        self.nr = int(n.data.nr)
        self.arch = int(n.data.arch)
        self.instruction_pointer = int(n.data.instruction_pointer)
        self.args = tuple(int(a) for a in n.data.args)

    @property
    def syscall(self) -> str | None:
        """The syscall's name on the notifying task's architecture."""
        return syscall_name(self.nr, self.arch)

    def __repr__(self) -> str:
        return f"Notification(id={self.id}, pid={self.pid}, syscall={self.syscall}, args={self.args})"


def notify_receive(fd: int) -> Notification:
    """Block until the filter behind ``fd`` notifies a syscall (seccomp_notify_receive)."""
    lib = _library()
    req, resp = ctypes.c_void_p(), ctypes.c_void_p()
    _check(lib.seccomp_notify_alloc(ctypes.byref(req), ctypes.byref(resp)), "seccomp_notify_alloc")
    try:
        _check(lib.seccomp_notify_receive(fd, req), "seccomp_notify_receive")
        return Notification(_Notif.from_address(req.value or 0))
    finally:
        lib.seccomp_notify_free(req, resp)


def notify_respond(fd: int, notif_id: int, *, val: int = 0, error: int = 0,
                   continue_syscall: bool = False) -> None:
    """Answer a notification: return ``val``, or fail with errno ``error``
    (a positive errno), or let the kernel run the syscall (``continue_syscall``)."""
    lib = _library()
    req, resp = ctypes.c_void_p(), ctypes.c_void_p()
    _check(lib.seccomp_notify_alloc(ctypes.byref(req), ctypes.byref(resp)), "seccomp_notify_alloc")
    try:
        r = _NotifResp.from_address(resp.value or 0)
        r.id = notif_id
        r.val = 0 if continue_syscall else val
        r.error = 0 if continue_syscall else -abs(error)
        r.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE if continue_syscall else 0
        _check(lib.seccomp_notify_respond(fd, resp), "seccomp_notify_respond")
    finally:
        lib.seccomp_notify_free(req, resp)


def notify_id_valid(fd: int, notif_id: int) -> bool:
    """Whether the notifying task is still waiting on ``notif_id`` (TOCTOU check)."""
    return int(_library().seccomp_notify_id_valid(fd, notif_id)) == 0
