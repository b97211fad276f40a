"""Every Python example of README.md, docs/**/*.md and lessons/*/index.md runs
under ``make test`` (Sybil): a block with ``>>>`` prompts is a doctest whose
shown output must match, any other ``python`` block must run without error.
The examples of one page share a namespace, as they do in the browser runner,
and output is compared as the browser runner compares it. Because of that
namespace, ``make test`` distributes with ``--dist loadgroup`` and the scheduler
below keeps each page's examples on one worker, while every other test spreads
over both."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
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


ONE_WORKER = {
    "tests/docs/test_reference.py": "the built site",
    "tests/docs/test_site_browser.py": "the built site",
    "tests/lab/test_lab_engines.py": "tests/lab/test_lab_engines.py",
    "tests/lab/test_lab_hostile.py": "tests/lab/test_lab_hostile.py",
}
"""Test modules whose tests share something costly, kept on one worker like a page:
the tutorial site (built once, then one Chromium and its Pyodide), the Gradescope
run of the whole course, and the hostile submissions (each graded once for all the
tests that look at it)."""

LONG_FIRST = (
    "tests/property/test_hypercall_machine.py",
    "tests/property/test_recipe_machine.py",
    "tests/minikern/test_workload_machine.py",
    "tests/lab/test_lab_grading.py::test_verify_holds_for_every_lesson",
)
"""The suite's long poles, run first so that the two workers end together (xdist
hands out work in collection order once the groups above are out)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests named by ``LONG_FIRST`` to the front, in that order."""

    def rank(item: pytest.Item) -> int:
        hits = [i for i, prefix in enumerate(LONG_FIRST) if item.nodeid.startswith(prefix)]
        return hits[0] if hits else len(LONG_FIRST)

    items.sort(key=rank)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadgroup``: xdist's group scheduling, where the examples of
    one ``.md`` page also form one group (they share a namespace), so they run
    in order on one worker, and so does each group of ``ONE_WORKER``,
    while every other test spreads over both workers.

    (The pages are grouped here, by node id, rather than with ``xdist_group``
    marks: pytest-xdist 3.8 tags marked node ids through ``item._nodeid``,
    which pytest 9.2 no longer reads.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class PageGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if path.endswith(".md"):
                return path
            return ONE_WORKER.get(path) or super()._split_scope(nodeid)

    return PageGroupScheduling(config, log)
