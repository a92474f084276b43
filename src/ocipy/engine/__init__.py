"""The engine: what podman adds on top of the runtime for `ocipy image run`.

The runtime (ocipy.runtime) runs a container from a bundle, as runc does;
the engine prepares what a bundle alone does not give: networking
(engine/network.py), the options podman run takes (engine/options.py),
and the hooks that clean up after a container at delete (engine/hooks.py).
"""
