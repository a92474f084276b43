"""``ocipy image run``: an image from the store (pulled first if need be) run as a container.

:func:`prepare` takes the steps, in order (each undone on failure):

1. check everything the user gave (options, ports, the id: a container that
   exists is refused here, before any work);
2. under the store's shared lock: find the image (a store name, or pull any
   reference per the pull policy), unpack missing layer snapshots, create
   the container's directory in the store (owner.json names the chain ids,
   so prune keeps them);
3. mount its rootfs (overlayfs of the snapshots + its own upper dir);
4. write config.json: the image's config (conversion.md), then podman run's
   options, the network's hooks and the poststop hook that unmounts and
   removes the directory at ``ocipy delete``.

Then :func:`run` runs it (foreground, ``--rm`` deletes it; or detached) and
:func:`create` hands back the created container.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ocipy.errors import ImageError

__all__ = ["Prepared", "create", "prepare", "run"]


class Prepared:
    """A container's directory in the store, its bundle written, no container yet."""

    __slots__ = ("container_id", "root", "bundle", "stdin", "_dir")

    def __init__(self, container_id: str, root: str, bundle: str, stdin: Any, cdir: Any) -> None:
        self.container_id, self.root, self.bundle, self.stdin, self._dir = container_id, root, bundle, stdin, cdir

    def kept(self) -> None:
        """Its container exists now: `ocipy delete` (the poststop hook) removes the directory."""
        self._dir.release()

    def discard(self) -> None:
        """No container will use it: unmount and remove it (idempotent)."""
        self._dir.remove()


def prepare(ref: str, args: list[str] | None = None, *, container_id: str | None = None, root: str | None = None,
            platform: str | None = None, storage: str | None = None, pull: str = "missing", options: Any = None,
            run_options: Any = None, network: str = "none", ports: list[str] | None = None,
            progress: Any = None, unpack_progress: Any = None) -> Prepared:  # fmt: skip
    """Steps 1-4 (the module docstring); `progress` and `unpack_progress` are
    ``(layer_digest, done, total)`` callbacks for a pull's download and unpack
    (:meth:`ocipy.storage.store.Store.pull`), both ended before the container's
    output starts."""
    from ocipy import api, fsutil
    from ocipy.engine import network as net
    from ocipy.engine.options import RunOptions, apply, check
    from ocipy.errors import ContainerExists
    from ocipy.image.conversion import runtime_config
    from ocipy.runtime.store import STATE_FILE, check_id
    from ocipy.storage import containers
    from ocipy.storage.store import PULL_POLICIES, Store, phase_done

    # 1. the user's input, all of it, before any work
    if pull not in PULL_POLICIES:
        raise ImageError(f"--pull {pull}: expected one of {', '.join(PULL_POLICIES)}")
    if network not in net.MODES:
        raise ImageError(f"--network {network}: expected one of {', '.join(net.MODES)}")
    forwards = [net.parse_port(p) for p in ports or []]
    opts = run_options if run_options is not None else RunOptions()
    if args:
        opts.args = list(args)
    check(opts)
    cid = container_id or f"ocipy-{os.urandom(6).hex()}"
    check_id(cid)
    state_root = os.path.abspath(root or api.DEFAULT_ROOT)
    if os.path.exists(os.path.join(state_root, cid, STATE_FILE)):
        raise ContainerExists(cid)
    store = Store(storage)

    # 2. the image, its snapshots and the container's directory
    with store.lock():
        containers.sweep(store.containers_path)  # what killed engines left: container dirs,
        store.snapshots.clean_temp()  # and half-made snapshots (a live unpack's are flock'd: kept)
        image = _image(store, ref, pull, platform, options, progress, unpack_progress)
        _manifest, image_config, chains = store.prepare(image, platform, unpack_progress)
        cdir = containers.ContainerDir.create(store.containers_path, cid, {
            "id": cid, "root": state_root, "image": image.name, "digest": image.digest, "chains": chains})
    phase_done(progress)
    phase_done(unpack_progress)
    try:
        # 3. the root filesystem
        rootfs = store.snapshots.mount(chains, cdir.path)
        # 4. config.json
        config = runtime_config(image_config, rootfs)
        apply(config, image_config, rootfs, opts)
        net.configure(config, network, forwards, cdir.path)
        config.setdefault("hooks", {}).setdefault("poststop", []).append(containers.removal_hook(cdir.path))
        # read by create at once; after a crash the container is gone and the directory swept: no fsync
        fsutil.write_file(os.path.join(cdir.path, "config.json"), json.dumps(config, indent=2).encode(), 0o644,
                          sync=False)
    except BaseException:
        cdir.remove()
        raise
    stdin = None if opts.interactive or opts.tty else api.DEVNULL
    return Prepared(cid, state_root, cdir.path, stdin, cdir)


def run(ref: str, args: list[str] | None = None, *, rm: bool = True, detach: bool = False,
        capture: bool = False, forward_signals: bool = False, **kw: Any) -> Any:
    """Run `ref` (see :func:`ocipy.api_image.run`): a :class:`ocipy.api.Result`
    in the foreground, the :class:`ocipy.api.Container` when detached."""
    from ocipy import api
    from ocipy.engine import network as net

    if detach and rm:
        raise ImageError("run: --rm with -d needs a monitor process, which ocipy does not keep: "
                         "run detached without --rm and `ocipy delete` it")
    p = prepare(ref, args, **kw)
    kept = False
    try:
        if detach:
            container = api.run(p.container_id, p.bundle, root=p.root, detach=True, stdin=p.stdin)
            kept = True
            return container
        try:
            result = api.run(p.container_id, p.bundle, root=p.root, keep=not rm, stdin=p.stdin,
                             capture=capture, forward_signals=forward_signals)  # fmt: skip
            kept = not rm
        finally:
            net.down(p.bundle)  # also when kept: the network goes with the program, as podman's
        return result
    finally:
        if kept:
            p.kept()
        else:
            p.discard()  # --rm's delete ran the hook already; failures need it here


def create(ref: str, args: list[str] | None = None, **kw: Any) -> Any:
    """Create (not start) a container of `ref`; the :class:`ocipy.api.Container`.
    Its ``delete()`` removes its directory from the store."""
    from ocipy import api

    p = prepare(ref, args, **kw)
    try:
        container = api.create(p.container_id, p.bundle, root=p.root, stdin=p.stdin)
    except BaseException:
        p.discard()
        raise
    p.kept()
    return container


def _image(store: Any, ref: str, pull: str, platform: str | None, options: Any, progress: Any,
           unpack_progress: Any) -> Any:
    """The stored image `ref` names, pulled first as the policy says (podman's
    --pull: a store name is pulled from its registry when missing; a layout
    or archive is read every time, which costs only what changed)."""
    from ocipy.content import reference
    from ocipy.storage.names import name_for, names_layout

    parsed = reference.parse(ref)
    local = parsed.transport != "docker" and (parsed.transport != "oci" or names_layout(parsed))
    if local:
        if pull == "never":
            found = store.find(name_for(parsed))
            if found is None:
                raise ImageError(f"image {ref!r}: not in the store and --pull never")
            return found
        return store.pull(ref, platform=platform, options=options, progress=progress,
                          unpack_progress=unpack_progress)
    text = ref if parsed.transport == "oci" else str(parsed.docker)
    found = None if pull == "always" else store.find(text)
    if found is not None and pull != "newer":
        return found
    if pull == "never":
        raise ImageError(f"image {ref!r}: not in the store {store.root} and --pull never")
    return store.pull(ref, platform=platform, options=options, progress=progress,
                          unpack_progress=unpack_progress)
