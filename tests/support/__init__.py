"""Helpers shared by the tests (builders, oracles, comparison code); imported as ``support.*``."""
