"""``python -m gdbemu.cli``: the ``gdbemu`` command."""

from __future__ import annotations

from . import main

raise SystemExit(main())
