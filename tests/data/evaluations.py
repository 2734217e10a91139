"""Fabricated evaluations for the reporting tests: what `cdbench evaluate` writes for a run.

Each fabricated run is a set of per-image confusion counts; its metrics file is computed from
them with `Counts.scores`, exactly as `cdbench evaluate` pools them, so a test's expectations
can be worked out by hand from the counts. Its identity (experiment, model, loss, seed) comes
from a params.yaml written by `params_file`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmark.evaluation.metrics import Counts
from benchmark.evaluation.outputs import headline
from benchmark.evaluation.thumbnails import Thumbnails
from tests.conftest import RECIPE_CHOICES, write_repo_params

REPO = Path(__file__).resolve().parents[2]
PROTOCOLS = ("fixed", "val_threshold", "test_best_optimistic")


def write_run(
    reports: Path,
    run: str,
    experiment: str,
    seed: int,
    images: dict[str, list[tuple[int, int, int, int]]],
    whole: dict[str, list[tuple[int, int, int, int]]] | None = None,
) -> dict:
    """Fabricate what `cdbench evaluate` writes for one run: per-image counts per protocol
    (`images[protocol]`, one (tp, fp, fn, tn) per test image), the pooled metrics file, the
    curves file and one prediction strip."""
    model, rest = experiment.split("-", 1)
    loss = rest.split("-", 1)[0] if model == "bsfnet" else "ifn_ds"
    dataset = experiment.split("-", 2)[2]
    metrics: dict = {
        "run": run,
        "experiment": experiment,
        "model": model,
        "loss": loss,
        "dataset": dataset,
        "recipe": "demo",
        "seed": seed,
    }
    rows: list[dict] = []
    for prefix, view, table in (("", "tiles", images), ("whole_", "whole", whole or {})):
        names = [f"{view}_{i:03d}" for i in range(len(next(iter(table.values()), [])))]
        for i, name in enumerate(names):
            row = {"view": view, "name": name}
            for protocol in PROTOCOLS:
                row.update(
                    dict(
                        zip(
                            (f"{protocol}/{k}" for k in ["tp", "fp", "fn", "tn"]),
                            table[protocol][i],
                            strict=True,
                        )
                    )
                )
            rows.append(row)
        for protocol in PROTOCOLS if table else ():
            pooled = Counts(*np.sum(table[protocol], axis=0).tolist())
            metrics[f"{prefix}{protocol}/threshold"] = 0.5
            metrics.update({f"{prefix}{protocol}/{k}": v for k, v in pooled.as_dict().items()})
            metrics.update({f"{prefix}{protocol}/{k}": v for k, v in pooled.scores().items()})
    for folder in ("metrics", "runs", "per_image", "curves", "predictions"):
        (reports / folder).mkdir(parents=True, exist_ok=True)
    (reports / "runs" / f"{run}.json").write_text(json.dumps(metrics))
    (reports / "metrics" / f"{run}.json").write_text(json.dumps(headline(metrics)))
    pd.DataFrame(rows).to_csv(reports / "per_image" / f"{run}.csv", index=False)
    curve = {"threshold": [0.0, 0.5, 1.0], "precision": [0.1, 0.5, 1.0], "recall": [1.0, 0.5, 0.0]}
    curves = {
        "test": {**curve, "f1": [0.2, 0.5, 0.0]},
        "selected_step": 2,
        "training": [
            {"step": 1, "train/loss": 1.0, "val/f1": 0.2},
            {"step": 2, "train/loss": 0.5, "val/f1": 0.4},
        ],
    }
    (reports / "curves" / f"{run}.json").write_text(json.dumps(curves))
    label = np.zeros((1, 8, 8), np.uint8)
    label[:, :4] = 1  # top half changed
    Thumbnails(
        names=np.array(["test_0000"]),
        image_a=np.zeros((1, 8, 8, 3), np.uint8),
        image_b=np.full((1, 8, 8, 3), 255, np.uint8),
        label=label,
        prediction=np.full((1, 8, 8), seed % 2, np.uint8),
        score=np.full((1, 8, 8), 0.5 * (seed % 2), np.float16),
        threshold=0.5,
        score_kind="probability",
    ).save(reports / "predictions" / f"{run}.npz")
    return metrics


def params_file(folder: Path, seeds: dict[str, list[int]]) -> Path:
    """A params.yaml listing synthetic experiments `<model>-<loss>-synthetic` with `seeds`,
    all under a recipe named "demo" (as `write_run` labels its runs): the tests do not depend
    on the repository's demo, which is tuned separately."""
    recipe = {
        **RECIPE_CHOICES,
        "source": "tests",
        "optimizer": {"name": "adam", "lr": "1e-3"},
        "schedule": {"name": "constant"},
        "batch_size": 4,
        "iterations": 6,
        "val_every": 3,
        "pretrained": False,
    }
    experiments = {}
    for name, listed in seeds.items():
        model, rest = name.split("-", 1)
        loss = rest.split("-", 1)[0] if model == "bsfnet" else "ifn_ds"
        experiments[name] = {
            "model": model,
            "loss": loss,
            "dataset": "synthetic",
            "recipe": "demo",
            "seeds": listed,
        }
    return write_repo_params(
        folder / "params.yaml", recipes={"demo": recipe}, experiments=experiments
    )


def same_counts(counts: tuple[int, int, int, int], images: int = 4) -> dict:
    return {protocol: [counts] * images for protocol in PROTOCOLS}


def references_file(tmp_path: Path, rows: dict) -> Path:
    path = tmp_path / "references.yaml"
    path.write_text(yaml.safe_dump(rows))
    return path


def tamper(reports: Path, name: str, changes: dict[str, object]) -> None:
    """Edit fields of run record `name`.json in place (as a hand-edit would)."""
    path = reports / "runs" / f"{name}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def report_args(tmp_path: Path, params_path: Path, reports: Path) -> list[str]:
    return [
        "--params",
        str(params_path),
        "report",
        "--reports",
        str(reports),
        "--references",
        str(REPO / "references.yaml"),
        "--resamples",
        "20",
        "--no-tracking",
    ]


def demo_f1_reference(tmp_path: Path, f1: float) -> Path:
    """references.yaml with one demo row: bsfnet/sisb synthetic fixed F1 `f1`, tolerance 5."""
    row = {
        "model": "bsfnet",
        "loss": "sisb",
        "dataset": "synthetic",
        "protocol": "fixed",
        "values": {"f1": f1},
        "tolerance": 5.0,
    }
    return references_file(tmp_path, {"demo": [row]})
