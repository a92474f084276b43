"""linux.seccomp validation: bad input is a ConfigError naming the field.

These build filters in memory with libseccomp (prepare) but never load one,
so they run unprivileged and leave the test process unconfined.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from ocipy.errors import ConfigError
from ocipy.linux import seccomp
from ocipy.spec.seccomp import parse_seccomp

needs_lib = pytest.mark.skipif(not os.path.exists("/usr/lib/x86_64-linux-gnu/libseccomp.so.2")
                               and not os.path.exists("/lib/x86_64-linux-gnu/libseccomp.so.2"),
                               reason="libseccomp.so.2 not installed")


def prepare(doc: Any) -> seccomp.Filter:
    """linux.seccomp as create hands it to the filter builder: parsed first."""
    return seccomp.prepare(parse_seccomp(doc))


def cfg(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW"}
    base.update(kw)
    return base


def field_of(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(exc.value.field)


# --- pure validation (no library needed) ---------------------------------

@pytest.mark.parametrize(("config", "field"), [
    ({}, "linux.seccomp.defaultAction"),
    (cfg(defaultAction="SCMP_ACT_BOGUS"), "linux.seccomp.defaultAction"),
    (cfg(defaultAction=3), "linux.seccomp.defaultAction"),
    # NOTIFY as the default would hang the runtime (runc refuses it too).
    (cfg(defaultAction="SCMP_ACT_NOTIFY", listenerPath="/x"), "linux.seccomp.defaultAction"),
    # config-linux.md defaultErrnoRet: "When the action doesn't support an
    # errno, the runtime MUST print and error and fail."
    (cfg(defaultAction="SCMP_ACT_ALLOW", defaultErrnoRet=1), "linux.seccomp.defaultErrnoRet"),
    (cfg(defaultAction="SCMP_ACT_KILL", defaultErrnoRet=1), "linux.seccomp.defaultErrnoRet"),
    (cfg(defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=-1), "linux.seccomp.defaultErrnoRet"),
    (cfg(defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=70000), "linux.seccomp.defaultErrnoRet"),
    (cfg(defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=True), "linux.seccomp.defaultErrnoRet"),
    (cfg(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_PDP11"]), "linux.seccomp.architectures[1]"),
    (cfg(architectures=["x86_64"]), "linux.seccomp.architectures[0]"),
    (cfg(architectures="SCMP_ARCH_X86"), "linux.seccomp.architectures"),
    (cfg(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_BOGUS"]), "linux.seccomp.flags[1]"),
    # listenerMetadata "MUST NOT be set if listenerPath is not set".
    (cfg(listenerMetadata="abc"), "linux.seccomp.listenerMetadata"),
    (cfg(listenerPath=5), "linux.seccomp.listenerPath"),
    (cfg(syscalls={}), "linux.seccomp.syscalls"),
    (cfg(syscalls=["mkdir"]), "linux.seccomp.syscalls[0]"),
    # "`names` MUST contain at least one entry."
    (cfg(syscalls=[{"names": [], "action": "SCMP_ACT_ERRNO"}]), "linux.seccomp.syscalls[0].names"),
    (cfg(syscalls=[{"action": "SCMP_ACT_ERRNO"}]), "linux.seccomp.syscalls[0].names"),
    (cfg(syscalls=[{"names": ["mkdir", ""], "action": "SCMP_ACT_ERRNO"}]), "linux.seccomp.syscalls[0].names[1]"),
    (cfg(syscalls=[{"names": ["mkdir"]}]), "linux.seccomp.syscalls[0].action"),
    (cfg(syscalls=[{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                   {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
                   {"names": ["getpid"], "action": "SCMP_ACT_DENY"}]), "linux.seccomp.syscalls[2].action"),
    # errnoRet on an action that takes no errno: MUST fail.
    (cfg(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS", "errnoRet": 1}]),
     "linux.seccomp.syscalls[0].errnoRet"),
    (cfg(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": "EPERM"}]),
     "linux.seccomp.syscalls[0].errnoRet"),
    # runc: "SCMP_ACT_NOTIFY cannot be used for the write syscall".
    (cfg(listenerPath="/x", syscalls=[{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]),
     "linux.seccomp.syscalls[0].names"),
    # runc: "seccomp listenerPath is not set" when SCMP_ACT_NOTIFY is used.
    (cfg(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]), "linux.seccomp.listenerPath"),
    (cfg(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": {}}]),
     "linux.seccomp.syscalls[0].args"),
    (cfg(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                             {"index": 1, "value": 9, "op": "SCMP_CMP_BETWEEN"}]}]),
     "linux.seccomp.syscalls[0].args[1].op"),
    (cfg(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]),
     "linux.seccomp.syscalls[0].args[0].index"),
    (cfg(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}]}]),
     "linux.seccomp.syscalls[0].args[0].value"),
    (cfg(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "valueTwo": -1, "op": "SCMP_CMP_MASKED_EQ"}]}]),
     "linux.seccomp.syscalls[0].args[0].valueTwo"),
    (cfg(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "SCMP_CMP_EQ"}]}]),
     "linux.seccomp.syscalls[0].args[0].value"),
])
def test_bad_field_is_named(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_seccomp(config)
    assert field_of(exc) == field
    assert field in str(exc.value)


def test_not_an_object() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_seccomp(["SCMP_ACT_ALLOW"])
    assert field_of(exc) == "linux.seccomp"


def test_valid_config_passes() -> None:
    parse_seccomp(cfg(
        defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=38,
        architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        flags=["SECCOMP_FILTER_FLAG_LOG"],
        listenerPath="/run/agent.sock", listenerMetadata="m",
        syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                  {"names": ["kill"], "action": "SCMP_ACT_TRACE", "errnoRet": 5,
                   "args": [{"index": 1, "value": 0xFF, "valueTwo": 9, "op": "SCMP_CMP_MASKED_EQ"}]}],
    ))


# --- with libseccomp: prepare() builds but does not load -------------------

@needs_lib
def test_prepare_reports_the_field() -> None:
    with pytest.raises(ConfigError) as exc:
        prepare(cfg(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                                      {"names": ["mkdir"], "action": "SCMP_ACT_FOO"}]))
    assert field_of(exc) == "linux.seccomp.syscalls[1].action"


@needs_lib
def test_unknown_syscall_names_are_skipped() -> None:
    # As runc: a name libseccomp does not know for this arch is ignored, not an error.
    with prepare(cfg(syscalls=[{"names": ["no_such_syscall_xyz", "mkdir", "another_fake"],
                                        "action": "SCMP_ACT_ERRNO"}])) as flt:
        assert flt.skipped == ["no_such_syscall_xyz", "another_fake"]
        assert not flt.needs_notify
        pfc = flt.export_pfc()
    assert '"mkdir"' in pfc
    assert "no_such_syscall_xyz" not in pfc


@needs_lib
def test_rule_equal_to_default_is_skipped() -> None:
    # runc skips rules whose action equals the default (libseccomp refuses them).
    with prepare(cfg(defaultAction="SCMP_ACT_ERRNO",
                             syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                                       {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}])) as flt:
        pfc = flt.export_pfc()
    assert '"mkdir"' not in pfc
    assert '"rmdir"' in pfc and "ERRNO(2)" in pfc


@needs_lib
def test_architectures_are_added() -> None:
    with prepare(cfg(architectures=["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
                             syscalls=[{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"}])) as flt:
        pfc = flt.export_pfc()
    for arch in ("x86_64", "x86", "x32", "aarch64"):
        assert f"filter for arch {arch} " in pfc


@needs_lib
def test_unsupported_flag_is_an_error_naming_the_field() -> None:
    feats = seccomp.features()
    unsupported = [f for f in feats["knownFlags"] if f not in feats["supportedFlags"]]
    if not unsupported:
        pytest.skip("every known flag is supported by this libseccomp")
    with pytest.raises(ConfigError) as exc:
        prepare(cfg(flags=["SECCOMP_FILTER_FLAG_LOG", unsupported[0]]))
    assert field_of(exc) == "linux.seccomp.flags[1]"
    assert "libseccomp" in str(exc.value)


@needs_lib
def test_wait_killable_needs_kernel_support(monkeypatch: pytest.MonkeyPatch) -> None:
    # With libseccomp < 2.6 ocipy passes WAIT_KILLABLE_RECV to seccomp(2)
    # itself; on a kernel without it (< 5.19) the flag is refused, naming it.
    if seccomp.api_level() >= 7:
        pytest.skip("libseccomp handles the flag itself")
    monkeypatch.setattr(seccomp, "_kernel_has_wait_killable", lambda: False)
    assert "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" not in seccomp.features()["supportedFlags"]
    with pytest.raises(ConfigError) as exc:
        prepare(cfg(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"], listenerPath="/x",
                            syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]))
    assert field_of(exc) == "linux.seccomp.flags[0]"


@needs_lib
def test_features_are_truthful() -> None:
    feats = seccomp.features()
    assert feats["enabled"] is True
    assert set(feats["operators"]) == set(seccomp.OPERATORS)
    assert set(feats["supportedFlags"]) <= set(feats["knownFlags"])
    assert "SCMP_ARCH_X86_64" in feats["archs"]
    # Every advertised name is accepted by prepare() (features-linux.md:
    # "The runtime MUST recognize the elements in this array").
    for arch in feats["archs"]:
        try:
            prepare(cfg(architectures=[arch])).release()
        except ConfigError as err:
            # Recognized, but libseccomp cannot mix byte orders in one filter
            # (runc fails the same way): a clear error naming the field.
            assert err.field == "linux.seccomp.architectures[0]"
            assert "byte order" in str(err)
    for flag in feats["supportedFlags"]:
        prepare(cfg(flags=[flag])).release()
    for action in feats["actions"]:
        extra = {"listenerPath": "/x"} if action == "SCMP_ACT_NOTIFY" else {}
        prepare(cfg(defaultAction="SCMP_ACT_ERRNO",
                            syscalls=[{"names": ["mkdir"], "action": action}], **extra)).release()
    # Archs this library cannot resolve are left out, not advertised.
    for arch in set(seccomp.ARCHS) - set(feats["archs"]):
        with pytest.raises(ConfigError) as unsupported:
            prepare(cfg(architectures=[arch]))
        assert field_of(unsupported) == "linux.seccomp.architectures[0]"


def test_import_is_cheap() -> None:
    # Start-up time is a feature: importing the module must not load
    # libseccomp, json, socket or typing.
    code = ("import sys; import ocipy.linux.seccomp; "
            "print(sorted(m for m in ('json', 'socket', 'typing', 'dataclasses') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
