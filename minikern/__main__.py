"""``python -m minikern``: the command line (the ``minikern.cli`` package)."""

from __future__ import annotations

from minikern.cli import main

raise SystemExit(main())
