"""Registry credentials and the WWW-Authenticate challenge.

Credentials come, first match wins, from ``--creds USER:PASS``, ``--authfile``,
``$REGISTRY_AUTH_FILE``, ``$XDG_RUNTIME_DIR/containers/auth.json``, then
``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json`` (the ``auths``
map with base64 ``auth`` entries, keyed by host, ``https://host`` or a
``host/namespace`` prefix).  Credential helpers (``credsStore``) are not run.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re

from ocipy.errors import RegistryError

Credentials = tuple[str, str]


def parse_creds(value: str, flag: str = "--creds") -> Credentials:
    user, sep, password = value.partition(":")
    if not user:
        raise RegistryError(f"{flag}: expected USERNAME[:PASSWORD], got an empty username")
    return user, password


def _normalize_key(key: str) -> str:
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    key = key.rstrip("/")
    if key.endswith("/v1") or key.endswith("/v2"):
        key = key[:-3]
    if key in ("index.docker.io", "registry-1.docker.io"):
        key = "docker.io"
    return key


def _decode_entry(entry: object, path: str, key: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise RegistryError(f"auth file {path}: auths[{key!r}].auth: not base64 of user:password ({e})") from e
        user, sep, password = decoded.partition(":")
        if not sep or not user:
            raise RegistryError(f"auth file {path}: auths[{key!r}].auth: not base64 of user:password")
        return user, password
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return name, secret
    return None


def lookup_auth_file(path: str, host: str, repository: str = "") -> Credentials | None:
    """The credentials of ``path`` for ``host/repository``; None when it has none."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        return None
    except OSError as e:
        raise RegistryError(f"reading auth file {path}: {e.strerror}") from e
    except ValueError as e:
        raise RegistryError(f"auth file {path}: invalid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise RegistryError(f"auth file {path}: not a JSON object")
    auths = doc.get("auths") or {}
    if not isinstance(auths, dict):
        raise RegistryError(f"auth file {path}: 'auths' is not an object")
    # The most specific key wins: host/ns/repo, host/ns, host.
    full = f"{host}/{repository}" if repository else host
    best: tuple[int, Credentials] | None = None
    for key, entry in auths.items():
        norm = _normalize_key(str(key))
        if norm == full or full.startswith(norm + "/") or norm == host:
            creds = _decode_entry(entry, path, str(key))
            if creds is not None and (best is None or len(norm) > best[0]):
                best = (len(norm), creds)
    return best[1] if best else None


def default_auth_files() -> list[str]:
    files = []
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        files.append(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        files.append(os.path.join(xdg, "containers", "auth.json"))
    docker_config = os.environ.get("DOCKER_CONFIG")
    if docker_config:
        files.append(os.path.join(docker_config, "config.json"))
    files.append(os.path.join(os.path.expanduser("~"), ".docker", "config.json"))
    return files


def resolve_credentials(host: str, repository: str, creds: str | None = None,
                        authfile: str | None = None, flag: str = "--creds") -> Credentials | None:
    """Apply the precedence above for one registry host."""
    if creds:
        return parse_creds(creds, flag)
    if authfile:
        if not os.path.exists(authfile):
            raise RegistryError(f"--authfile {authfile}: no such file")
        return lookup_auth_file(authfile, host, repository)
    for path in default_auth_files():
        found = lookup_auth_file(path, host, repository)
        if found:
            return found
    return None


# RFC 7235: challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(,|$)')
_SCHEME = re.compile(rf"\s*,?\s*({_TOKEN})(?:\s+|$)")


def parse_www_authenticate(header: str) -> list[tuple[str, dict[str, str]]]:
    """Split a WWW-Authenticate value into (lowercased scheme, params) challenges."""
    out: list[tuple[str, dict[str, str]]] = []
    pos = 0
    n = len(header)
    while pos < n:
        m = _SCHEME.match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < n:
            p = _PARAM.match(header, pos)
            if not p:
                break
            # A following "Scheme param=" would also look like a param; stop at a new scheme.
            value = p.group(2)
            if value is not None:
                value = re.sub(r"\\(.)", r"\1", value)
            else:
                value = p.group(3)
            params[p.group(1).lower()] = value
            pos = p.end()
            if p.group(4) == "":
                break
            nxt = _SCHEME.match(header, pos)
            if nxt and not _PARAM.match(header, pos):
                break
        out.append((scheme, params))
        if pos < n and header[pos] == ",":
            pos += 1
    return out
