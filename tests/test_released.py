"""The authors' released checkpoints: key tables checked key by key, loading that fails
naming the key, and `cdbench evaluate --weights` on the synthetic data recording the file's
SHA-256 and provenance under its own run name (benchmark/models/released.py).

The released key names are written out here from reading the authors' code (ClarissaDHL/BSFNet
`model/BSFNet.py` `SiameseNet`; GeoZcx's `pytorch version/DSIFN.py`, c90e13d), module by
module, independently of the prefix tables the module builds its tables from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import torchvision

from benchmark.cli import main
from benchmark.errors import CdbenchError
from benchmark.models import build_model
from benchmark.models.released import (
    CDBENCH_PROVENANCE,
    RELEASED_PROVENANCE,
    KeyTable,
    key_table,
    load_weights,
)
from benchmark.run import Trainable, build_trainable
from tests.data.tiny import write_params

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _entries(module: str, kind: str) -> list[str]:
    """State-dict entries of one released module: conv with bias, conv without, BN, PReLU."""
    names = {"conv": ("weight", "bias"), "conv_nobias": ("weight",), "bn": BN, "prelu": ("weight",)}
    return [f"{module}.{entry}" for entry in names[kind]]


def released_bsfnet_keys() -> list[str]:
    """The 726 entries of `SiameseNet().state_dict()` in model/BSFNet.py, as read there."""
    keys: list[str] = []
    for conv in ("conv1", "conv2"):  # spatial_path: convblock(conv without bias, bn)
        keys += _entries(f"basenet.spatial_path.{conv}.conv", "conv_nobias")
        keys += _entries(f"basenet.spatial_path.{conv}.bn", "bn")
    resnet = list(torchvision.models.resnet50().state_dict())  # context_path.features
    keys += [f"basenet.context_path.features.{key}" for key in resnet]
    # `self.conv1 = self.features.conv1`, ... (not fc): the same modules under a second name
    keys += [f"basenet.context_path.{key}" for key in resnet if not key.startswith("fc.")]
    keys += _entries("basenet.conv3x3_sx", "conv")
    for side in ("l", "r"):
        for index in ("1", "2"):
            keys += _entries(f"basenet.pam1.conv_{side}{index}", "conv")
            keys += _entries(f"basenet.pam1.bn_{side}{index}", "bn")
    for cam in ("cam1", "cam2"):
        keys += _entries(f"basenet.{cam}.conv", "conv") + _entries(f"basenet.{cam}.bn", "bn")
    for conv in ("conv1x1_cx1", "conv1x1_cx2", "bam.conv1x1_1", "bam.conv1x1_2", "bam.conv3x3_1"):
        keys += _entries(f"basenet.{conv}", "conv")
    keys += _entries("basenet.supervision1", "conv") + _entries("basenet.supervision2", "conv")
    keys += _entries("basenet.ffm.conv1", "conv") + _entries("basenet.ffm.conv2", "conv")
    for block in ("convblock", "final_conv"):
        keys += _entries(f"basenet.ffm.{block}.conv", "conv_nobias")
        keys += _entries(f"basenet.ffm.{block}.bn", "bn")
    keys += _entries("basenet.conv", "conv")
    return keys


def released_ifn_keys() -> list[str]:
    """The 232 entries of `DSIFN(vgg16_base(), vgg16_base()).state_dict()` (c90e13d)."""
    keys: list[str] = []
    vgg_convs = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # VGG16 features[:30]
    for base in ("t1_base", "t2_base"):
        for index in vgg_convs:
            keys += _entries(f"{base}.features.{index}", "conv")
    for k in range(1, 6):
        keys += _entries(f"sa{k}.conv1", "conv_nobias")
        keys += _entries(f"ca{k}.fc1", "conv_nobias") + _entries(f"ca{k}.fc2", "conv_nobias")
    keys += _entries("bn_ca1", "bn") + _entries("bn_ca2", "bn")
    blocks = {1: 2, 2: 3, 3: 3, 4: 3, 5: 3}
    for k, count in blocks.items():
        for j in range(1, count + 1):  # conv2d_bn: Sequential(conv, PReLU, BN, Dropout)
            keys += _entries(f"o{k}_conv{j}.0", "conv")
            keys += _entries(f"o{k}_conv{j}.1", "prelu")
            keys += _entries(f"o{k}_conv{j}.2", "bn")
        keys += _entries(f"bn_sa{k}", "bn")
        keys += _entries(f"o{k}_conv{count + 1}", "conv")  # the side output's 1x1 conv
        if k < 5:
            keys += _entries(f"trans_conv{k}", "conv")
    return keys


def released_state(table: KeyTable, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict with the released names: our model's tensors through the inverted table,
    aliases repeating their key, dropped entries filled with tensors of their released shape."""
    ours = model.state_dict()
    state = {key: ours[target].clone() for key, target in table.mapped.items()}
    state.update({key: state[repeated].clone() for key, repeated in table.aliases.items()})
    dropped_shapes = {"fc.weight": (1000, 2048), "fc.bias": (1000,), "weight": (16, 256, 1, 1)}
    for key in table.dropped:
        if key.startswith("basenet.supervision"):
            shape = (16, 256, 1, 1) if key.endswith("weight") else (16,)
        elif key.startswith("basenet.context_path.features.fc."):
            shape = dropped_shapes[key.removeprefix("basenet.context_path.features.")]
        elif key.startswith("ca1."):
            shape = (128, 1024, 1, 1) if "fc1" in key else (1024, 128, 1, 1)
        else:  # bn_ca1 (1024), bn_ca2 (1536)
            channels = 1024 if key.startswith("bn_ca1") else 1536
            shape = () if key.endswith("num_batches_tracked") else (channels,)
        state[key] = torch.zeros(shape)
    return state


