"""`ocipy --version`: runc's lines (version, commit, spec, then the libraries)."""

from __future__ import annotations

import os
import sys


def _commit() -> str:
    """`git describe` of the checkout ocipy runs from, else the package version."""
    from ocipy import __version__

    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.exists(os.path.join(os.path.dirname(source), ".git")):
        import subprocess

        try:
            out = subprocess.run(["git", "-C", source, "describe", "--always", "--dirty", "--tags"],
                                 capture_output=True, text=True, timeout=5, check=False)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return __version__


def _libseccomp() -> str | None:
    try:
        from ocipy.linux import seccomp

        return seccomp.library_version()
    except Exception:  # noqa: BLE001 - no libseccomp: the line is left out, as runc built without it
        return None


def version_lines() -> list[str]:
    from ocipy import OCI_RUNTIME_SPEC_VERSION, __version__

    lines = [f"ocipy version {__version__}", f"commit: {_commit()}", f"spec: {OCI_RUNTIME_SPEC_VERSION}",
             f"python: {sys.version.split()[0]}"]  # fmt: skip
    seccomp = _libseccomp()
    if seccomp:
        lines.append(f"libseccomp: {seccomp}")
    return lines


def show() -> int:
    sys.stdout.write("\n".join(version_lines()) + "\n")
    return 0
