"""Build a small busybox root filesystem (from Debian's busybox-static).

Used by the tests' fixtures and by `make demo`:
    python tests/support/rootfs.py DIR
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

BUSYBOX = "/bin/busybox"


def build_busybox_rootfs(target: str) -> str:
    """Create DIR with /bin/busybox, a symlink per applet, /etc/passwd and /etc/group."""
    os.makedirs(target, exist_ok=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home", "var", "run"):
        os.makedirs(os.path.join(target, d), exist_ok=True)
    os.chmod(os.path.join(target, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(target, "bin/busybox"))
    applets = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        link = os.path.join(target, applet)
        if applet == "bin/busybox" or os.path.lexists(link):
            continue
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/bin/busybox", link)
    with open(os.path.join(target, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n"
                "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                "app:x:1000:1000:app:/home/app:/bin/sh\n")
    with open(os.path.join(target, "etc/group"), "w") as f:
        f.write("root:x:0:\ndaemon:x:1:\ntty:x:5:\nusers:x:100:app\napp:x:1000:\nnogroup:x:65534:\n")
    return target


if __name__ == "__main__":
    build_busybox_rootfs(sys.argv[1])