@pytest.mark.parametrize(
    ("name", "expected", "counts"),
    [
        ("bsfnet", released_bsfnet_keys, {"mapped": 402, "aliases": 318, "dropped": 6}),
        ("ifn", released_ifn_keys, {"mapped": 194, "aliases": 26, "dropped": 12}),
    ],
)
def test_every_released_key_is_mapped_aliased_or_dropped(
    name: str, expected: object, counts: dict[str, int]
) -> None:
    model = build_model(name)
    table = key_table(name, model)
    released = expected()  # type: ignore[operator]
    assert len(released) == len(set(released)) == sum(counts.values())
    if name == "bsfnet":
        assert len(released) == 726  # the entries of the released file's net_CD state dict
    # Key by key: the table knows exactly the released keys, each once.
    assert sorted(table.released_keys()) == sorted(released)
    assert {k: v for k, v in table.coverage().items() if k != "total"} == counts
    # Every one of our keys is the target of exactly one released key.
    assert sorted(table.mapped.values()) == sorted(model.state_dict())
    # An alias repeats a mapped key; dropped keys say why.
    assert all(repeated in table.mapped for repeated in table.aliases.values())
    assert all(reason for reason in table.dropped.values())


def test_bsfnet_names_pair_up_as_in_the_authors_code() -> None:
    """Spot checks of the meaning of the mapping (a permuted table could still cover every key)."""
    table = key_table("bsfnet", build_model("bsfnet"))
    assert table.mapped["basenet.pam1.conv_l2.weight"] == "spatial_path.attention.left.2.weight"
    assert (
        table.mapped["basenet.pam1.bn_r1.running_var"]
        == "spatial_path.attention.right.1.running_var"
    )
    assert table.mapped["basenet.bam.conv1x1_1.weight"] == "bam.gate.weight"
    assert table.mapped["basenet.ffm.conv2.bias"] == "ffm.excite.bias"
    assert table.mapped["basenet.conv.weight"] == "head.weight"
    assert table.mapped["basenet.context_path.features.layer4.2.bn3.weight"] == (
        "encoder.resnet.layer4.2.bn3.weight"
    )
    assert table.aliases["basenet.context_path.layer3.0.conv1.weight"] == (
        "basenet.context_path.features.layer3.0.conv1.weight"
    )
    ifn = key_table("ifn", build_model("ifn"))
    assert ifn.mapped["t1_base.features.28.weight"] == "encoder.slices.4.28.weight"
    assert ifn.mapped["o1_conv3.weight"] == "stages.0.side.weight"
    assert ifn.mapped["o5_conv4.bias"] == "stages.4.side.bias"
    assert ifn.mapped["trans_conv1.weight"] == "upsamplers.0.weight"
    assert ifn.mapped["ca3.fc2.weight"] == "stages.2.channel_attention.mlp.2.weight"
    assert ifn.mapped["o2_conv3.1.weight"] == "stages.1.convs.2.1.weight"  # PReLU
    assert ifn.aliases["t2_base.features.5.bias"] == "t1_base.features.5.bias"


