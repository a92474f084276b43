"""delete's quick cgroup removal (linux/cgroup_rmdir.py) removes what the manager's destroy
removes, never more, and hands anything else to the manager (trees of empty tmp dirs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ocipy.linux import cgroup_rmdir, cgroups


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _layout(root: Path, *, owned: bool, preexisting: bool, shared_parent: bool) -> dict[str, Any]:
    """A hybrid-like saved manager state: three v1 hierarchies and cgroup2, the
    container at pod/c1; `pod` made by us (planned) unless `preexisting`."""
    paths: dict[str, str] = {}
    mounts: dict[str, str] = {}
    planned: list[str] = []
    created: list[str] = []
    for c in ("devices", "freezer", "memory", ""):
        mnt = root / (c or "unified")
        (mnt / "other").mkdir(parents=True)  # someone else's cgroup: never touched
        paths[c], mounts[c] = str(mnt / "pod" / "c1"), str(mnt)
        if preexisting:
            (mnt / "pod" / "c1").mkdir(parents=True)
        else:
            (mnt / "pod" / "c1").mkdir(parents=True)
            planned += [str(mnt / "pod"), str(mnt / "pod" / "c1")]
            created += [str(mnt / "pod"), str(mnt / "pod" / "c1")]
        if shared_parent:
            (mnt / "pod" / "c2").mkdir()  # another container below our parent
    mode = "hybrid"
    return {"version": 1, "mode": mode, "root": str(root), "paths": paths, "mounts": mounts,
            "created": created, "owned": owned, "planned": planned}  # fmt: skip


@pytest.mark.parametrize("owned", [True, False])
@pytest.mark.parametrize("preexisting", [True, False])
@pytest.mark.parametrize("shared_parent", [True, False])
def test_removes_what_destroy_removes(tmp_path: Path, owned: bool, preexisting: bool, shared_parent: bool) -> None:
    quick_root, manager_root = tmp_path / "q", tmp_path / "m"
    state_q = _layout(quick_root, owned=owned, preexisting=preexisting, shared_parent=shared_parent)
    state_m = _layout(manager_root, owned=owned, preexisting=preexisting, shared_parent=shared_parent)
    done = cgroup_rmdir.remove(state_q)
    if not done:
        cgroups.from_state(state_q).destroy()  # what operations._destroy does then
    cgroups.from_state(state_m).destroy()
    assert _tree(quick_root) == _tree(manager_root)
    assert all((quick_root / (c or "unified") / "other").is_dir() for c in ("devices", "freezer", "memory", ""))
    # the quick path finishes alone exactly when nothing was left that it cannot simply rmdir
    assert done == (not shared_parent or preexisting)


def test_pre_existing_dirs_of_a_create_that_failed_early_are_kept(tmp_path: Path) -> None:
    """Not owned, not made by us: neither destroy nor the quick path removes them."""
    state = _layout(tmp_path, owned=False, preexisting=True, shared_parent=False)
    assert cgroup_rmdir.remove(state)
    assert all(os.path.isdir(d) for d in state["paths"].values())


def test_busy_first_directory_leaves_everything_to_the_manager(tmp_path: Path) -> None:
    state = _layout(tmp_path, owned=True, preexisting=False, shared_parent=False)
    busy = Path(state["paths"]["freezer"]) / "child"  # a child cgroup: rmdir fails (ENOTEMPTY here)
    busy.mkdir()
    before = _tree(tmp_path)
    assert not cgroup_rmdir.remove(state)
    assert _tree(tmp_path) == before  # the directory telling "processes left" goes first


@pytest.mark.parametrize("bad", [{}, {"version": 2, "paths": {}}, {"version": 1, "paths": "x"},
                                 {"version": 1, "paths": {"": 3}, "created": "no"}])  # fmt: skip
def test_unusable_state_is_the_managers(bad: dict[str, Any]) -> None:
    assert cgroup_rmdir.remove(bad) is (bad.get("version") == 1 and isinstance(bad.get("paths"), dict))


def test_imports_only_posix() -> None:
    import subprocess
    import sys

    code = ("import sys; import ocipy.linux; before = set(sys.modules); import ocipy.linux.cgroup_rmdir; "
            "print(sorted(set(sys.modules) - before - {'ocipy.linux.cgroup_rmdir'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"  # posix is built in; not os, not the cgroup manager
