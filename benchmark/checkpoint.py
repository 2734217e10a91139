"""Checkpoints: written atomically, read with `torch.load(weights_only=True)`.

A training checkpoint (`last.pt`) holds everything a resumed run needs to continue exactly:
model and loss parameters, optimiser and scheduler state, the step, the torch (CPU and CUDA)
and Python RNG states, the best validation score so far, the metric history, the MLflow run id
and the resolved configuration with its digest. `best.pt` holds the selected model only.
Files are written to a temporary name in the same folder, flushed to disk and renamed, so a
kill -9 at any moment leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import CdbenchError

FORMAT = 1
"""Bumped when the checkpoint layout changes; older checkpoints are refused by name."""


def config_digest(config: dict[str, Any]) -> str:
    """sha256 of the resolved configuration that determines a run's result."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a (small) file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """torch.save to `path` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(scratch, "wb") as handle:
        torch.save({"format": FORMAT, **payload}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(scratch, path)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_atomic` (weights_only=True: no code is unpickled)."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CdbenchError(
            f"{path}: not a readable cdbench checkpoint ({exc}); delete it to start afresh"
        ) from exc
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != FORMAT:
        raise CdbenchError(
            f"{path}: checkpoint format {found}, expected {FORMAT}; delete it to start afresh"
        )
    checked: dict[str, Any] = payload
    return checked


def finite_weights(state_dict: dict[str, Any]) -> bool:
    """Whether every floating-point tensor of a state dict is finite (one device sync): a
    checkpoint of a diverged run holds NaN or inf weights and must not be saved or resumed."""
    checks = [
        torch.isfinite(tensor).all()
        for tensor in state_dict.values()
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
    ]
    return bool(torch.stack(checks).all()) if checks else True


def rng_state() -> dict[str, Any]:
    """The RNG states a resumed run restores: torch CPU, every CUDA device, Python."""
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved (CUDA states only when the device count matches)."""
    torch.set_rng_state(state["torch"])
    cuda = state["cuda"]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def clean_scratch(folder: Path) -> None:
    """Remove temporary files left by a writer killed mid-save."""
    for scratch in folder.glob(".*.tmp"):
        scratch.unlink(missing_ok=True)
