"""Checkpoints written atomically (temp file + ``os.replace``): a crash never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from metarl.errors import CheckpointError

FORMAT = "metarl-checkpoint-v2"
"""v2: the algorithm is a config of its own and the inner rule's tensors are stored as ``rule``;
v1 files (the algorithm named by a field) are still read, and upgraded by the commands."""
READABLE = ("metarl-checkpoint-v1", FORMAT)


def write_atomically(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """``write(file)`` into a temporary ``<name>*.tmp`` beside ``path``, then renamed over it:
    readers see the old file or the whole new one, never half of one (checkpoints, results,
    caches). A killed write leaves the temporary file, which the next run may remove."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    return write_atomically(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (its ``checkpoint.pt``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train first, or pass a run directory "
                              "or a checkpoint.pt file")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = resolve(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}); it may "
                              "be corrupt, truncated or from another program") from e
    if not isinstance(state, dict) or state.get("format") not in READABLE:
        raise CheckpointError(f"{path} is not a metarl checkpoint (expected format {FORMAT})")
    return state
