"""Run the child process for one lesson, bounded in every way, and collect what it sent.

The grader's process never imports student code. :func:`run_child` starts a fresh
interpreter (isolated mode, no site, scrubbed environment, its own session and process
group) on the lesson's package tree; ``jail.py`` locks it in (namespaces, chroot, limits,
its own user when the grader is root). The grader reads two pipes until the child ends or
the lesson's wall-clock timeout: the record channel (capped: beyond the cap the child is
killed) and the console output (the first 1 MiB kept, the rest dropped with a note). Then
every process the child left behind is killed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

__all__ = ["ChildRun", "Limits", "interpreter", "run_child"]

RECORD_CAP = 64 << 20
OUTPUT_CAP = 1 << 20
EXIT_GRACE = 0.5
SWEEP_WAIT = 5.0
"""Seconds to wait for a killed child's processes to be gone."""
"""Seconds to keep reading once the child itself has exited."""


@attrs.frozen
class Limits:
    """The child's limits (lessons.md: 2 GiB of address space, 64 processes, 64 MiB per
    file written; CPU seconds follow the lesson's wall-clock timeout)."""

    address_space: int = 2 << 30
    processes: int = 64
    file_size: int = 64 << 20
    open_files: int = 256


@attrs.frozen
class ChildRun:
    """What came back from one child: the record channel's bytes, the console output, and
    how it ended."""

    records: bytes
    output: str
    timed_out: bool
    overflow: bool
    exit_code: int | None
    seconds: float


def _base() -> tuple[str, str]:
    """The real interpreter under any venv and its prefix."""
    exe = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    return exe, os.path.realpath(sys.base_prefix)


def _world_readable(path: str) -> bool:
    """Can any user reach and read ``path`` (every directory above it searchable)?"""
    parts = Path(path).parts
    for i in range(1, len(parts) + 1):
        here = os.path.join(*parts[:i])
        try:
            if not os.stat(here).st_mode & 0o005:
                return False
        except OSError:
            return False
    return True


SKIP_STDLIB = (
    "site-packages",
    "dist-packages",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
)


