"""One error tree for ocipy.

Every error a user can cause is an :class:`OcipyError`; the CLI prints its
message on one line and exits non-zero, never a traceback.  Messages that
container engines parse keep runc's wording ("container does not exist",
"container not running", "container with id exists").

The tree, by cause (``except`` the narrowest one you can handle)::

    OcipyError                      every error ocipy reports (.exit_code: the CLI's)
    ├── InvalidConfig (.field)      a config.json / process / resources field is bad
    │                               (ConfigError is the same class, its older name)
    ├── ContainerNotFound (.id)     no container with that id under the root
    ├── ContainerExists (.id)       create with an id that is taken
    ├── InvalidState                the operation is not allowed in the current status
    │   └── NotRunning (.id)
    ├── KernelError (.op, .path, .errno)   a system call failed
    ├── HookError                   a lifecycle hook failed
    ├── ImageError                  an image, layout, blob or layer is missing or bad
    └── RegistryError               a registry refused a request or sent bad content
"""

from __future__ import annotations


class OcipyError(Exception):
    """Base class of every error ocipy reports to a user."""

    exit_code = 1


class InvalidConfig(OcipyError):
    """A config.json (or other document) field is missing or invalid: `field`
    names it as a path (``process.args``, ``linux.resources.memory.limit``)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"invalid configuration: {field}: {problem}")  # runc's wording (scripts grep it)


ConfigError = InvalidConfig  # the older name: one class, so `except ConfigError` still catches it


class ContainerNotFound(OcipyError):
    """No container with this id under the state root."""

    def __init__(self, container_id: str) -> None:
        self.id = container_id
        super().__init__(f"container does not exist: {container_id}")


class ContainerExists(OcipyError):
    """A container with this id exists already."""

    def __init__(self, container_id: str) -> None:
        self.id = container_id
        super().__init__(f"container with id exists: {container_id}")


class InvalidState(OcipyError):
    """The operation is not allowed in the container's current status."""


class NotRunning(InvalidState):
    def __init__(self, container_id: str) -> None:
        self.id = container_id
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


# The distribution spec's error codes (its "Error Codes" table); a registry may send others.
DISTRIBUTION_ERROR_CODES = frozenset({
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
})


class RegistryError(OcipyError):
    """A registry refused a request, or returned something that fails verification.

    ``status`` is the HTTP status of the answer that failed, None when there
    was none (a connection error, a bad reference, a digest mismatch);
    ``codes`` are the error codes of the answer's distribution-spec error body
    (``MANIFEST_UNKNOWN``, ``UNAUTHORIZED``, ``DENIED``, ``TOOMANYREQUESTS``,
    ...) and ``code`` the first of them, None when the body has none.
    """

    def __init__(self, message: str, *, status: int | None = None,
                 codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes
        self.code = codes[0] if codes else None


class DigestError(ImageError, RegistryError):
    """Content does not match its descriptor (digest, size), or a digest is malformed.

    Both an image and a registry error: the one digest check
    (:mod:`ocipy.spec.digest`) serves layouts, archives and registries, and a
    caller of either side catches it as its own."""
