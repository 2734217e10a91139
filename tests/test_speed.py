"""`cdbench bench` (benchmark/speed/): timing helpers, the projection, the loaders, the command.

No test asserts a speed: the figures are measured by `cdbench bench` and written down in
reports/perf.md; these tests check what is measured and how it is computed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.config import load_params
from benchmark.data.cache import write_caches
from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.speed import loader as loaders
from benchmark.speed.bench import projection, render_perf
from benchmark.speed.measure import BASELINE, optimised, time_windows

REPO = Path(__file__).resolve().parents[1]


def test_time_windows_alternate_the_settings_and_report_the_median_window() -> None:
    calls: list[str] = []
    timings = time_windows(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        4,
        torch.device("cpu"),
        warmup=2,
        windows=3,
        steps_per_window=5,
    )
    # warm-up of each, then rounds a b / b a / a b of 5 calls each
    assert calls == ["a"] * 2 + ["b"] * 2 + ["a"] * 5 + ["b"] * 10 + ["a"] * 10 + ["b"] * 5
    for timing in timings.values():
        assert len(timing.windows) == 3
        assert timing.pairs_per_s == sorted(timing.windows)[1]


def test_settings_per_device() -> None:
    assert BASELINE.channels_last is False and BASELINE.fused is False
    cpu = optimised(torch.device("cpu"))
    # on the CPU nothing that changes the arithmetic (see benchmark/speed/measure.py)
    assert not (cpu.fused or cpu.channels_last or cpu.bf16 or cpu.compile)
    cuda = optimised(torch.device("cuda"))
    assert cuda.fused and cuda.channels_last and cuda.bf16 and cuda.compile


def test_peak_memory_on_the_cpu_sees_a_large_allocation() -> None:
    # In a fresh process: in a long-lived one the allocator may reuse memory it already holds,
    # which an RSS measurement cannot see (measure.py says so).
    code = (
        "import torch\n"
        "from benchmark.speed.measure import peak_memory\n"
        "with peak_memory(torch.device('cpu')) as peak:\n"
        "    block = torch.ones(64, 2**20, dtype=torch.uint8)\n"
        "    block.add_(1)\n"
        "print(peak[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert float(done.stdout.strip().splitlines()[-1]) >= 48


def test_projection_by_hand() -> None:
    params = load_params(REPO / "params.yaml")
    figures = {
        "settings": {
            "baseline": {"train_pairs_per_s": 10.0, "inference_pairs_per_s": 100.0},
            "optimised": {"train_pairs_per_s": 20.0, "inference_pairs_per_s": 200.0},
        }
    }
    rows = {r["experiment"]: r for r in projection(params, {"bsfnet": figures, "ifn": figures})}
    assert "bsfnet-sisb-synthetic" not in rows
    # ifn-ds-levir-cd (ifn-opencd): 40000 iterations of 8 = 320000 samples; validation every
    # 4000 -> 10 times the 64 whole val images (1024 tile equivalents); final evaluation: val +
    # test, tiles and whole images: 2 x (1024 + 2048) tile equivalents.
    # Each run of it costs that; its 3 seeds (params.yaml) cost 3 times as much.
    row = rows["ifn-ds-levir-cd"]
    assert row["steps"] == 40000 and row["train_samples"] == 320000
    assert row["seeds"] == 3
    expected = 3 * (320000 / 10 + (10 * 1024 + 2 * (1024 + 2048)) / 100) / 3600
    assert row["baseline_hours"] == pytest.approx(expected)
    assert row["optimised_hours"] == pytest.approx(expected / 2)
    # bsfnet-sisb-cdd (bsfnet-official): 200 epochs of 10000 // 4 steps, val every 5 epochs.
    row = rows["bsfnet-sisb-cdd"]
    assert row["steps"] == 200 * 2500
    text = render_perf(
        {"device": "test device", "torch": "x", "quick": True, "size": 64, "models": {},
         "loaders": [], "projection": list(rows.values())}
    )  # fmt: skip
    assert "## Projection on test device" in text and "NOT representative" in text
    assert "| device_augment_hours" not in text  # not measured: no column
    assert "for all its seeds (`seeds`: 3 each, 24 runs in all;" in text
    assert "Whole suite (8 experiments, 24 runs): " in text
    assert "--reproject" not in text  # measured, not recomputed
    # the photometric distortion the loop does on the device, at its own throughput, in both
    # settings of the recipe that has it (ifn-opencd) and no other
    augmented = {
        r["experiment"]: r
        for r in projection(params, {"bsfnet": figures, "ifn": figures}, {"ifn-opencd": 1000.0})
    }
    row = augmented["ifn-ds-levir-cd"]
    augment = 3 * 320000 / 1000 / 3600
    assert row["device_augment_hours"] == pytest.approx(augment)
    assert row["baseline_hours"] == pytest.approx(expected + augment)
    assert row["optimised_hours"] == pytest.approx(expected / 2 + augment)
    assert "device_augment_hours" not in augmented["bsfnet-sisb-cdd"]
    text = render_perf(
        {"device": "test device", "torch": "x", "quick": True, "size": 256, "models": {},
         "loaders": [], "projection": list(augmented.values())}
    )  # fmt: skip
    assert "| device_augment_hours" in text
    (total,) = [line for line in text.splitlines() if line.startswith("Whole suite (")]
    assert "device_augment" not in total  # already inside both settings' totals


def test_every_real_experiment_runs_at_least_three_seeds() -> None:
    """The suite's headline is a mean ± std over seeds: one seed is not a reproduction."""
    params = load_params(REPO / "params.yaml")
    real = {n: e for n, e in params.experiments.items() if e.dataset != "synthetic"}
    assert {e.dataset for e in real.values()} == {"cdd", "levir-cd"}
    few = {name: e.seeds for name, e in real.items() if len(set(e.seeds)) < 3}
    assert few == {}, f"experiments with fewer than 3 distinct seeds: {few}"


