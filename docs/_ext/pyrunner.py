"""Run one example of the docs the way the page shows it.

The same code runs in the reader's browser (Pyodide loads it as
``_runtime/runner.py``) and under ``make test``, so an example prints the same
text in both places.

A block written with ``>>>`` prompts runs like a doctest: each example is
compiled in ``single`` mode, so a bare expression shows its value, and an
exception is shown as doctest shows it (the traceback's first and last lines).
Any other block runs as a script. Every block of a page shares one namespace,
as the examples of a page do under ``make test``.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import traceback
from typing import Any

__all__ = ["FLAGS", "expected_output", "is_doctest", "matches_page", "run_example"]


def is_doctest(source: str) -> bool:
    """Does the block use ``>>>`` prompts?"""
    return source.lstrip().startswith(">>>")


def expected_output(source: str) -> str:
    """The output a doctest-style block shows (empty for a script block)."""
    if not is_doctest(source):
        return ""
    examples = doctest.DocTestParser().get_examples(source)
    return "".join(e.want if e.exc_msg is None else _traceback_want(e) for e in examples)


def _traceback_want(example: doctest.Example) -> str:
    return "Traceback (most recent call last):\n  ...\n" + (example.exc_msg or "")


def _exception_text(exc: BaseException) -> str:
    """How doctest shows an exception: header, ``...``, then the last line."""
    last = "".join(traceback.format_exception_only(type(exc), exc))
    return "Traceback (most recent call last):\n  ...\n" + last


def _run_one(code: str, mode: str, namespace: dict[str, Any], out: io.StringIO) -> bool:
    """Run ``code``; write what it prints (and any exception) to ``out``.
    Returns False when it raised."""
    try:
        compiled = compile(code, "<example>", mode)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compiled, namespace)
    except BaseException as exc:  # an example's error is its output
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        out.write(_exception_text(exc))
        return False
    return True


def run_example(source: str, namespace: dict[str, Any]) -> str:
    """Run one code block in ``namespace``; return everything it printed."""
    out = io.StringIO()
    if not is_doctest(source):
        _run_one(source, "exec", namespace, out)
        return out.getvalue()
    for example in doctest.DocTestParser().get_examples(source):
        _run_one(example.source, "single", namespace, out)
    return out.getvalue()


FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
"""How shown output is compared, here and under ``make test``."""


def matches_page(source: str, got: str) -> bool:
    """Is ``got`` what the page shows for this block (doctest's comparison)?
    A script block shows no output: anything it printed is fine, unless it raised."""
    if not is_doctest(source):
        return "Traceback (most recent call last):" not in got
    return doctest.OutputChecker().check_output(expected_output(source), got, FLAGS)
