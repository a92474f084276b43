"""config.json keys are matched as runc matches them (Go's encoding/json:
exactly, else case-insensitively); unknown keys and the keys of free-form
maps are left alone (config.md "Extensibility": unknown properties MUST be
ignored)."""

from __future__ import annotations

import copy

from ocipy.spec.keys import canonical
from ocipy.spec.runtime import default_spec, validate_config


def test_differently_cased_keys_get_the_spec_spelling():
    config = copy.deepcopy(default_spec())
    process = config.pop("process")
    process["NoNewPrivileges"] = process.pop("noNewPrivileges")
    del process["capabilities"]
    process["Capabilities"] = {"BOUNDING": ["CAP_KILL"]}
    config["Process"] = process
    config["linux"]["Namespaces"] = config["linux"].pop("namespaces")
    config["linux"]["Namespaces"][0] = {"TYPE": "pid"}
    config["mounts"][0]["Destination"] = config["mounts"][0].pop("destination")
    validate_config(config)
    assert config["process"]["noNewPrivileges"] is True
    assert config["process"]["capabilities"] == {"bounding": ["CAP_KILL"]}
    assert config["linux"]["namespaces"][0] == {"type": "pid"}
    assert config["mounts"][0]["destination"] == "/proc"
    assert "Process" not in config and "Namespaces" not in config["linux"]


def test_unknown_keys_and_map_keys_are_kept_as_written():
    config = {"FutureThing": {"X": 1}, "annotations": {"Org.Example/Key": "v"},
              "linux": {"sysctl": {"Net.Ipv4.Ip_forward": "1"}, "someNewField": {"Type": 1}}}
    before = copy.deepcopy(config)
    assert canonical(config) == before


def test_a_second_spelling_merges_into_the_first_as_go_decodes_it():
    config = {"process": {"user": {"uid": 1}, "User": {"gid": 2}}}
    canonical(config)
    assert config == {"process": {"user": {"uid": 1, "gid": 2}}}
