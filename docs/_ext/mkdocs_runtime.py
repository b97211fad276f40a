"""The in-browser runner's runtime, vendored into the built site.

After an HTML build, ``_runtime/`` in the output holds everything a page needs
to run its examples with nothing fetched from elsewhere:

- ``pyodide/``: Pyodide's core files, from its npm package (``npm pack``);
- ``wheels/``: the pure-Python wheels ``hypervisor`` and ``minikern`` need
  (the versions installed in ``.venv``) and the project's own wheel, built here;
- ``runner.py``: the code that runs one example (``docs/_ext/pyrunner.py``);
- ``manifest.json``: what to load, in order.

Downloads are cached in ``.cache/docs/`` and copied only when they change,
so a rebuild costs little.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "docs"
PYODIDE_VERSION = "0.27.7"
PYODIDE_FILES = (
    "pyodide.js",
    "pyodide.asm.js",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
PACKAGES = ("hypervisor", "minikern", "lessons")
"""The project's packages that go into its wheel (those that exist)."""
BROWSER_ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.7",
    "sys_platform": "emscripten",
    "platform_system": "Emscripten",
    "os_name": "posix",
    "platform_machine": "wasm32",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}
"""Pyodide 0.27's environment, for evaluating dependency markers."""

log = logging.getLogger(__name__)


def pyodide_dir() -> Path:
    """Pyodide's core files, unpacked from its npm package (cached)."""
    target = CACHE / f"pyodide-{PYODIDE_VERSION}"
    if all((target / f).exists() for f in PYODIDE_FILES):
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    tgz = CACHE / f"pyodide-{PYODIDE_VERSION}.tgz"
    if not tgz.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("make docs needs npm to fetch Pyodide's npm package")
        subprocess.run(
            [npm, "pack", f"pyodide@{PYODIDE_VERSION}", "--silent", "--pack-destination", CACHE],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    target.mkdir(exist_ok=True)
    with tarfile.open(tgz) as tar:
        for name in PYODIDE_FILES:
            member = tar.getmember(f"package/{name}")
            source = tar.extractfile(member)
            assert source is not None
            (target / name).write_bytes(source.read())
    return target


def dependency_pins() -> list[str]:
    """``name==version`` of every distribution the project needs at run time in
    the browser, as installed in this environment (markers evaluated for Pyodide)."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    todo = [Requirement(r) for r in md.requires("minikern") or []]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate(BROWSER_ENV):
            continue
        name = req.name.lower().replace("_", "-")
        if name in pins:
            continue
        pins[name] = md.version(req.name)
        todo.extend(Requirement(r) for r in md.requires(req.name) or [])
    return sorted(f"{n}=={v}" for n, v in pins.items())


def dependency_wheels(pins: list[str]) -> list[Path]:
    """The pure-Python wheels of ``pins`` (downloaded once into the cache)."""
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = []
    missing = []
    for pin in pins:
        name, version = pin.split("==")
        stem = f"{name.replace('-', '_').lower()}-{version}-"
        match = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(stem)]
        (found.extend(match[:1]) if match else missing.append(pin))
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        cmd += ["--only-binary=:all:", "--dest", str(wheels), *missing]
        subprocess.run(cmd, check=True)
        return dependency_wheels(pins)
    for w in found:
        if not w.name.endswith("-none-any.whl"):
            raise RuntimeError(f"{w.name} is not a pure-Python wheel: Pyodide cannot load it")
    return sorted(found)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def project_wheel(dest: Path) -> Path:
    """The project's own wheel (its packages' ``.py`` files), written to ``dest``."""
    version = md.version("minikern")
    name = f"minikern-{version}-py3-none-any.whl"
    dist_info = f"minikern-{version}.dist-info"
    files: dict[str, bytes] = {}
    for package in PACKAGES:
        found = sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else []
        if package == "lessons":  # lesson.toml: the diagnosis pages load their lesson
            found += sorted((ROOT / package).glob("*/lesson.toml"))
        for path in found:
            files[str(path.relative_to(ROOT))] = path.read_bytes()
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: minikern\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in md.requires("minikern") or [])
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: docs/_ext/mkdocs_runtime.py\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [_record_line(n, d) for n, d in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out = dest / name
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as whl:
        for n, data in files.items():
            info = zipfile.ZipInfo(n, date_time=(2011, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(info, data)
    return out


def copy_if_changed(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` unless ``dst`` already has the same size and age."""
    if dst.exists():
        a, b = src.stat(), dst.stat()
        if a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime):
            return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def vendor(outdir: Path) -> dict[str, Any]:
    """Put the runtime into ``outdir/_runtime`` and return its manifest."""
    runtime = outdir / "_runtime"
    for name in PYODIDE_FILES:
        copy_if_changed(pyodide_dir() / name, runtime / "pyodide" / name)
    wheel_dir = runtime / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    deps = dependency_wheels(dependency_pins())
    for w in deps:
        copy_if_changed(w, wheel_dir / w.name)
    own = project_wheel(wheel_dir)
    wanted = {w.name for w in deps} | {own.name}
    for stale in wheel_dir.glob("*.whl"):
        if stale.name not in wanted:
            stale.unlink()
    shutil.copyfile(Path(__file__).with_name("pyrunner.py"), runtime / "runner.py")
    manifest = {
        "pyodide": "pyodide/pyodide.js",
        "wheels": [f"wheels/{w.name}" for w in deps] + [f"wheels/{own.name}"],
        "runner": "runner.py",
        "pyodide_version": PYODIDE_VERSION,
    }
    (runtime / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def on_build_finished(app: Sphinx, exception: BaseException | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    manifest = vendor(Path(app.outdir))
    count = len(manifest["wheels"])
    log.info("runtime: Pyodide %s and %d wheels in _runtime/", PYODIDE_VERSION, count)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("build-finished", on_build_finished)
    app.add_js_file("runner.js", defer="defer")
    app.add_css_file("runner.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