@pytest.mark.parametrize("name", ["bsfnet", "ifn"])
def test_a_released_state_dict_loads_every_weight(name: str, tmp_path: Path) -> None:
    source = build_model(name).eval()
    table = key_table(name, source)
    path = tmp_path / "released.pth"
    state = released_state(table, source)
    torch.save({"net_CD": state, "epoch": 120, "metric": 0.9} if name == "bsfnet" else state, path)

    trainable = Trainable(build_model(name), torch.nn.Identity())
    loaded = load_weights(path, name, trainable)
    assert loaded.provenance == RELEASED_PROVENANCE
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    ours = trainable.model.state_dict()
    for key, tensor in source.state_dict().items():
        assert torch.equal(ours[key], tensor), key
    if name == "bsfnet":
        assert loaded.details == {"released_epoch": 120, "released_metric": 0.9}
    pair = torch.rand(2, 2, 3, 32, 32)
    trainable.model.eval()
    with torch.no_grad():
        assert torch.equal(trainable.model(*pair).score, source(*pair).score)


def _save(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "bad.pth"
    torch.save({"net_CD": state, "epoch": 1, "metric": 0.0}, path)
    return path


def test_a_wrong_extra_or_missing_key_fails_naming_it(tmp_path: Path) -> None:
    model = build_model("bsfnet")
    table = key_table("bsfnet", model)
    good = released_state(table, model)
    trainable = Trainable(build_model("bsfnet"), torch.nn.Identity())

    extra = {**good, "basenet.supervision3.weight": torch.zeros(1)}
    with pytest.raises(CdbenchError, match=r"unknown key 'basenet\.supervision3\.weight'"):
        load_weights(_save(tmp_path, extra), "bsfnet", trainable)

    missing = {k: v for k, v in good.items() if k != "basenet.pam1.conv_l1.bias"}
    with pytest.raises(CdbenchError, match=r"missing key 'basenet\.pam1\.conv_l1\.bias'"):
        load_weights(_save(tmp_path, missing), "bsfnet", trainable)

    renamed = {("module." + k if k == "basenet.conv.weight" else k): v for k, v in good.items()}
    with pytest.raises(CdbenchError, match=r"unknown key 'module\.basenet\.conv\.weight'"):
        load_weights(_save(tmp_path, renamed), "bsfnet", trainable)

    reshaped = {**good, "basenet.conv.weight": torch.zeros(16, 16, 3, 3)}
    with pytest.raises(CdbenchError, match=r"'basenet\.conv\.weight' has shape \(16, 16, 3, 3\)"):
        load_weights(_save(tmp_path, reshaped), "bsfnet", trainable)

    alias = "basenet.context_path.layer1.0.conv1.weight"
    differing = {**good, alias: good[alias] + 1}
    with pytest.raises(CdbenchError, match=rf"key '{alias}' differs"):
        load_weights(_save(tmp_path, differing), "bsfnet", trainable)

    with pytest.raises(
        CdbenchError, match="a bsfnet checkpoint, but the experiment's model is 'ifn'"
    ):
        load_weights(
            _save(tmp_path, good), "ifn", Trainable(build_model("ifn"), torch.nn.Identity())
        )


def test_ifn_files_with_two_different_encoders_or_keras_weights_are_refused(tmp_path: Path) -> None:
    model = build_model("ifn")
    state = released_state(key_table("ifn", model), model)
    state["t2_base.features.0.weight"] = state["t2_base.features.0.weight"] + 1
    path = tmp_path / "dsifn.pth"
    torch.save(state, path)
    trainable = Trainable(build_model("ifn"), torch.nn.Identity())
    with pytest.raises(CdbenchError, match=r"'t2_base\.features\.0\.weight' differs"):
        load_weights(path, "ifn", trainable)
    keras = tmp_path / "best_model.h5"
    keras.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(CdbenchError, match=r"Keras \.h5 weights cannot be loaded"):
        load_weights(keras, "ifn", trainable)


def test_released_without_the_file_says_where_to_put_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, tmp_path / "prepared")
    code = main(["--params", str(params), "evaluate", "bsfnet-bce-synthetic", "--released"])
    assert code == 1
    error = capsys.readouterr().err
    assert "data/released/bsfnet-cdd-best.pth: no released bsfnet checkpoint there" in error
    assert "ClarissaDHL/BSFNet" in error and "password RSCD" in error