def _portable(exe: str, prefix: str) -> tuple[str, str]:
    """A copy of the interpreter (binary, libpython, standard library) that any user can
    run, made once in the cache, for when the real one sits under a private home."""
    from lessons.lab.source import cache_dir

    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    key = hashlib.sha256(f"{exe}|{prefix}|{sys.version}".encode()).hexdigest()[:16]
    dest = cache_dir() / f"{version}-{key}"
    cache_dir().mkdir(parents=True, exist_ok=True)
    if not (dest / "bin" / version).exists():
        tmp = Path(tempfile.mkdtemp(prefix=".python-", dir=cache_dir()))
        (tmp / "bin").mkdir()
        shutil.copy2(exe, tmp / "bin" / version)
        (tmp / "lib").mkdir()
        for lib in Path(prefix, "lib").glob("libpython*.so*"):
            shutil.copy2(lib, tmp / "lib" / lib.name)
        shutil.copytree(
            Path(prefix, "lib", version),
            tmp / "lib" / version,
            symlinks=True,
            ignore=shutil.ignore_patterns(*SKIP_STDLIB),
        )
        for path in [tmp, *tmp.rglob("*")]:
            if not path.is_symlink():
                os.chmod(path, 0o755 if path.is_dir() or path.parent.name == "bin" else 0o644)
        try:
            tmp.rename(dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(dest / "bin" / version), str(dest)


def interpreter() -> str:
    """A real interpreter the child can run: the base one under a venv (never the venv's
    launcher: the child gets no site-packages at all), or, when the grader is root and
    that one is private (a mode-700 home), a copy any user can run."""
    return _child_python()[0]


def _child_python() -> tuple[str, str]:
    exe, prefix = _base()
    if os.getuid() == 0 and not (_world_readable(exe) and _world_readable(prefix)):
        return _portable(exe, prefix)
    return exe, prefix


def _binds() -> tuple[list[str], list[str]]:
    """Directories the jail shows read-only (interpreter, libraries) and the
    package directories inside them it covers up."""
    exe, prefix = _child_python()
    binds = [prefix, os.path.dirname(exe)]
    binds += ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache"]
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    hide = [
        f"{prefix}/lib/{version}/site-packages",
        f"{prefix}/lib/{version}/dist-packages",
        "/usr/lib/python3/dist-packages",
        f"/usr/lib/{version}/site-packages",
        f"/usr/lib/{version}/dist-packages",
    ]
    return [b for b in dict.fromkeys(binds) if os.path.exists(b)], hide


def _sandbox_uid() -> int:
    return 61000 + os.getpid() % 30000


def _owned_by(uid: int) -> list[int]:
    """Pids of the processes of ``uid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
    return found


def _sweep(uid: int) -> None:
    """Kill every process of the sandbox user and wait until they are gone (only
    possible, and needed, as root)."""
    if os.getuid() != 0:
        return
    deadline = time.monotonic() + SWEEP_WAIT
    while True:
        pid = os.fork()
        if pid == 0:  # pragma: no cover -- the forked killer
            try:
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        if not _owned_by(uid) or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _kill(proc: subprocess.Popen[bytes], extra: list[int]) -> None:
    for pid in extra:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_child(
    tree: Path,
    submission: Path | None,
    job: dict[str, Any],
    timeout_s: float,
    limits: Limits = Limits(),
    *,
    jail: bool = True,
) -> ChildRun:
    """Run ``tree``'s child on ``job`` with ``submission`` (a folder, or None)."""
    work = Path(tempfile.mkdtemp(prefix="minikern-lab-"))
    scratch, workdir = work / "root", work / "work"
    scratch.mkdir()
    workdir.mkdir()
    os.chmod(work, 0o755)
    os.chmod(workdir, 0o777)
    binds, hide = _binds()
    r, w = os.pipe()
    uid = _sandbox_uid()
    cfg = {
        "tree": str(tree),
        "submission": str(submission) if submission else None,
        "scratch": str(scratch),
        "workdir": str(workdir),
        "binds": binds,
        "hide": hide,
        "uid": uid,
        "mode": "auto" if jail else "none",
        "record_fd": w,
        "limits": {
            "cpu": int(timeout_s) + 2,
            "as": limits.address_space,
            "nproc": limits.processes,
            "fsize": limits.file_size,
            "nofile": limits.open_files,
        },
    }
    argv = [interpreter(), "-I", "-S", "-B", str(tree / "lessons" / "lab" / "jail.py")]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    exe, prefix = _child_python()
    if not exe.startswith(os.path.realpath(sys.base_prefix)):
        env["LD_LIBRARY_PATH"] = os.path.join(prefix, "lib")
    start = time.monotonic()
    proc = subprocess.Popen(
        [*argv, json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=(w,),
        start_new_session=True,
        env=env,
        cwd=str(workdir),
    )
    os.close(w)
    try:
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
        except OSError:
            pass
        result = _collect(proc, r, start + timeout_s)
    finally:
        os.close(r)
        _kill(proc, [])
        _sweep(uid)
        shutil.rmtree(work, ignore_errors=True)
    records, output, timed_out, overflow = result
    return ChildRun(records, output, timed_out, overflow, proc.returncode, time.monotonic() - start)


def _collect(
    proc: subprocess.Popen[bytes], record_fd: int, deadline: float
) -> tuple[bytes, str, bool, bool]:
    """Read both pipes until both close or the deadline passes."""
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()
    records = bytearray()
    output = bytearray()
    dropped = 0
    overflow = timed_out = False
    sel = selectors.DefaultSelector()
    sel.register(record_fd, selectors.EVENT_READ)
    sel.register(out_fd, selectors.EVENT_READ)
    open_fds = 2
    exited = 0.0
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        for key, _ in sel.select(timeout=min(left, 0.1)):
            chunk = os.read(int(key.fd), 1 << 16)
            if not chunk:
                sel.unregister(key.fd)
                open_fds -= 1
            elif key.fd == record_fd:
                records += chunk
                if len(records) > RECORD_CAP:
                    overflow = True
                    open_fds = 0
                    break
            else:
                room = OUTPUT_CAP - len(output)
                output += chunk[: max(room, 0)]
                dropped += max(len(chunk) - max(room, 0), 0)
        if open_fds and proc.poll() is not None:
            # the child is gone; something it left behind may hold the pipes open
            exited = exited or time.monotonic()
            if time.monotonic() - exited > EXIT_GRACE:
                break
    sel.close()
    text = output.decode("utf-8", "replace")
    if dropped:
        text += f"\n[... {dropped} more bytes of output dropped: at most 1 MiB is kept]\n"
    return bytes(records), text, timed_out, overflow
