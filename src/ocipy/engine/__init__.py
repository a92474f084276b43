"""The engine: what podman adds on top of the runtime for `ocipy image run`.

The runtime (ocipy.runtime) runs a container from a bundle, as runc does;
the engine prepares what a bundle alone does not give: the image from the
store with its root filesystem mounted (engine/run.py, over ocipy.storage),
the options podman run takes (engine/options.py), networking
(engine/network.py) and the OCI hooks that call back into ocipy
(engine/hooks.py).
"""
