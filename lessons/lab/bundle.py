"""``minikern lab bundle``: the grader packed for the engine a course runs it on.

- ``gradescope OUT.zip``: ``setup.sh`` and ``run_autograder`` at the zip's root and the
  project's wheel under ``wheels/``. ``setup.sh`` installs Python 3.11 and the project
  into ``/opt/minikern`` (not under a mode-700 home); ``run_autograder`` grades
  ``/autograder/submission`` into ``/autograder/results/results.json``.
- ``prairielearn DIR``: the external grader's image context (``Dockerfile``,
  ``entrypoint``, ``wheels/``) and ``info.json`` settings; the entrypoint grades
  ``/grade/student`` into ``/grade/results/results.json``.
- ``github DIR``: ``.github/workflows/minikern-lab.yml``, grading each push; the run fails
  unless full marks, and the per-test table goes to the job summary.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

from lessons.lab.lessons import LESSONS_DIR

__all__ = ["GITHUB_WORKFLOW", "RUN_AUTOGRADER", "SETUP_SH", "build", "wheels"]

VENV = "/opt/minikern"

SETUP_SH = f"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if ! command -v python3.11 >/dev/null; then
    apt-get update
    apt-get install -y --no-install-recommends python3.11 python3.11-venv
fi
python3.11 -m venv {VENV}
{VENV}/bin/pip install --quiet --find-links "$HERE/wheels" "$HERE"/wheels/minikern-*.whl
"""

RUN_AUTOGRADER = f"""#!/usr/bin/env bash
# Gradescope runs this for every submission. The results file is written with score 0
# before any student code runs, and replaced at the end.
set -u
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PY="${{MINIKERN_PYTHON:-{VENV}/bin/python}}"
mkdir -p "$ROOT/results"
"$PY" -m minikern lab grade --submission "$ROOT/submission" --hidden \\
    --results "$ROOT/results/results.json" --format gradescope
exit 0
"""

PL_ENTRYPOINT = f"""#!/usr/bin/env bash
# PrairieLearn's external grader runs this in the image, with /grade mounted.
set -u
ROOT="${{GRADE_ROOT:-/grade}}"
PY="${{MINIKERN_PYTHON:-{VENV}/bin/python}}"
mkdir -p "$ROOT/results"
"$PY" -m minikern lab grade --submission "$ROOT/student" --hidden \\
    --results "$ROOT/results/results.json" --format prairielearn
exit 0
"""

DOCKERFILE = f"""FROM python:3.11-slim
COPY wheels /tmp/wheels
RUN python -m venv {VENV} \\
 && {VENV}/bin/pip install --no-cache-dir --find-links /tmp/wheels /tmp/wheels/minikern-*.whl \\
 && rm -rf /tmp/wheels
COPY entrypoint /minikern/entrypoint
RUN chmod 700 /minikern && chmod 755 /minikern/entrypoint
"""

GITHUB_WORKFLOW = """name: minikern lab
on: [push]
jobs:
  grade:
    runs-on: ubuntu-latest
    timeout-minutes: 20
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - run: python -m pip install --quiet .
      - name: grade
        run: python -m minikern lab grade --work lab --results results.json --format json
      - name: summary
        if: always()
        run: python -m lessons.lab.report results.json >> "$GITHUB_STEP_SUMMARY"
"""


PACKAGES = ("hypervisor", "minikern", "lessons")
DATA_SUFFIXES = (".py", ".toml", ".md")


def _project() -> dict[str, Any]:
    """The project table of pyproject.toml (or, in an installed copy, its metadata)."""
    path = LESSONS_DIR.parent / "pyproject.toml"
    if path.is_file():
        data: dict[str, Any] = tomllib.loads(path.read_text("utf-8"))
        return dict(data["project"])
    from importlib import metadata

    dist = metadata.distribution("minikern")
    return {
        "name": "minikern",
        "version": dist.version,
        "requires-python": dist.metadata["Requires-Python"] or ">=3.11",
        "dependencies": [r for r in dist.requires or [] if "extra ==" not in r],
        "scripts": {"minikern": "minikern.cli:main"},
    }


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def project_wheel(out: Path) -> Path:
    """The project as a pure-Python wheel, written directly (no build backend, no
    network): the three packages with every lesson's data, and the ``minikern`` script."""
    meta = _project()
    name, version = meta["name"], meta["version"]
    info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {}
    root = LESSONS_DIR.parent
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and path.suffix in DATA_SUFFIXES and "__pycache__" not in rel.parts:
                files[rel.as_posix()] = path.read_bytes()
    requires = "".join(f"Requires-Dist: {d}\n" for d in meta.get("dependencies", []))
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        f"Summary: {meta.get('description', '')}\n"
        f"Requires-Python: {meta.get('requires-python', '>=3.11')}\n{requires}"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: minikern-lab\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    scripts = meta.get("scripts", {})
    files[f"{info}/entry_points.txt"] = (
        "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
    ).encode()
    record = [_record_line(n, d) for n, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
    return path


def wheels(out: Path, deps: bool = True) -> list[Path]:
    """The project's wheel and, with ``deps``, its dependencies' wheels (downloaded with
    pip; without them ``setup.sh`` lets pip fetch them from the index)."""
    project_wheel(out)
    if deps:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d"]
        subprocess.run([*cmd, str(out), *_project().get("dependencies", [])], check=False)
    return sorted(out.glob("*.whl"))


def _script(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)


def gradescope(out: Path, deps: bool = True) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        found = wheels(Path(tmp) / "wheels", deps)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o100755 << 16
                z.writestr(info, text)
            for whl in found:
                z.write(whl, f"wheels/{whl.name}")
    return out


def prairielearn(out: Path, deps: bool = True) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    wheels(out / "wheels", deps)
    (out / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
    _script(out / "entrypoint", PL_ENTRYPOINT)
    info = {
        "externalGradingOptions": {
            "enabled": True,
            "image": "minikern-lab-grader",
            "entrypoint": "/minikern/entrypoint",
            "timeout": 300,
        }
    }
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out


def github(out: Path) -> Path:
    path = out / ".github" / "workflows" / "minikern-lab.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(GITHUB_WORKFLOW, encoding="utf-8")
    return path


def build(engine: str, out: Path, deps: bool = True) -> Path:
    if engine == "gradescope":
        return gradescope(out, deps)
    if engine == "prairielearn":
        return prairielearn(out, deps)
    return github(out)
