"""Build the tutorial site when it is stale, once, even with several test workers."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "docs" / "_build" / "html"
SOURCES = ("docs", "hypervisor", "minikern", "lessons", "README.md", "pyproject.toml")


def _newest_source() -> float:
    newest = 0.0
    for name in SOURCES:
        base = ROOT / name
        paths = [base] if base.is_file() else base.rglob("*") if base.is_dir() else []
        for p in paths:
            if "_build" in p.parts or "_generated" in p.parts or "__pycache__" in p.parts:
                continue
            if p.is_file():
                newest = max(newest, p.stat().st_mtime)
    return newest


def _stamp() -> Path:
    return SITE / ".built"


def is_fresh() -> bool:
    """Is the built site newer than every source it is made from?"""
    stamp = _stamp()
    return stamp.exists() and stamp.stat().st_mtime >= _newest_source()


def ensure_built() -> Path:
    """The built site, rebuilt (incrementally, as ``make docs`` does) if stale."""
    SITE.parent.mkdir(parents=True, exist_ok=True)
    with open(SITE.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_fresh():
            sphinx = Path(sys.executable).with_name("sphinx-build")
            cmd = [str(sphinx), "-W", "--keep-going", "-q", "docs", str(SITE)]
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise AssertionError(f"the docs do not build:\n{done.stderr[-4000:]}")
            _stamp().touch()
    return SITE
