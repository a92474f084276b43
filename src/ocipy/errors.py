"""One error tree for ocipy.

Every error a user can cause is an :class:`OcipyError`; the CLI prints its
message on one line and exits non-zero, never a traceback.  Messages that
container engines parse keep runc's wording ("container does not exist",
"container not running", "container with id exists").
"""

from __future__ import annotations


class OcipyError(Exception):
    """Base class of every error ocipy reports to a user."""

    exit_code = 1


class ConfigError(OcipyError):
    """A config.json (or other document) field is missing or invalid."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"invalid configuration: {field}: {problem}")  # runc's wording (scripts grep it)


class ContainerNotFound(OcipyError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container does not exist: {container_id}")


class ContainerExists(OcipyError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container with id exists: {container_id}")


class InvalidState(OcipyError):
    """The operation is not allowed in the container's current status."""


class NotRunning(InvalidState):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container not running: {container_id}")


class KernelError(OcipyError):
    """A system call failed: names the operation, the path and the errno."""

    def __init__(self, op: str, path: str | None, err: int) -> None:
        import posix

        self.op = op
        self.path = path
        self.errno = err
        where = f" {path}" if path else ""
        super().__init__(f"{op}{where}: {posix.strerror(err)} (errno {err})")


class HookError(OcipyError):
    pass


class ImageError(OcipyError):
    """An image, layout, blob or layer is missing, invalid or hostile."""


class RegistryError(OcipyError):
    """A registry refused a request, or returned something that fails verification."""