@pytest.mark.slow
def test_evaluate_weights_scores_a_released_file_apart_and_records_its_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from benchmark.config import load_params
    from benchmark.data.synth import generate_synthetic
    from tests.conftest import synth_config

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = tmp_path / "prepared"
    generate_synthetic(data / "synthetic", synth_config(size=64, train=4, val=4, test=4))
    params_path = write_params(tmp_path, data)
    params = load_params(params_path)
    experiment = params.experiment("bsfnet-bce-synthetic")
    recipe = params.recipes[experiment.recipe]
    source = build_trainable(experiment, recipe)
    table = key_table("bsfnet", source.model)
    weights = tmp_path / "bsfnet-cdd-best.pth"
    torch.save({"net_CD": released_state(table, source.model), "epoch": 7, "metric": 0.5}, weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()

    reports = tmp_path / "reports"
    argv = ["--params", str(params_path), "evaluate", "bsfnet-bce-synthetic"]
    assert main([*argv, "--reports", str(reports), "--weights", str(weights)]) == 0

    assert not (reports / "metrics" / "bsfnet-bce-synthetic.json").exists()  # no trained run
    metrics = json.loads((reports / "runs" / "bsfnet-bce-synthetic-released.json").read_text())
    assert metrics["run"] == "bsfnet-bce-synthetic-released"
    assert metrics["weights_sha256"] == digest
    assert metrics["weights_provenance"] == RELEASED_PROVENANCE
    assert metrics["weights"]["key_coverage"] == {
        "mapped": 402,
        "aliases": 318,
        "dropped": 6,
        "total": 726,
    }
    assert metrics["weights"]["released_epoch"] == 7
    assert 0 <= metrics["val_threshold/f1"] <= 1
    assert (reports / "per_image" / "bsfnet-bce-synthetic-released.csv").is_file()

    run = mlflow.MlflowClient().get_run(metrics["mlflow_run_id"])
    assert run.info.run_name == "bsfnet-bce-synthetic-released"
    assert run.data.tags["weights_sha256"] == digest
    assert run.data.tags["weights_provenance"] == RELEASED_PROVENANCE
    assert "test/fixed/f1" in run.data.metrics

    # Our own checkpoint through --weights: provenance "cdbench checkpoint", its own name.
    from benchmark import checkpoint

    ours = tmp_path / "best.pt"
    checkpoint.save_atomic({"model_and_loss": source.state_dict(), "step": 3}, ours)
    assert main([*argv, "--reports", str(reports), "--weights", str(ours), "--no-tracking"]) == 0
    mine = json.loads((reports / "runs" / "bsfnet-bce-synthetic-weights.json").read_text())
    assert mine["weights_provenance"] == CDBENCH_PROVENANCE
    assert mine["weights_sha256"] == hashlib.sha256(ours.read_bytes()).hexdigest()
    assert mine["selected_step"] == 3


def test_a_released_file_at_its_fixed_place_is_hash_checked_when_the_hash_is_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from benchmark.models import released

    monkeypatch.chdir(tmp_path)
    model = build_model("bsfnet")
    path = released.RELEASED["bsfnet"].path
    path.parent.mkdir(parents=True)
    torch.save({"net_CD": released_state(key_table("bsfnet", model), model)}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    trainable = Trainable(build_model("bsfnet"), torch.nn.Identity())

    wrong = dataclasses.replace(released.RELEASED["bsfnet"], sha256="0" * 64)
    monkeypatch.setitem(released.RELEASED, "bsfnet", wrong)
    assert released.released_path("bsfnet") == path
    with pytest.raises(CdbenchError, match=rf"SHA-256 {digest}, expected 0{{64}}"):
        load_weights(path, "bsfnet", trainable)
    right = dataclasses.replace(wrong, sha256=digest)
    monkeypatch.setitem(released.RELEASED, "bsfnet", right)
    assert load_weights(path, "bsfnet", trainable).sha256 == digest
