"""Shared pytest settings. Area-specific fixtures live in tests/fixtures_*.py modules."""

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
