"""curate: self-evolved diverse data sampling (DiverseEvol) for instruction tuning."""

__version__ = "0.1.0"
