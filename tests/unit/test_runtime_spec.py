"""config.json validation, the flag parser, JSON and small runtime helpers, without the kernel."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocipy import jsonfast
from ocipy.cli.flags import parse
from ocipy.errors import ConfigError, OcipyError
from ocipy.runtime.operations import parse_signal
from ocipy.runtime.rootfs import MountOptions, clean_path
from ocipy.runtime.store import check_id
from ocipy.spec.config import parse as parse_config
from ocipy.spec.runtime import default_spec, unified_cgroup_host


def test_default_spec_is_valid_and_like_runcs():
    spec = default_spec()
    assert parse_config(spec).raw is spec
    assert spec["process"]["args"] == ["sh"] and spec["root"] == {"path": "rootfs", "readonly": True}
    assert [m["destination"] for m in spec["mounts"]] == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    # as newer runc: a cgroup namespace by default only on a cgroup v2 host
    cgroup = {"cgroup"} if unified_cgroup_host() else set()
    assert {ns["type"] for ns in spec["linux"]["namespaces"]} == {"pid", "network", "ipc", "uts", "mount"} | cgroup


def test_rootless_spec_maps_the_current_user():
    spec = default_spec(rootless=True)
    parse_config(spec)
    assert {"type": "user"} in spec["linux"]["namespaces"]
    assert not any(ns["type"] == "network" for ns in spec["linux"]["namespaces"])
    assert spec["linux"]["uidMappings"][0]["containerID"] == 0
    assert "resources" not in spec["linux"]


def test_schema_accepts_the_default_spec():
    # config.md: the config MUST adhere to schema/config-schema.json
    import pathlib

    jsonschema = pytest.importorskip("jsonschema")
    schema_dir = pathlib.Path(__file__).resolve().parents[3] / "shared/specs/runtime-spec/schema"
    if not schema_dir.exists():
        pytest.skip(f"runtime-spec schemas not found at {schema_dir}")
    schema = json.loads((schema_dir / "config-schema.json").read_text())
    registry_store = {}
    for path in schema_dir.glob("*.json"):
        doc = json.loads(path.read_text())
        registry_store[path.name] = doc
        if "$id" in doc:
            registry_store[doc["$id"]] = doc
    resolver = jsonschema.RefResolver(base_uri=schema_dir.as_uri() + "/", referrer=schema, store=registry_store)
    jsonschema.validate(default_spec(), schema, resolver=resolver)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda c: c.pop("ociVersion"), "ociVersion"),
        (lambda c: c.update(ociVersion="1.0"), "ociVersion"),
        (lambda c: c.update(ociVersion="3.0.0"), "ociVersion"),
        (lambda c: c.pop("root"), "root"),
        (lambda c: c["root"].update(path=7), "root.path"),
        (lambda c: c["root"].update(readonly="yes"), "root.readonly"),
        (lambda c: c["process"].update(args="sh"), "process.args"),
        (lambda c: c["process"]["user"].update(uid=-1), "process.user.uid"),
        (lambda c: c["process"]["user"].update(uid=True), "process.user.uid"),
        (lambda c: c["process"]["rlimits"].append(dict(c["process"]["rlimits"][0])), "process.rlimits[1].type"),
        (lambda c: c["process"]["rlimits"][0].update(soft=2048), "process.rlimits[0]"),
        (lambda c: c["mounts"].append({"type": "tmpfs"}), "mounts[7].destination"),
        (lambda c: c["mounts"][0].update(options="ro"), "mounts[0].options"),
        (lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1, "size": 1}]), "linux.uidMappings"),
        (lambda c: c["linux"].update(maskedPaths=["relative"]), "linux.maskedPaths[0]"),
        (lambda c: c["linux"].update(devices=[{"path": "/dev/x", "type": "z"}]), "linux.devices[0].type"),
        (lambda c: c["linux"].update(cgroupsPath="/a/../b"), "linux.cgroupsPath"),
        (lambda c: c["linux"].update(rootfsPropagation="sideways"), "linux.rootfsPropagation"),
        (lambda c: c.update(hooks={"poststart": [{"path": "/x", "timeout": 0}]}), "hooks.poststart[0].timeout"),
        (lambda c: c.update(annotations={"k": 1}), "annotations.k"),
        (lambda c: c["process"].update(ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 9}), "process.ioPriority.priority"),
        (lambda c: c["linux"].update(personality={"domain": "BSD"}), "linux.personality.domain"),
    ],
)
def test_invalid_fields_are_named(edit, field):
    config = copy.deepcopy(default_spec())
    edit(config)
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert info.value.field == field


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_jsonfast_matches_json(value):
    assert jsonfast.dumps(value) == json.dumps(value, separators=(",", ":"))  # compact, as runc's Go output
    assert jsonfast.dumps(value, indent="  ") == json.dumps(value, indent="  ")
    assert jsonfast.loads(json.dumps(value)) == value


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_jsonfast_rejects_what_json_rejects(text):
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            jsonfast.loads(text)
    else:
        assert jsonfast.loads(text) == expected or expected != expected  # NaN


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_validation_never_crashes(value):
    # Bad input gets a ConfigError, never another exception.
    config = copy.deepcopy(default_spec())
    config["process"]["user"] = value
    try:
        parse_config(config)
    except ConfigError:
        pass
    config = copy.deepcopy(default_spec())
    config["linux"]["namespaces"] = value
    try:
        parse_config(config)
    except ConfigError:
        pass


def test_flag_parser_accepts_runc_spellings():
    spec = {"-b": ("bundle", "str"), "--bundle": ("bundle", "str"), "--pid-file": ("pid", "str"),
            "-d": ("detach", "bool"), "--detach": ("detach", "bool"), "--preserve-fds": ("n", "int")}  # fmt: skip
    values, args = parse("run", ["--bundle=/b", "-pid-file", "p", "--detach=false", "--preserve-fds", "2", "id"], spec, "")
    assert values == {"bundle": "/b", "pid": "p", "detach": False, "n": 2} and args == ["id"]
    with pytest.raises(OcipyError, match="unknown flag"):
        parse("run", ["--nope", "id"], spec, "")
    with pytest.raises(OcipyError, match="not a number"):
        parse("run", ["--preserve-fds", "x", "id"], spec, "")
    with pytest.raises(OcipyError, match="wrong number"):
        parse("run", [], spec, "", min_args=1)
    _, rest = parse("exec", ["-d", "id", "ls", "-l", "--", "x"], spec, "", stop_at_positional=True, min_args=1)
    assert rest == ["id", "ls", "-l", "--", "x"]


def test_signals():
    assert parse_signal("KILL") == 9 == parse_signal("SIGKILL") == parse_signal("9") == parse_signal("kill")
    assert parse_signal("RTMIN+1") == 35
    assert parse_signal("0") == 0  # runc's `kill ID 0` (kill.bats): does the process exist
    for bad in ("NOPE", "-1", "65", "99", "RTMAX-40"):
        with pytest.raises(OcipyError):
            parse_signal(bad)


@pytest.mark.parametrize("good", ["a", "web-1", "k8s_pod.x:y=z+1", "A" * 1024])
def test_ids_accepted(good):
    check_id(good)


@pytest.mark.parametrize("bad", ["", "..", ".", "a/b", "-x", ".hidden", "a b", "é", "A" * 1025, "a\n"])
def test_ids_refused(bad):
    with pytest.raises(OcipyError):
        check_id(bad)


def test_mount_options_sorted_into_flags_data_and_attrs():
    from ocipy.linux import syscalls as sc

    opts = MountOptions(["rbind", "ro", "nosuid", "rprivate", "rnoexec", "size=1m", "mode=755", "rw"])
    assert opts.flags & sc.MS_BIND and opts.flags & sc.MS_REC and opts.flags & sc.MS_NOSUID
    assert not opts.flags & sc.MS_RDONLY  # a later rw clears ro
    assert opts.propagation == [sc.MS_PRIVATE | sc.MS_REC]
    assert opts.attr_set == sc.MOUNT_ATTR_NOEXEC
    assert opts.data == "size=1m,mode=755"


def test_clean_path():
    assert clean_path("//dev/null") == "/dev/null"
    assert clean_path("a/../../b") == "/b"
    assert clean_path("") == "/"


def test_the_specs_own_test_configs():
    # runtime-spec schema/test/config: the good ones are accepted by the static checks.
    import pathlib

    base = pathlib.Path(__file__).resolve().parents[3] / "shared/specs/runtime-spec/schema/test/config/good"
    if not base.exists():
        pytest.skip(f"runtime-spec test configs not found at {base}")
    for path in sorted(base.glob("*.json")):
        parse_config(json.loads(path.read_text()))


@pytest.mark.parametrize("schema_name", ["features-schema.json", "state-schema.json"])
def test_features_and_state_match_their_schemas(schema_name):
    # features.md / runtime.md: the JSON MUST adhere to the schema
    import pathlib

    from ocipy.runtime.features import features
    from ocipy.runtime.store import Container

    jsonschema = pytest.importorskip("jsonschema")
    schema_dir = pathlib.Path(__file__).resolve().parents[3] / "shared/specs/runtime-spec/schema"
    if not schema_dir.exists():
        pytest.skip(f"runtime-spec schemas not found at {schema_dir}")
    store = {}
    for path in schema_dir.glob("*.json"):
        doc = json.loads(path.read_text())
        store[path.name] = doc
        if "$id" in doc:
            store[doc["$id"]] = doc
    schema = store[schema_name]
    resolver = jsonschema.RefResolver(base_uri=schema_dir.as_uri() + "/", referrer=schema, store=store)
    if schema_name == "features-schema.json":
        document = features()
    else:
        document = Container("/nonexistent", "x", {"bundle": "/b", "created_done": True, "config": {"annotations": {"a": "b"}}}).oci_state()
    jsonschema.validate(document, schema, resolver=resolver)
