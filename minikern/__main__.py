"""``python -m minikern``: the command line (see ``minikern.cli``)."""

from __future__ import annotations

from minikern.cli import main

raise SystemExit(main())
