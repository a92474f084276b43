"""Every ```python example in docs/api.md runs, as written, on a real container
(issue 15: "every example in it is executed by the test suite")."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from support.helpers import IS_ROOT, REPO

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not IS_ROOT, reason="needs root: namespaces and mounts")]

DOC = REPO / "docs" / "api.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_page_has_examples() -> None:
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(index: int, make_bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ocipy import api

    # The examples use short ids ("web"); a cgroup path of our own keeps them
    # apart from anyone else's "web" on this machine (cgroups are named by id).
    cgroup = f"/ocipy-docs-{uuid.uuid4().hex[:10]}"

    def edit(config):  # type: ignore[no-untyped-def]
        config["linux"]["cgroupsPath"] = cgroup

    bundle = str(make_bundle(["sleep", "60"], edit=edit))
    root = str(tmp_path / "state")
    try:
        exec(compile(EXAMPLES[index], f"docs/api.md example {index + 1}", "exec"), {"bundle": bundle, "root": root})
    finally:
        left = [c.id for c in api.list_containers(root=root)]
        for cid in left:
            api.delete(cid, root=root, force=True)
    assert left == [], f"the example left containers behind: {left}"
    assert json.loads(Path(bundle, "config.json").read_text())["linux"]["cgroupsPath"] == cgroup
