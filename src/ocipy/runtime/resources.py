"""pause, resume, ps, events and update: the commands that act on a container's cgroups.

Each takes the state root and the container id (the Python API re-exports
them); the CLI in ``ocipy.cli.resources`` only parses flags and prints.
Error wording follows runc ("container not running", "container not paused").
"""

from __future__ import annotations

from collections.abc import Iterator

from ocipy.errors import ContainerNotFound, InvalidState, OcipyError
from ocipy.runtime import lifecycle, store

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any


class NotPaused(InvalidState):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container not paused: {container_id}")


def _manager(container: store.Container) -> Any:
    data = container.data.get("cgroup")
    if not data:
        raise OcipyError(f"container {container.id} has no cgroups")
    from ocipy.linux import cgroups

    return cgroups.from_state(data)


def pause(root: str, container_id: str) -> None:
    """Freeze every process of the container (runc allows running and created containers)."""
    with store.locked(root, container_id) as container:
        lifecycle.refuse_pause(container_id, container.status)
        _manager(container).freeze()


def resume(root: str, container_id: str) -> None:
    with store.locked(root, container_id) as container:
        lifecycle.refuse_resume(container_id, container.status)
        _manager(container).thaw()


def ps(root: str, container_id: str) -> list[int]:
    """The host pids of every process in the container's cgroup."""
    container = store.load(root, container_id)
    if not container.data.get("cgroup"):
        if not lifecycle.is_alive(container.status):
            return []
        return [container.pid] if container.pid else []
    return [int(p) for p in _manager(container).pids()]


def stats(root: str, container_id: str) -> dict[str, Any]:
    """One runc "stats" event: {"type": "stats", "id": ..., "data": types.Stats}."""
    container = store.load(root, container_id)
    if not lifecycle.can_inspect(container.status):
        raise OcipyError(f"container with id {container_id} is not running")
    return {"type": "stats", "id": container_id, "data": _manager(container).stats()}


def events(root: str, container_id: str, interval: float = 5.0) -> Iterator[dict[str, Any]]:
    """runc's event stream: a "stats" event every `interval` seconds and an "oom"
    event for each OOM kill, until the container stops."""
    import select
    import time

    container = store.load(root, container_id)
    if not lifecycle.can_inspect(container.status):
        raise OcipyError(f"container with id {container_id} is not running")
    manager = _manager(container)
    try:
        watcher = manager.oom_events()
    except OcipyError:
        watcher = None
    interval = max(interval, 0.01)
    next_stats = time.monotonic() + interval
    try:
        while True:
            now = time.monotonic()
            wait = max(0.0, min(next_stats - now, 0.5))
            fd = watcher.fileno() if watcher is not None else None
            if fd is not None:
                select.select([fd], [], [], wait)
            else:
                time.sleep(wait)
            if watcher is not None:
                try:
                    for _ in range(watcher.check()):
                        yield {"type": "oom", "id": container_id}
                except OSError:
                    pass
            try:
                alive = lifecycle.is_alive(store.load(root, container_id).status)
            except ContainerNotFound:
                alive = False
            if not alive:
                return
            if time.monotonic() >= next_stats:
                next_stats += interval
                try:
                    data = manager.stats()
                except OSError:
                    continue
                yield {"type": "stats", "id": container_id, "data": data}
    finally:
        if watcher is not None:
            watcher.close()


_MERGED = ("memory", "cpu", "pids", "blockIO", "network", "unified", "rdma")


def merge_resources(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` over `current`: objects are merged key by key, arrays replaced."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in current.items()}
    for key, value in patch.items():
        if key in _MERGED and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update({k: v for k, v in value.items() if v is not None})
        else:
            out[key] = value
    return out


def update(root: str, container_id: str, resources: dict[str, Any]) -> dict[str, Any]:
    """Change a container's limits (runc update) and save them in its state.

    Only what `resources` names is written, as runc writes only the values it
    is given (an unset or zero value leaves the cgroup file as it is); the
    saved config gets `resources` merged over what it had.  Keys are matched
    as runc's JSON decoding matches them (``CPU`` is ``cpu``), unknown ones
    ignored.  Device rules are not touched (runc neither).  Returns the new
    resources."""
    from ocipy import jsonfast
    from ocipy.spec.keys import fold_key
    from ocipy.spec.resources import parse_resources

    # A copy: the parse folds keys in place, and the caller's document is theirs.
    patch = jsonfast.loads(jsonfast.dumps(resources)) if isinstance(resources, dict) else resources
    if isinstance(patch, dict):
        for key in [k for k in patch if isinstance(k, str) and fold_key(k) == "devices"]:
            del patch[key]  # device rules are not updated (runc neither), nor checked
    parse_resources(patch)  # every field checked before the state is touched
    with store.locked(root, container_id) as container:
        if not container.data:
            raise ContainerNotFound(container_id)
        lifecycle.refuse_update(container_id, container.status)
        config = dict(container.config)
        linux = dict(config.get("linux") or {})
        # What create saved (a state from before the one parse may spell it differently).
        saved = next((v for k, v in linux.items() if fold_key(k) == "resources" and isinstance(v, dict)), {})
        current = jsonfast.loads(jsonfast.dumps(saved))
        parse_resources(current)
        merged = merge_resources(current, patch)
        mem = patch.get("memory")
        if isinstance(mem, dict) and mem.get("limit") == -1 and not mem.get("swap"):
            merged["memory"]["swap"] = -1  # lifted with the memory limit (see v1.set_memory)
        parse_resources(merged)
        _manager(container).set(parse_resources(patch))
        for key in [k for k in linux if k != "resources" and fold_key(k) == "resources"]:
            del linux[key]  # the differently cased spelling, now merged in
        linux["resources"] = merged
        config["linux"] = linux
        container.data["config"] = config
        container.save()
        return merged


__all__ = ["pause", "resume", "ps", "stats", "events", "update", "merge_resources", "NotPaused"]