def test_reproject_recomputes_the_projection_from_perf_json(tmp_path: Path) -> None:
    """`cdbench bench --reproject`: the projection for the current params.yaml from the
    throughputs already in perf.json; every measured figure is kept as it was."""
    params = load_params(REPO / "params.yaml")
    entry = {"peak_memory_mib": 100.0, "fraction_of_bf16_peak": None}
    figures = {
        "model": "m", "batch_size": 4, "training_gflop_per_pair": 1.0,
        "settings": {
            "baseline": {**entry, "train_pairs_per_s": 3.0, "inference_pairs_per_s": 30.0},
            "optimised": {**entry, "train_pairs_per_s": 5.0, "inference_pairs_per_s": 70.0},
        },
    }  # fmt: skip
    loader = {
        "data": "stand-in",
        "augment": "none",
        "batch_size": 8,
        "workers": "main process",
        "training_loader_pairs_per_s": 900.0,
        "plain_pil_pairs_per_s": 90.0,
        "ratio": 10.0,
    }
    loaders_measured = [
        {**loader, "recipe": "ifn-opencd", "device_augment": "photometric distortion",
         "device_augment_pairs_per_s": 500.0},
        {**loader, "recipe": "bsfnet-official", "device_augment": None},
    ]  # fmt: skip
    stale = [{"experiment": "bsfnet-sisb-cdd", "seeds": 1, "baseline_hours": 1.0}]
    measured = {"device": "test device", "torch": "x", "quick": False, "size": 256,
                "models": {"bsfnet": figures, "ifn": figures}, "loaders": loaders_measured,
                "projection": stale}  # fmt: skip
    out = tmp_path / "reports"
    out.mkdir()
    (out / "perf.json").write_text(json.dumps(measured))
    assert main(["--params", str(REPO / "params.yaml"), "bench", "--reproject", "--out",
                 str(out)]) == 0  # fmt: skip
    result = json.loads((out / "perf.json").read_text())
    expected = projection(params, {"bsfnet": figures, "ifn": figures}, {"ifn-opencd": 500.0})
    assert result["projection"] == expected  # JSON keeps floats exactly
    assert result["projection"] != stale and {r["seeds"] for r in result["projection"]} == {3}
    assert result["reprojected"] is True
    assert {k: v for k, v in result.items() if k not in ("projection", "reprojected")} == {
        k: v for k, v in measured.items() if k != "projection"
    }
    markdown = (out / "perf.md").read_text()
    assert "Recomputed by `cdbench bench --reproject`" in markdown
    assert "Whole suite (8 experiments, 24 runs): " in markdown


