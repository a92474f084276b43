"""What scripts and engines parse from the CLI, without containers: help pages,
version lines, exit codes of failures, log lines, runc's JSON layout, and the
default config of `ocipy spec` (against runc 1.1.5's and the runtime-spec schema).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest

from ocipy import log
from ocipy.cli import gojson
from ocipy.cli.lifecycle import runc_state
from ocipy.spec.runtime import default_spec
from support.helpers import OCIPY


@pytest.fixture(autouse=True)
def _library_logging_after() -> Any:
    # log.setup() is the CLI's: tests calling it must not leave this process in CLI mode
    yield
    log.setup(None, "text", False)
    log._cli = False

RUNC = shutil.which("runc") or "/usr/sbin/runc"


def ocipy(*args: str, root: pathlib.Path | None = None, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["--root", str(root)] if root is not None else []
    return subprocess.run([OCIPY, *prefix, *args], capture_output=True, text=True, timeout=30, cwd=cwd,
                          stdin=subprocess.DEVNULL)  # fmt: skip


# --- help -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["help"], ["h"], []])
def test_main_help_is_runc_style(argv: list[str]) -> None:
    proc = ocipy(*argv)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "NAME:"
    assert lines[1].startswith("   ocipy") and "Open Container Initiative runtime" in lines[1]
    for section in ("USAGE:", "VERSION:", "COMMANDS:", "GLOBAL OPTIONS:"):
        assert section in lines
    # every runtime command is listed, one per line, name first
    listed = {line.split()[0] for line in lines[lines.index("COMMANDS:") + 1:] if line.startswith("   ")}
    assert {"create", "start", "run", "exec", "state", "list", "kill", "delete", "spec", "checkpoint"} <= listed


COMMANDS = ["checkpoint", "create", "delete", "events", "exec", "kill", "list", "pause", "ps", "restore",
            "resume", "run", "spec", "start", "state", "update", "features"]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command: str) -> None:
    for argv in ([command, "-h"], [command, "--help"], ["help", command]):
        proc = ocipy(*argv)
        assert proc.returncode == 0, (argv, proc.stderr)
        lines = proc.stdout.splitlines()
        assert lines[0] == "NAME:", argv
        assert lines[1].startswith(f"   ocipy {command}, runc {command} - "), argv
        assert "USAGE:" in lines


@pytest.mark.parametrize("argv", [["foo", "-h"], ["help", "foo"], ["foo"], ["foo", "--help"]])
def test_unknown_command_or_topic(argv: list[str]) -> None:
    # runc 1.1.5: "No help topic for 'foo'", exit status 3, for each of these
    proc = ocipy(*argv)
    assert proc.returncode == 3
    assert "No help topic for 'foo'" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_checkpoint_and_restore_are_a_clear_error(tmp_path: pathlib.Path) -> None:
    for command in ("checkpoint", "restore"):
        proc = ocipy(command, "some-id", root=tmp_path)
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1 and "not supported" in proc.stderr and "CRIU" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_checks_parent_path_as_runc(tmp_path: pathlib.Path) -> None:
    """runc refuses an absolute or missing --parent-path before it reaches CRIU (checkpoint.bats)."""
    for parent, words in ((str(tmp_path / "p"), "--parent-path must be relative"),
                          ("./parent-dir", "invalid --parent-path: stat img/parent-dir: no such file")):  # fmt: skip
        proc = ocipy("checkpoint", "--parent-path", parent, "--image-path", "img", "some-id", root=tmp_path / "st")
        assert proc.returncode == 1 and words in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("argv", [["-v"], ["--version"], ["version"]])
def test_version_lines(argv: list[str]) -> None:
    from ocipy import OCI_RUNTIME_SPEC_VERSION, __version__

    proc = ocipy(*argv)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == f"ocipy version {__version__}"
    assert re.fullmatch(r"commit: \S+", lines[1])
    assert lines[2] == f"spec: {OCI_RUNTIME_SPEC_VERSION}"
    assert any(re.fullmatch(r"libseccomp: \d+\.\d+\.\d+", line) for line in lines[3:])


# --- exit codes (no container needed) ---------------------------------------------------------------


def test_exit_codes_as_runcs(tmp_path: pathlib.Path) -> None:
    # exec: a failure of the runtime exits 255 (the process's own status is passed through);
    # a flag it does not know is a usage error, 1, as for every command
    missing = ocipy("exec", "no-such-container", "true", root=tmp_path)
    assert missing.returncode == 255 and "container does not exist" in missing.stderr
    assert ocipy("exec", "--no-such-flag", "x", "true", root=tmp_path).returncode == 1
    assert ocipy("exec", "-p", str(tmp_path / "nope.json"), "x", root=tmp_path).returncode == 255
    # delete --force of a container that does not exist succeeds (engines clean up with it)
    assert ocipy("delete", "--force", "no-such-container", root=tmp_path).returncode == 0
    assert ocipy("delete", "-f", "no-such-container", root=tmp_path).returncode == 0
    plain = ocipy("delete", "no-such-container", root=tmp_path)
    assert plain.returncode == 1 and "container does not exist" in plain.stderr
    for command in ("state", "start", "kill"):
        proc = ocipy(command, "no-such-container", root=tmp_path)
        assert proc.returncode == 1 and "container does not exist" in proc.stderr
    assert ocipy("list", "-f", "yaml", root=tmp_path).returncode == 1
    assert list(tmp_path.iterdir()) == []


def test_list_of_nothing_is_runcs(tmp_path: pathlib.Path) -> None:
    assert ocipy("list", "-f", "json", root=tmp_path).stdout == "null\n"
    assert ocipy("list", root=tmp_path).stdout == "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
    assert ocipy("list", "-q", root=tmp_path).stdout == ""


# --- JSON as Go writes it ---------------------------------------------------------------------------


def test_gojson_layouts() -> None:
    value = {"a": 1, "b": [True, None, "x"], "c": {}, "d": [], "e": {"f": "g"}}
    assert gojson.dumps(value) == '{"a":1,"b":[true,null,"x"],"c":{},"d":[],"e":{"f":"g"}}'
    assert json.loads(gojson.dumps(value)) == value
    # MarshalIndent(v, "", "  ") is json.dumps(indent=2) for these documents
    assert gojson.dumps(value, indent="  ") == json.dumps(value, indent=2)
    # encoding/json escapes <, > and & and keeps UTF-8
    assert gojson.dumps({"k": "<a&b> é\n\""}) == '{"k":"\\u003ca\\u0026b\\u003e é\\n\\""}'


def test_state_fields_in_runcs_order() -> None:
    state = {"owner": "root", "annotations": {"z": "1", "a": "2"}, "created": "C", "rootfs": "R", "bundle": "B",
             "status": "running", "pid": 7, "id": "x", "ociVersion": "1.2.1"}  # fmt: skip
    assert list(runc_state(state)) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                                       "annotations", "owner"]  # fmt: skip
    assert list(runc_state(state)["annotations"]) == ["a", "z"]  # Go sorts map keys
    assert "annotations" not in runc_state(dict(state, annotations={}))
    # created as Go's RFC3339Nano: trailing zeros of the fraction dropped
    for stored, shown in (("2026-01-02T03:04:05.120000000Z", "2026-01-02T03:04:05.12Z"),
                          ("2026-01-02T03:04:05.000000000Z", "2026-01-02T03:04:05Z"),
                          ("2026-01-02T03:04:05.123456789Z", "2026-01-02T03:04:05.123456789Z")):  # fmt: skip
        assert runc_state(dict(state, created=stored))["created"] == shown


# --- log lines (logrus) -----------------------------------------------------------------------------


def test_log_lines_text_and_json(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "log"
    try:
        log.setup(str(path), "text", True)
        log.debug("plain")
        log.debug('with "quotes" and spaces')
        log.setup(str(path), "json", True)
        log.debug("a <json> line")
    finally:
        log.setup(None, "text", False)
    lines = path.read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)"
    assert re.fullmatch(rf'time="{stamp}" level=debug msg=plain', lines[0])
    assert re.fullmatch(rf'time="{stamp}" level=debug msg="with \\"quotes\\" and spaces"', lines[1])
    assert re.fullmatch(rf'\{{"level":"debug","msg":"a \\u003cjson\\u003e line","time":"{stamp}"\}}', lines[2])
    assert json.loads(lines[2])["msg"] == "a <json> line"


def test_debug_is_silent_without_debug(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "log"
    log.setup(str(path), "text", False)
    try:
        log.debug("not written")
    finally:
        log.setup(None, "text", False)
    assert path.read_text() == ""  # created, as runc creates its --log, but nothing written


# --- ocipy spec -------------------------------------------------------------------------------------

# Where ocipy's default config differs from runc 1.1.5's on purpose (docs/compat.md):
# the spec version it implements, its own hostname, and two defaults newer runc
# adopted for safety: a cgroup namespace on cgroup v2 hosts and /sys/devices/virtual/powercap masked.
def _normalise(config: dict[str, Any]) -> dict[str, Any]:
    config = json.loads(json.dumps(config))
    config.pop("ociVersion")
    config.pop("hostname")
    linux = config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "cgroup"]
    linux["maskedPaths"] = [p for p in linux["maskedPaths"] if p != "/sys/devices/virtual/powercap"]
    return config


@pytest.mark.parametrize("rootless", [False, True])
def test_spec_is_runcs_default_field_for_field(tmp_path: pathlib.Path, rootless: bool) -> None:
    if not os.path.exists(RUNC):
        pytest.fail("runc is not installed: run `make install` (it compares with runc 1.1.5)")
    extra = ["--rootless"] if rootless else []
    (tmp_path / "runc").mkdir()
    (tmp_path / "ocipy").mkdir()
    subprocess.run([RUNC, "spec", *extra], cwd=tmp_path / "runc", check=True, timeout=30)
    proc = ocipy("spec", *extra, cwd=str(tmp_path / "ocipy"))
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads((tmp_path / "runc/config.json").read_text())
    ours = json.loads((tmp_path / "ocipy/config.json").read_text())
    assert ours["hostname"] == "ocipy"
    from ocipy.spec.runtime import unified_cgroup_host

    assert ({"type": "cgroup"} in ours["linux"]["namespaces"]) == unified_cgroup_host()
    assert "/sys/devices/virtual/powercap" in ours["linux"]["maskedPaths"]
    # same fields, same values, same order (json keeps the order of the file)
    assert json.dumps(_normalise(ours)) == json.dumps(_normalise(theirs))
    # and a second spec refuses to overwrite it, with one line
    again = ocipy("spec", *extra, cwd=str(tmp_path / "ocipy"))
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "exists" in again.stderr


def _schema_dir() -> pathlib.Path:
    for parent in pathlib.Path(__file__).resolve().parents:
        candidate = parent / "shared/specs/runtime-spec/schema"
        if candidate.is_dir():
            return candidate
    pytest.fail("the runtime-spec schemas (shared/specs/runtime-spec/schema) are not next to the checkout")


def _validator(schema_name: str) -> Any:
    import jsonschema
    import referencing
    import referencing.jsonschema

    schema_dir = _schema_dir()
    resources = []
    for path in schema_dir.glob("*.json"):
        doc = json.loads(path.read_text())
        resource = referencing.Resource.from_contents(doc, default_specification=referencing.jsonschema.DRAFT4)
        resources.append((path.as_uri(), resource))
        resources.append((path.name, resource))
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((schema_dir / schema_name).read_text())
    schema.setdefault("$id", (schema_dir / schema_name).as_uri())
    return jsonschema.validators.validator_for(schema)(schema, registry=registry)


@pytest.mark.parametrize("rootless", [False, True])
def test_spec_validates_against_the_runtime_spec_schema(rootless: bool) -> None:
    # config.md: "the config MUST adhere to schema/config-schema.json" (runc's spec.bats
    # "spec validator" runs the runtime-spec's validate.go on `runc spec`'s output; this is that check)
    validator = _validator("config-schema.json")
    config = default_spec(rootless)
    assert sorted(validator.iter_errors(config), key=str) == []
    broken = dict(config, process=dict(config["process"], cwd=7))
    assert list(validator.iter_errors(broken)), "the schema check must be able to fail"


def test_state_and_features_output_match_their_schemas() -> None:
    # runtime.md "State" and features.md: the documents follow schema/state-schema.json and features-schema.json
    from ocipy.runtime.features import features

    state = runc_state({"ociVersion": "1.2.1", "id": "x", "pid": 7, "status": "running", "bundle": "/b",
                        "annotations": {"k": "v"}, "rootfs": "/b/rootfs", "created": "C", "owner": "root"})  # fmt: skip
    validator = _validator("state-schema.json")
    assert list(validator.iter_errors(json.loads(gojson.dumps(state, indent="  ")))) == []
    assert list(validator.iter_errors(dict(state, status="sleeping"))), "the schema check must be able to fail"
    assert list(_validator("features-schema.json").iter_errors(features())) == []


def test_help_pages_list_every_flag_the_commands_accept() -> None:
    from ocipy.cli import exec as cli_exec
    from ocipy.cli import help, lifecycle

    for command, flags in (("exec", cli_exec._FLAGS), ("create", lifecycle._CREATE_FLAGS),
                           ("run", lifecycle._CREATE_FLAGS)):  # fmt: skip
        text = help.page(command)
        assert text is not None
        shown = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", text))
        assert set(flags) <= shown, (command, set(flags) - shown)
