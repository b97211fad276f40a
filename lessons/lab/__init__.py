"""The lab and its grader: ``minikern lab …`` (see ``shared/design/lessons.md``).

Modules, bottom up:

- ``seam``: the lesson functions of the packages (names, references, installing a student's)
- ``testing``: what a lesson's test files are written with (workloads, checks)
- ``lessons``: loading ``lessons/<id>/lesson.toml`` and the tests beside it
- ``source``: reading, stripping and writing lesson functions as source (starters,
  solutions, the child's stripped package copy)
- ``jail`` / ``child`` / ``sandbox``: running student code in a locked-down child process
- ``grader``: one lesson graded from a trusted replay of what the child did
- ``results`` / ``report``: the result model and its console, Gradescope, PrairieLearn forms
- ``diagnosis``: the diagnosis track (instances made from identities, answers in TOML)
- ``cli``, ``bundle``, ``gradebook``: the command and the engines courses run it on

This ``__init__`` imports nothing, so that the child process loads only what it needs.
"""

__all__: list[str] = []