def test_reproject_without_a_measurement_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--params", str(REPO / "params.yaml"), "bench", "--reproject", "--out"]
    assert main([*args, str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert f"{tmp_path / 'perf.json'}: not found" in error
    assert f"run `cdbench bench --out {tmp_path}` first" in error
    (tmp_path / "perf.json").write_text('{"device": "x"}')
    assert main([*args, str(tmp_path)]) == 1
    assert "not a perf.json written by `cdbench bench`" in capsys.readouterr().err


def test_plain_pil_loader_reads_the_same_pairs_as_the_dataset(tmp_path: Path) -> None:
    recipe = load_params(REPO / "params.yaml").recipes["demo"]
    folder = loaders.write_stand_in(tmp_path / "data", 64, recipe.batch_size)
    write_caches(tmp_path / "data", progress=False)
    plain = loaders.PlainPilPairs(folder)
    dataset = ChangeDetectionDataset(tmp_path / "data", "train")
    assert dataset.cache is not None
    for index in range(recipe.batch_size):
        assert torch.equal(plain[index]["image"], dataset[index]["image"])
        assert torch.equal(plain[index]["mask"], dataset[index]["mask"])
    real = loaders.training_loader(tmp_path / "data", recipe, workers=0)
    batch = next(iter(real))
    assert batch["image"].dtype == torch.uint8  # normalised later, on the device
    assert batch["image"].shape[1:] == (2, 3, recipe.crop, recipe.crop)
    rates = loaders.loader_throughput(real, batches=2, warmup=0, windows=2)
    assert len(rates) == 2 and min(rates) > 0
    with pytest.raises(ValueError, match="ran out of batches"):
        loaders.loader_throughput(loaders.training_loader(tmp_path / "data", recipe, 0, 2), 2, 0, 2)


def test_device_augmentation_is_timed_and_reported_beside_its_loader() -> None:
    rates = loaders.device_augment_throughput(torch.device("cpu"), 2, 32, batches=2, windows=2)
    assert len(rates) == 2 and min(rates) > 0
    row = {
        "recipe": "ifn-opencd", "data": "stand-in", "augment": "opencd", "batch_size": 8,
        "workers": "2 threads", "training_loader_pairs_per_s": 1100.0,
        "plain_pil_pairs_per_s": 17.0, "ratio": 64.7,
        "device_augment": "photometric distortion", "device_augment_pairs_per_s": 41.2,
    }  # fmt: skip
    plain = {**row, "recipe": "bsfnet-official", "device_augment": None}
    result = {"device": "test device", "torch": "x", "quick": True, "size": 256, "models": {},
              "loaders": [row, plain], "projection": []}  # fmt: skip
    text = render_perf(result)
    (line,) = [line for line in text.splitlines() if line.startswith("| ifn-opencd")]
    assert line.rstrip("| ").endswith("photometric distortion: 41 pairs/s")
    assert "applied by the training loop to each batch on the training device (here test" in text
    (line,) = [line for line in text.splitlines() if line.startswith("| bsfnet-official")]
    assert line.rstrip("| ").endswith("–")  # nothing on the device


def test_bench_command_writes_perf_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    args = ["--params", str(REPO / "params.yaml"), "bench", "--model", "bsfnet", "--device"]
    args += ["cpu", "--quick", "--size", "64", "--no-loaders", "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "perf.json").read_text())
    settings = result["models"]["bsfnet"]["settings"]
    assert set(settings) == {"baseline", "optimised"}
    for entry in settings.values():
        assert entry["train_pairs_per_s"] > 0 and entry["inference_pairs_per_s"] > 0
        assert len(entry["train_windows"]) == 3
        assert entry["fraction_of_bf16_peak"] is None  # no known peak on a CPU
    assert not settings["optimised"]["fused"] and not settings["optimised"]["channels_last"]
    assert result["models"]["bsfnet"]["training_gflop_per_pair"] > 0
    assert {row["experiment"] for row in result["projection"]} >= {"bsfnet-sisb-cdd"}
    markdown = (out / "perf.md").read_text()
    assert "## Models" in markdown and "`optimised` = no switch on" in markdown
    assert "ratio is this machine's noise" in markdown
    switched = {**settings["optimised"], "fused": True, "bf16": True, "compile": True}
    bsfnet = {**result["models"]["bsfnet"], "settings": {"optimised": switched}}
    cuda = {**result, "models": {"bsfnet": bsfnet}}
    assert "`optimised` = fused optimiser, bf16 autocast, torch.compile." in render_perf(cuda)
    assert "ratio is this machine's noise" not in render_perf(cuda)
