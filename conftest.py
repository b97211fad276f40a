"""Every Python example of README.md, docs/**/*.md and lessons/*/index.md runs
under ``make test`` (Sybil): a block with ``>>>`` prompts is a doctest whose
shown output must match, any other ``python`` block must run without error.
The examples of one page share a namespace, as they do in the browser runner,
and output is compared as the browser runner compares it. Because of that
namespace, ``make test`` hands whole files to its workers (``--dist loadfile``)."""

from __future__ import annotations

import sys
from pathlib import Path

from sybil import Sybil
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser

sys.path.insert(0, str(Path(__file__).parent / "docs" / "_ext"))

from pyrunner import FLAGS

pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(doctest_optionflags=FLAGS), SkipParser()],
    patterns=["*.md"],
    excludes=["_build/*", "_generated/*", ".venv/*", ".cache/*"],
    name="examples",
).pytest()
