"""The graded course: lesson folders (``lessons/<id>/``, data) and the grader (``lessons.lab``).

Lesson folders start with digits, so they are not importable packages: the grader reads
them as data (``lesson.toml``, ``index.md``, ``breaks/``, ``tests/``). See ``AUTHORING.md``.
"""

__all__: list[str] = []
