"""The report's tables (benchmark/reporting/tables.py), written through `cdbench report`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from tests.test_report import params_file, same_counts, write_run

REPO = Path(__file__).resolve().parents[1]


def test_report_says_which_loss_form_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    for loss, counts in (("sisb", (4, 1, 1, 10)), ("contrastive", (3, 2, 2, 9))):
        name = f"bsfnet-{loss}-synthetic"
        write_run(reports, name, name, 0, same_counts(counts))
    params_path = params_file(
        tmp_path, {"bsfnet-sisb-synthetic": [0], "bsfnet-contrastive-synthetic": [0]}
    )
    data = yaml.safe_load(params_path.read_text())
    data["experiments"]["bsfnet-contrastive-synthetic"]["loss_options"] = {"changed_weight": 10.0}
    params_path.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    args = ["--params", str(params_path), "report", "--reports", str(reports)]
    args += ["--references", str(REPO / "references.yaml"), "--resamples", "10", "--no-tracking"]
    assert main(args) == 0
    markdown = (reports / "comparison.md").read_text()
    ablation = markdown.split("## Loss ablation", 1)[1]
    assert "| synthetic | contrastive (changed ×10, released) " in ablation  # table rows
    assert "| synthetic | sisb (hard IoU, released) " in ablation
    assert "contrastive (changed ×10, released)" in (reports / "ablation.csv").read_text()
    assert r"contrastive (changed $\times$10, released)" in (reports / "ablation.tex").read_text()
    # and the plain form is named as such
    data["experiments"]["bsfnet-contrastive-synthetic"]["loss_options"] = {}
    params_path.write_text(yaml.safe_dump(data))
    assert main(args) == 0
    ablation = (reports / "comparison.md").read_text().split("## Loss ablation", 1)[1]
    assert "| synthetic | contrastive (plain) " in ablation
