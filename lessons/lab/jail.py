"""The child's first moments: lock itself in, then run the lesson (``child.main``).

Run by the grader as ``python -I -S -B <tree>/lessons/lab/jail.py CONFIG`` (standard
library only, before any student code exists in the process). In order:

1. New mount, PID, network and IPC namespaces (and a user namespace when not root). The
   process forks: the grandchild is PID 1 of the new PID namespace, so when it ends every
   process it left behind ends too, and the grader's process is out of its sight.
2. A new root on a tmpfs holding only the interpreter (read-only, its site-packages
   hidden), the shared libraries, the package tree (``/lab``, the lesson's functions
   stripped) and the submission (``/submission``), a writable ``/work`` and ``/tmp``;
   ``chroot`` into it. Nothing of the grader, the checkout or installed packages is there.
3. Resource limits (CPU, address space, processes, file size, open files), then a user of
   its own when it started as root.

Where namespaces are not allowed (some containers), step 1-2 are skipped and the child runs
as a separate user in a scratch directory (``mode`` says which happened).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None) -> None:
    enc = [None if s is None else s.encode() for s in (src, dst, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {dst}")


def _bind(src: str, dst: str, *, writable: bool = False) -> None:
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "a").close()
    _mount(src, dst, None, MS_BIND | MS_REC, None)
    if not writable:
        for extra in (MS_NOSUID | MS_NODEV, MS_NOSUID, 0):
            try:
                _mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | extra, None)
                return
            except OSError:
                continue


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _enter_namespaces(root_user: bool) -> None:
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC
    if not root_user:
        flags |= CLONE_NEWUSER
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")
    if not root_user:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")


def _become_pid1() -> None:
    """Fork; the parent waits and exits with the child's status, the child goes on."""
    pid = os.fork()
    if pid:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _build_root(cfg: dict[str, Any]) -> None:
    new = str(cfg["scratch"])
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    for rw in ("/work", "/tmp"):  # first: the binds below may lie inside them
        os.makedirs(new + rw, exist_ok=True)
        _mount("tmpfs", new + rw, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    for src in cfg["binds"]:
        if os.path.exists(src):
            _bind(src, new + src)
    for hidden in cfg["hide"]:
        if os.path.isdir(new + hidden):
            _mount("tmpfs", new + hidden, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
    _bind(str(cfg["tree"]), new + "/lab")
    if cfg.get("submission"):
        _bind(str(cfg["submission"]), new + "/submission")
    os.chroot(new)
    os.chdir("/work")


def _limits(limits: dict[str, int]) -> None:
    table = {
        "cpu": resource.RLIMIT_CPU,
        "as": resource.RLIMIT_AS,
        "nproc": resource.RLIMIT_NPROC,
        "fsize": resource.RLIMIT_FSIZE,
        "nofile": resource.RLIMIT_NOFILE,
    }
    for key, which in table.items():
        if key in limits:
            value = int(limits[key])
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError):
                hard = resource.getrlimit(which)[1]
                resource.setrlimit(which, (min(value, hard) if hard >= 0 else value, hard))


def _drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def enter(cfg: dict[str, Any]) -> str:
    """Lock the process in as ``cfg`` says; returns the mode it got
    (``"namespace"`` or ``"user"``/``"plain"`` when namespaces were refused)."""
    root_user = os.getuid() == 0
    mode = "plain"
    if cfg.get("mode") != "none":
        try:
            _enter_namespaces(root_user)
            _become_pid1()
            _build_root(cfg)
            mode = "namespace"
        except OSError:
            mode = "plain"
    if mode == "plain":
        os.chdir(str(cfg["workdir"]))
    _limits(cfg["limits"])
    if root_user:
        _drop_privileges(int(cfg["uid"]))
        mode = "user" if mode == "plain" else mode
    return mode


def main() -> None:
    cfg = json.loads(sys.argv[1])
    mode = enter(cfg)
    tree = "/lab" if mode == "namespace" else str(cfg["tree"])
    submission = "/submission" if mode == "namespace" else str(cfg.get("submission") or "")
    os.environ.clear()
    os.environ.update({"PATH": "/nonexistent", "HOME": os.getcwd(), "LANG": "C.UTF-8"})
    sys.path[:0] = [tree]
    from lessons.lab import child

    child.main(tree, submission, mode, int(cfg["record_fd"]))


if __name__ == "__main__":
    main()
