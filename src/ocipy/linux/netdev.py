"""linux.netDevices: move host network devices into the container's network namespace.

The spec leaves the mechanism to the runtime; this uses iproute2 (`ip`,
`nsenter`), run by the parent once the container's network namespace exists.
Permanent global addresses are carried over and the device is set up, as
config-linux.md requires; the runtime never moves devices back (the kernel
returns physical devices to the host when the namespace goes away).
"""

from __future__ import annotations

import os

from ocipy.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass


def _run(argv: list[str], field: str) -> str:
    import subprocess

    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise ConfigError(field, f"{argv[0]} is needed to move network devices (Debian: iproute2, util-linux)") from None
    if proc.returncode != 0:
        raise ConfigError(field, f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def _permanent_global_addresses(device: str, field: str) -> list[tuple[str, str]]:
    """(family, "address/prefix") of the device's permanent addresses with global scope."""
    import json

    info = json.loads(_run(["ip", "-j", "addr", "show", "dev", device], field) or "[]")
    out = []
    for link in info:
        for addr in link.get("addr_info", []):
            # iproute2 marks addresses without IFA_F_PERMANENT as "dynamic"
            if addr.get("scope") == "global" and not addr.get("dynamic"):
                out.append((addr["family"], f"{addr['local']}/{addr['prefixlen']}"))
    return out


def _links_in(netns: str, field: str) -> set[str]:
    import json

    out = _run(["nsenter", f"--net={netns}", "ip", "-j", "link", "show"], field)
    return {link["ifname"] for link in json.loads(out or "[]")}


def move_devices(net_devices: dict[str, str], pid: int, has_own_netns: bool) -> None:
    """Move each device (host name -> name in the container) into the network
    namespace of `pid`, keep its addresses, set it up."""
    if not net_devices:
        return
    if not has_own_netns:
        raise ConfigError("linux.netDevices", "moving network devices needs the container's own network namespace")
    netns = f"/proc/{pid}/ns/net"
    for host_name, new_name in net_devices.items():
        field = f"linux.netDevices.{host_name}"
        if not os.path.exists(f"/sys/class/net/{host_name}"):
            raise ConfigError(field, f"there is no network device {host_name!r} on the host")
        addresses = _permanent_global_addresses(host_name, field)
        before = _links_in(netns, field) if "%d" in new_name else set()
        _run(["ip", "link", "set", "dev", host_name, "netns", str(pid), "name", new_name], field)
        if "%d" in new_name:  # the kernel picked the number
            new_name = next(iter(sorted(_links_in(netns, field) - before)), new_name)
        for family, address in addresses:
            flag = "-6" if family == "inet6" else "-4"
            _run(["nsenter", f"--net={netns}", "ip", flag, "addr", "add", address, "dev", new_name], field)
        _run(["nsenter", f"--net={netns}", "ip", "link", "set", "dev", new_name, "up"], field)
