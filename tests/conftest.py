"""The fixtures every test folder shares; they live in tests/support/fixtures.py.

Under pytest's default import mode this directory (tests/) is on sys.path, so
the helpers are imported as ``support.*`` from every folder (and from
benchmarks/, which puts tests/ on the path itself).
"""

from support.fixtures import build_guest, run_guest

__all__ = ["build_guest", "run_guest"]
