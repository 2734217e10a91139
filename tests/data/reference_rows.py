"""references.yaml rows for the tests of references and check: a demo row with a measured
spread (`spread_row`) and the same row without one (`plain_row`)."""

from __future__ import annotations

from typing import Any

SPREAD: dict[str, Any] = {
    "std": 4.0,
    "mean": 87.0,
    "min": 78.0,
    "max": 95.0,
    "runs": 6,
    "seeds": [0, 1, 2],
    "kernel_paths": ["default", "ONEDNN_MAX_CPU_ISA=AVX2"],
    "command": "scripts/measure_spread.sh",
}


def spread_row(**changes: Any) -> dict[str, Any]:
    """A demo row at F1 87 with the spread above (std 4) and no explicit tolerance."""
    row = {
        "model": "ifn",
        "loss": "ifn_ds",
        "dataset": "synthetic",
        "protocol": "val_threshold",
        "values": {"f1": 87.0},
        "spread": dict(SPREAD),
    }
    return {**row, **changes}


def plain_row() -> dict[str, Any]:
    """The same row without a spread."""
    return {k: v for k, v in spread_row().items() if k != "spread"}
