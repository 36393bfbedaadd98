"""diagnose: reads training logs and says what state a run is in and what to change."""

__version__ = "0.1.0"
