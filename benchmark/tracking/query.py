"""Read runs back from the tracking store as one table, and where the UI shows them at a
glance (`cdbench runs`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from benchmark.tracking.location import tracking_uri
from benchmark.tracking.store import prepare_tracking, use_tracking_uri

if TYPE_CHECKING:
    import pandas as pd

TABLE_TAGS = ("model", "loss", "dataset", "recipe", "seed", "stale_checkpoint")
"""Tags shown by `runs_table`, in this order, after the run name and status
(`stale_checkpoint`: "true" when `cdbench evaluate --allow-stale-checkpoint` scored a
checkpoint of another configuration, "false" once evaluated normally)."""


def runs_table(experiments: Sequence[str] | None = None, uri: str | None = None) -> pd.DataFrame:
    """One row per run: run name, status, the `TABLE_TAGS` and every `test/...` metric (rates
    in percent, as evaluation logs them: `benchmark.tracking.glance.evaluation_metrics`).

    Args:
        experiments: MLflow experiment names; every active experiment when None.
        uri: Tracking URI; `tracking_uri()` when None.

    Returns:
        Columns `run_name`, `status`, `model`, `loss`, `dataset`, `recipe`, `seed`,
        `stale_checkpoint` (None where a run lacks the tag), then the `test/...` metrics
        sorted by name (NaN where a run lacks one); rows sorted by run name, then start time.
    """
    import mlflow
    import pandas as pd

    uri = uri if uri is not None else tracking_uri()
    prepare_tracking(uri)
    with use_tracking_uri(uri):
        found = mlflow.search_runs(
            experiment_names=list(experiments) if experiments is not None else None,
            search_all_experiments=experiments is None,
            output_format="pandas",
        )
    assert isinstance(found, pd.DataFrame)  # output_format="pandas"
    missing = pd.Series(None, index=found.index, dtype=object)
    metric_columns = sorted(c for c in found.columns if c.startswith("metrics.test/"))
    table = pd.DataFrame(
        {
            "run_name": found.get("tags.mlflow.runName", missing),
            "status": found.get("status", missing),
            **{tag: found.get(f"tags.{tag}", missing) for tag in TABLE_TAGS},
            **{c.removeprefix("metrics."): found[c] for c in metric_columns},
            "_start": found.get("start_time", missing),
        },
        index=found.index,
    )
    table = table.sort_values(["run_name", "_start"], kind="stable").drop(columns="_start")
    return table.reset_index(drop=True)


def format_runs_table(table: pd.DataFrame) -> str:
    """`runs_table` as plain text (metrics with 4 decimals, "-" where a value is missing), or
    "(no runs)" when empty."""
    if table.empty:
        return "(no runs)"
    text_columns = [c for c in ("run_name", "status", *TABLE_TAGS) if c in table.columns]
    filled = table.fillna(dict.fromkeys(text_columns, "-"))
    return filled.to_string(index=False, float_format=lambda x: f"{x:.4f}", na_rep="-")


def headline_links(
    experiments: Sequence[str] | None = None, uri: str | None = None
) -> dict[str, str]:
    """Experiment name -> the address of its runs table in the headline view
    (`benchmark.tracking.glance.headline_view_link`), for each of `experiments` (every active
    one when None) that holds the view, on `glance.ui_address(uri)`."""
    from mlflow import MlflowClient

    from benchmark.tracking.glance import VIEW_TAG, headline_view_link, ui_address

    uri = uri if uri is not None else tracking_uri()
    prepare_tracking(uri)
    client = MlflowClient(uri)
    found = client.search_experiments()
    ui = ui_address(uri)
    return {
        e.name: headline_view_link(e.experiment_id, ui)
        for e in sorted(found, key=lambda e: e.name)
        if VIEW_TAG in e.tags and (experiments is None or e.name in experiments)
    }
