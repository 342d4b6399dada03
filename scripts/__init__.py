"""Command-line entry points: ``metarl-train`` and ``metarl-evaluate``."""
