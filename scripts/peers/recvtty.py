#!/usr/bin/python3 -I
# Test-harness stand-in for runc's contrib recvtty (not part of ocipy).
import argparse, array, os, socket, sys, threading
p = argparse.ArgumentParser()
p.add_argument("--pid-file"); p.add_argument("--mode", default="single")
p.add_argument("--no-stdin", action="store_true"); p.add_argument("path")
a = p.parse_args()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(a.path); s.listen(16)
if a.pid_file:
    open(a.pid_file, "w").write(str(os.getpid()))
def get_fd(c):
    fds = array.array("i")
    msg, anc, _, _ = c.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
    for lvl, typ, data in anc:
        if lvl == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % 4])
    return fds[0] if fds else None
def drain(fd, out):
    while True:
        try:
            b = os.read(fd, 65536)
        except OSError:
            return
        if not b:
            return
        if out is not None:
            os.write(out, b)
while True:
    c, _ = s.accept()
    fd = get_fd(c); c.close()
    if fd is None:
        continue
    if a.mode == "null":
        threading.Thread(target=drain, args=(fd, None), daemon=True).start()
        continue
    if not a.no_stdin:
        def fwd():
            while True:
                b = os.read(0, 4096)
                if not b: return
                os.write(fd, b)
        threading.Thread(target=fwd, daemon=True).start()
    drain(fd, 1)
    break
