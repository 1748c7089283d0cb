"""``python -m pytest_torchcompile``: the ``torchcompile-report`` command."""

from .cli import main

raise SystemExit(main())
