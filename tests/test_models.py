"""Tests of benchmark.models: the model table, BSFNet, IFN, pretrained weights, `cdbench models`.

CPU only, 64 x 64 inputs, batch 2. Pretrained encoders read their files from a weights folder
(a temporary one here); the tests plant randomly initialised state dicts named after their own
SHA-256 and point `benchmark.models.weights.RESNET50` / `VGG16` at them, so every load passes
the hash check for real. Downloads are made to fail loudly (training never downloads).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from benchmark.cli import main
from benchmark.errors import CdbenchError, ConfigError
from benchmark.models import (
    IFN,
    MODELS,
    BSFNet,
    ChangeOutput,
    build_model,
    check_model_options,
    model_options,
)
from benchmark.models import weights as weights_module
from benchmark.models.weights import WeightFile, vgg16_features

BATCH, SIZE = 2, 64

WEIGHT_FILES = {
    "bsfnet": (
        "RESNET50",
        "resnet50-0676ba61.pth",
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    ),
    "ifn": (
        "VGG16",
        "vgg16-397923af.pth",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
    ),
}
"""Each model's weight file (the constant of benchmark.models.weights, name, URL), by hand."""


def make_pair(seed: int = 0, batch: int = BATCH, size: int = SIZE) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    pair = torch.rand(2, batch, 3, size, size, generator=generator)
    return pair[0], pair[1]


def build(name: str, seed: int = 0, **options: object) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, **options)


def all_logits(output: ChangeOutput) -> Tensor:
    """A scalar depending on every output the model has (IFN's side heads included)."""
    parts = [output.score.mean()]
    if output.side_logits is not None:
        parts += [logit.mean() for logit in output.side_logits]
    return torch.stack(parts).sum()


class Run(NamedTuple):
    """A model after one training-mode forward and backward pass on `make_pair()`."""

    model: nn.Module
    output: ChangeOutput
    encoder_buffers_before: dict[str, Tensor]


def forward_backward(name: str, freeze_encoder: bool) -> Run:
    model = build(name, freeze_encoder=freeze_encoder).train()
    buffers = {key: value.clone() for key, value in model.encoder.named_buffers()}
    output = model(*make_pair())
    all_logits(output).backward()
    return Run(model, output, buffers)


@functools.cache
def unfrozen_run(name: str) -> Run:
    """Shared by several tests: CPU forward/backward passes are the slow part of this file."""
    return forward_backward(name, freeze_encoder=False)


@functools.cache
def frozen_run(name: str) -> Run:
    return forward_backward(name, freeze_encoder=True)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine two threads run these passes ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to download weights fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture(params=sorted(MODELS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


class TestEveryModel:
    """The contract every model of MODELS keeps."""

    def test_forward_shapes(self, name: str) -> None:
        output = unfrozen_run(name).output
        assert isinstance(output, ChangeOutput)
        assert output.score.shape == (BATCH, 1, SIZE, SIZE)
        assert torch.isfinite(output.score).all()

    def test_output_carries_exactly_what_the_model_declares(self, name: str) -> None:
        # The losses that fit a model are chosen from its declared `outputs` without running
        # it (benchmark.losses.check_pair), so the declaration must match the real output.
        assert unfrozen_run(name).output.carries() == MODELS[name].outputs

    def test_every_parameter_gets_a_gradient(self, name: str) -> None:
        # Every parameter takes part in some output: no dead modules were built, and the
        # unfrozen encoder learns.
        model = unfrozen_run(name).model
        unused = [key for key, p in model.named_parameters() if p.grad is None]
        assert unused == []
        first_conv = next(model.encoder.parameters())
        assert first_conv.grad.abs().sum() > 0

    def test_frozen_encoder_gets_no_gradient(self, name: str) -> None:
        model = frozen_run(name).model
        encoder = list(model.encoder.parameters())
        assert encoder and all(not p.requires_grad and p.grad is None for p in encoder)
        others = [p for key, p in model.named_parameters() if not key.startswith("encoder.")]
        assert others and all(p.grad is not None for p in others)

    def test_same_seed_same_model_and_output(self, name: str) -> None:
        first, second, other = build(name, seed=3), build(name, seed=3), build(name, seed=4)
        for (key, a), b in zip(
            first.state_dict().items(), second.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), key
        differs = [
            not torch.equal(a, b)
            for a, b in zip(first.state_dict().values(), other.state_dict().values(), strict=True)
        ]
        assert any(differs)
        pair = make_pair(batch=1, size=32)
        assert torch.equal(first.eval()(*pair).score, second.eval()(*pair).score)

    def test_inputs_of_different_shapes_are_rejected(self, name: str) -> None:
        model = unfrozen_run(name).model
        t0, _ = make_pair()
        with pytest.raises(ValueError, match=r"\(2, 3, 64, 64\) and \(2, 3, 32, 32\)"):
            model(t0, t0[..., :32, :32])

    def test_pretrained_without_file_names_file_url_folder_and_stage(
        self, name: str, tmp_path: Path
    ) -> None:
        _, file_name, url = WEIGHT_FILES[name]
        folder = tmp_path / "weights"
        with pytest.raises(CdbenchError) as caught:
            build_model(name, weights_dir=folder)
        message = str(caught.value)
        assert str(folder / file_name) in message and url in message
        assert "dvc repro weights" in message and "never downloads" in message
        assert not folder.exists()

    def test_pretrained_ignores_the_torch_hub_cache(
        self, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A valid file in torch.hub's cache (TORCH_HOME, tests/conftest.py) is not a fallback:
        # the weights folder is the one place read.
        constant, _, _ = WEIGHT_FILES[name]
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        assert "torch-home" in str(cache)  # the test's own TORCH_HOME
        monkeypatch.setattr(weights_module, constant, plant_weight_file(name, cache))
        with pytest.raises(CdbenchError, match="not found"):
            build_model(name, weights_dir=tmp_path / "weights")

    def test_pretrained_loads_planted_file(
        self, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        constant, _, _ = WEIGHT_FILES[name]
        file = plant_weight_file(name, tmp_path / "weights")
        monkeypatch.setattr(weights_module, constant, file)
        planted = torch.load(file.path(tmp_path / "weights"), weights_only=True)
        model = build_model(name, weights_dir=tmp_path / "weights")
        loaded = model.encoder.state_dict()
        used = {key: value for key, value in planted.items() if not is_classifier(key)}
        assert len(loaded) == len(used)
        for key, value in loaded.items():
            assert torch.equal(value, used[encoder_key_in_file(name, key)]), key


def is_classifier(key: str) -> bool:
    return key.startswith(("fc.", "classifier."))


def encoder_key_in_file(name: str, key: str) -> str:
    """torchvision's key in the weight file of a key of `model.encoder.state_dict()`."""
    if name == "bsfnet":
        return key.removeprefix("resnet.")
    # IFN: slices.<slice>.<index in features>.<weight|bias>; slicing keeps torchvision's indices
    _, _, index, kind = key.split(".")
    return f"features.{index}.{kind}"


def save_named_by_hash(folder: Path, stem: str, content: object) -> WeightFile:
    """Save `content` (a state dict, or raw bytes) as `<stem>-<sha256[:8]>.pth` in `folder`,
    torchvision's naming, and return the `WeightFile` describing it."""
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / f"{stem}.scratch"
    if isinstance(content, bytes):
        scratch.write_bytes(content)
    else:
        torch.save(content, scratch)
    prefix = hashlib.sha256(scratch.read_bytes()).hexdigest()[:8]
    file = WeightFile(url=f"https://weights.invalid/{stem}-{prefix}.pth", source=f"test {stem}")
    scratch.rename(file.path(folder))
    return file


def plant_weight_file(name: str, folder: Path) -> WeightFile:
    """Save randomly initialised torchvision weights in `folder`, named after their hash."""
    torch.manual_seed(123)
    if name == "bsfnet":
        state = torchvision.models.resnet50(weights=None).state_dict()
        return save_named_by_hash(folder, "resnet50", state)
    # The used part of a VGG16 file, plus one classifier entry (ignored when loading); the
    # real classifier would make a 528 MB test file.
    state = {f"features.{k}": v for k, v in vgg16_features(None).state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    return save_named_by_hash(folder, "vgg16", state)


def test_weight_files_are_torchvisions() -> None:
    for constant, file_name, url in WEIGHT_FILES.values():
        file = getattr(weights_module, constant)
        assert (file.name, file.url) == (file_name, url)
        assert file.sha256_prefix == file_name.split("-")[1].removesuffix(".pth")


class TestWeightFiles:
    """What loading refuses; each file planted is named after its own hash, so it passes the
    hash check and the later checks are reached."""

    @pytest.fixture
    def folder(self, tmp_path: Path) -> Path:
        return tmp_path / "weights"

    def use(self, monkeypatch: pytest.MonkeyPatch, file: WeightFile) -> None:
        monkeypatch.setattr(weights_module, "VGG16", file)

    def test_damaged_file_is_named(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        file = save_named_by_hash(folder, "vgg16", b"not a checkpoint")
        self.use(monkeypatch, file)
        path = file.path(folder)
        with pytest.raises(
            CdbenchError, match=re.escape(f"{path}: cannot read it as a PyTorch state dict")
        ):
            build_model("ifn", weights_dir=folder)

    def test_file_whose_hash_differs_from_its_name_is_refused(
        self, folder: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        file = plant_weight_file("ifn", folder)
        self.use(monkeypatch, file)
        path = file.path(folder)
        with path.open("r+b") as f:  # one flipped byte in the middle
            f.seek(path.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0xFF]))
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        with pytest.raises(CdbenchError) as caught:
            build_model("ifn", weights_dir=folder)
        message = str(caught.value)
        assert str(path) in message and file.sha256_prefix in message and actual in message
        assert "dvc repro weights" in message

    def test_file_lacking_entries_is_named(
        self, folder: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.use(
            monkeypatch,
            save_named_by_hash(folder, "vgg16", {"features.0.weight": torch.zeros(64, 3, 3, 3)}),
        )
        # 13 convs x (weight, bias) = 26 entries needed, 1 present
        with pytest.raises(CdbenchError, match=r"lacks 25 entries .*features\.0\.bias"):
            build_model("ifn", weights_dir=folder)

    def test_entry_of_wrong_shape_is_named(
        self, folder: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        state = {f"features.{k}": v for k, v in vgg16_features(None).state_dict().items()}
        state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
        self.use(monkeypatch, save_named_by_hash(folder, "vgg16", state))
        expected = (
            "entry features.0.weight has shape (64, 1, 3, 3), the encoder needs (64, 3, 3, 3)"
        )
        with pytest.raises(CdbenchError, match=re.escape(expected)):
            build_model("ifn", weights_dir=folder)


class TestBuildModel:
    def test_table_holds_both_models(self) -> None:
        assert {"bsfnet": BSFNet, "ifn": IFN} == MODELS

    def test_unknown_name_lists_valid_names(self) -> None:
        with pytest.raises(
            ConfigError, match=r"unknown model 'unet'; expected one of: bsfnet, ifn"
        ):
            build_model("unet")

    def test_unknown_option_is_named_and_valid_ones_listed(self) -> None:
        with pytest.raises(ConfigError) as caught:
            build_model("ifn", drop_out=0.5)
        message = str(caught.value)
        assert "drop_out" in message
        assert "dropout (default 0.0)" in message and "freeze_encoder (default True)" in message

    def test_check_model_options_names_the_option_and_the_model(self) -> None:
        check_model_options("ifn", {"dropout": 0.5, "freeze_encoder": False})  # valid: passes
        with pytest.raises(ConfigError) as caught:
            check_model_options("bsfnet", {"dropout": 0.5})
        message = str(caught.value)
        assert message.startswith("unknown option(s) dropout for model 'bsfnet'")
        assert "freeze_encoder (default False)" in message
        with pytest.raises(ConfigError, match=r"unknown model 'unet'; expected one of"):
            check_model_options("unet", {})

    def test_options_and_defaults(self) -> None:
        assert model_options("bsfnet") == {"freeze_encoder": False}  # weights_dir is not one
        assert model_options("ifn") == {"freeze_encoder": True, "dropout": 0.0}

    def test_bad_option_value_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\), got 1.5"):
            build_model("ifn", dropout=1.5)


# --- parameter counts derived by hand from the authors' architectures -------------------------


def conv(c_in: int, c_out: int, kernel: int | tuple[int, int], bias: bool = True) -> int:
    """Parameters of a Conv2d (or a ConvTranspose2d, same count) without groups."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return c_in * c_out * kh * kw + (c_out if bias else 0)


def bn(channels: int) -> int:
    """BatchNorm2d: a weight and a bias per channel (running statistics are buffers)."""
    return 2 * channels


def bottleneck(c_in: int, width: int, downsample: bool) -> int:
    """torchvision's ResNet Bottleneck: 1x1 -> 3x3 -> 1x1 (x4), each without bias + BN."""
    body = (
        conv(c_in, width, 1, bias=False) + bn(width)
        + conv(width, width, 3, bias=False) + bn(width)
        + conv(width, 4 * width, 1, bias=False) + bn(4 * width)
    )  # fmt: skip
    shortcut = conv(c_in, 4 * width, 1, bias=False) + bn(4 * width) if downsample else 0
    return body + shortcut


RESNET50_NO_FC = (
    conv(3, 64, 7, bias=False) + bn(64)  # stem: 9,536
    + bottleneck(64, 64, True) + 2 * bottleneck(256, 64, False)  # layer1: 215,808
    + bottleneck(256, 128, True) + 3 * bottleneck(512, 128, False)  # layer2: 1,219,584
    + bottleneck(512, 256, True) + 5 * bottleneck(1024, 256, False)  # layer3: 7,098,368
    + bottleneck(1024, 512, True) + 2 * bottleneck(2048, 512, False)  # layer4: 14,964,736
)  # fmt: skip

PAM_64 = 2 * (  # two branches: (1x7 64->32 + BN, 7x1 32->1 + BN) and the transposed one
    conv(64, 32, (1, 7)) + bn(32) + conv(32, 1, (7, 1)) + bn(1)
)
BSFNET_EXTRA = (
    conv(3, 64, 7, bias=False) + bn(64)  # spatial path, H/2
    + conv(64, 128, 7, bias=False) + bn(128)  # spatial path, H/4
    + conv(192, 64, 3)  # conv3x3_sx
    + PAM_64
    + conv(1024, 1024, 1) + bn(1024)  # CAM on layer3
    + conv(2048, 2048, 1) + bn(2048)  # CAM on layer4
    + conv(1024, 256, 1) + conv(2048, 256, 1)  # conv1x1_cx1, conv1x1_cx2
    + conv(256, 64, 1) + conv(64, 64, 1) + conv(64, 64, 3)  # BAM
    + conv(320, 64, 3, bias=False) + bn(64)  # FFM convblock
    + conv(64, 64, 1) + conv(64, 64, 1)  # FFM gate conv1, conv2
    + conv(64, 16, 3, bias=False) + bn(16)  # FFM final_conv
    + conv(16, 16, 1)  # head conv
)  # fmt: skip
# Left out as dead in the released code: resnet fc (2048*1000 + 1000) and two supervision
# convs conv(256, 16, 1) each; the released SiameseNet therefore has 32,415,294 parameters.

VGG16_FEATURES_30 = sum(
    conv(c_in, c_out, 3)
    for c_in, c_out in [
        (3, 64), (64, 64),  # block 1
        (64, 128), (128, 128),  # block 2
        (128, 256), (256, 256), (256, 256),  # block 3
        (256, 512), (512, 512), (512, 512),  # block 4
        (512, 512), (512, 512), (512, 512),  # block 5
    ]
)  # fmt: skip


def conv_block(c_in: int, c_out: int) -> int:
    """IFN conv block: conv3x3 with bias, PReLU (one parameter), BN."""
    return conv(c_in, c_out, 3) + 1 + bn(c_out)


def channel_attention(channels: int) -> int:
    """Shared MLP C -> C/8 -> C, 1x1 convs without bias."""
    return conv(channels, channels // 8, 1, bias=False) + conv(
        channels // 8, channels, 1, bias=False
    )


SPATIAL_ATTENTION = conv(2, 1, 7, bias=False)  # 98, one per stage


def side_output(channels: int) -> int:
    """The stage's BN, then a 1x1 conv to one channel."""
    return bn(channels) + conv(channels, 1, 1)


IFN_DECODER = (
    # stage 1 (1/16): no channel attention
    conv_block(1024, 512) + conv_block(512, 512) + SPATIAL_ATTENTION + side_output(512)
    + conv(512, 512, 2)  # ConvTranspose2d 512 -> 512
    # stage 2 (1/8)
    + channel_attention(1536) + conv_block(1536, 512) + conv_block(512, 256)
    + conv_block(256, 256) + SPATIAL_ATTENTION + side_output(256)
    + conv(256, 256, 2)
    # stage 3 (1/4)
    + channel_attention(768) + conv_block(768, 256) + conv_block(256, 128)
    + conv_block(128, 128) + SPATIAL_ATTENTION + side_output(128)
    + conv(128, 128, 2)
    # stage 4 (1/2)
    + channel_attention(384) + conv_block(384, 128) + conv_block(128, 64)
    + conv_block(64, 64) + SPATIAL_ATTENTION + side_output(64)
    + conv(64, 64, 2)
    # stage 5 (1/1)
    + channel_attention(192) + conv_block(192, 64) + conv_block(64, 32)
    + conv_block(32, 16) + SPATIAL_ATTENTION + side_output(16)
)  # fmt: skip
# Left out as unused (open-cd, CDLab): ca1 = channel_attention(1024), bn_ca1 = bn(1024),
# bn_ca2 = bn(1536): 267,264 parameters.


OPEN_CD_UNUSED = channel_attention(1024) + bn(1024) + bn(1536)  # ca1, bn_ca1, bn_ca2


def count(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class TestParameterCounts:
    def test_known_totals_of_the_torchvision_parts(self) -> None:
        assert RESNET50_NO_FC == 25_557_032 - (2048 * 1000 + 1000) == 23_508_032
        assert VGG16_FEATURES_30 == 14_714_688

    def test_bsfnet_matches_the_released_architecture(self) -> None:
        model = unfrozen_run("bsfnet").model
        assert count(model.encoder) == RESNET50_NO_FC
        assert count(model) == RESNET50_NO_FC + BSFNET_EXTRA == 30_358_070

    def test_ifn_matches_the_open_cd_architecture(self) -> None:
        model = frozen_run("ifn").model  # the default: encoder frozen
        assert count(model.encoder) == VGG16_FEATURES_30
        assert count(model) == VGG16_FEATURES_30 + IFN_DECODER == 35_727_549
        assert round(count(model) / 1e6, 2) == 35.73  # the size other papers cite
        assert count(model, trainable_only=True) == IFN_DECODER
        assert count(model) + OPEN_CD_UNUSED == 35_994_813  # open-cd's module, unused included


class TestBSFNet:
    def test_embeddings_are_unit_norm(self) -> None:
        e0, e1 = unfrozen_run("bsfnet").output.embeddings
        assert e0.shape == e1.shape == (BATCH, 16, SIZE, SIZE)
        ones = torch.ones(BATCH, SIZE, SIZE)
        assert torch.allclose(e0.norm(dim=1), ones, atol=1e-5)
        assert torch.allclose(e1.norm(dim=1), ones, atol=1e-5)

    def test_score_is_the_authors_distance_in_0_2(self) -> None:
        output = unfrozen_run("bsfnet").output
        assert output.score_kind == "distance"
        assert output.score.min() >= 0 and output.score.max() <= 2
        # The authors' evaluation: F.pairwise_distance (eps 1e-6) over each pixel's channels.
        e0, e1 = (e.detach().permute(0, 2, 3, 1).reshape(-1, 16) for e in output.embeddings)
        expected = F.pairwise_distance(e0, e1, p=2).reshape(BATCH, SIZE, SIZE)
        assert torch.allclose(output.score.detach()[:, 0], expected)

    def test_identical_dates_give_the_eps_distance(self) -> None:
        model = unfrozen_run("bsfnet").model.eval()
        t0, _ = make_pair(batch=1, size=32)
        score = model(t0, t0).score
        # ||0 + 1e-6 * ones(16)|| = 1e-6 * sqrt(16)
        assert torch.allclose(score, torch.full_like(score, 4e-6), atol=1e-9)

    def test_batch_of_one_in_training_says_why(self) -> None:
        model = unfrozen_run("bsfnet").model.train()
        with pytest.raises(ValueError, match=r"batch size 1.*CAM.*batch size >= 2"):
            model(*make_pair(batch=1, size=32))
        model.eval()
        assert model(*make_pair(batch=1, size=32)).score.shape == (1, 1, 32, 32)

    def test_odd_size_is_rejected(self) -> None:
        t0, t1 = make_pair(size=63)
        with pytest.raises(ValueError, match=r"divisible by 2 \(the head upsamples.*63 x 63"):
            unfrozen_run("bsfnet").model(t0, t1)

    def test_frozen_encoder_keeps_its_batchnorm_statistics(self) -> None:
        run = frozen_run("bsfnet")
        run.model.train()
        assert not run.model.encoder.training and run.model.context_path.training
        after = dict(run.model.encoder.named_buffers())
        assert all(
            torch.equal(after[key], value) for key, value in run.encoder_buffers_before.items()
        )
        # while the trunk's own BatchNorm did update in the same training-mode pass
        assert run.model.context_path.attention3.bn.num_batches_tracked.item() == 2


class TestIFN:
    def test_side_logits_from_1_16_to_full_resolution(self) -> None:
        output = unfrozen_run("ifn").output
        assert output.score_kind == "logit"
        sides = [logit.shape for logit in output.side_logits]
        assert sides == [(BATCH, 1, SIZE // f, SIZE // f) for f in (16, 8, 4, 2, 1)]
        assert output.score is output.side_logits[-1]
        # logits, not probabilities: random weights give values outside [0, 1]
        assert ((output.score < 0) | (output.score > 1)).any()

    def test_dropout_option(self) -> None:
        assert not any(isinstance(m, nn.Dropout) for m in frozen_run("ifn").model.modules())
        dropouts = [m for m in build("ifn", dropout=0.6).modules() if isinstance(m, nn.Dropout)]
        assert len(dropouts) == 2 + 4 * 3 and all(d.p == 0.6 for d in dropouts)

    def test_size_not_divisible_by_16_is_rejected(self) -> None:
        t0, t1 = make_pair(size=56)
        with pytest.raises(ValueError, match=r"divisible by 16.*56 x 56"):
            frozen_run("ifn").model(t0, t1)


def test_cdbench_models_prints_both_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "64x64" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert rows["bsfnet"][1:3] == [f"{30_358_070:,}", f"{30_358_070:,}"]
    assert rows["ifn"][1:3] == [f"{35_727_549:,}", f"{IFN_DECODER:,}"]
    for name in ("bsfnet", "ifn"):
        gmacs, gflops = float(rows[name][3]), float(rows[name][4])
        assert gmacs > 0 and gflops == pytest.approx(2 * gmacs, abs=0.01)


# --- fidelity: the released forward passes, restated op by op ---------------------------------
# Each function below transcribes the order of operations of the reference code
# (ClarissaDHL/BSFNet `model/BSFNet.py`; open-cd `opencd/models/backbones/ifn.py`, which CDLab's
# `src/models/ifn.py` matches), calling only the model's leaf layers (Conv2d, BatchNorm2d,
# PReLU, ConvTranspose2d, torchvision's ResNet/VGG layers). Wiring is restated here, not reused:
# concatenation order, upsampling mode and align_corners, the pooling inside each attention,
# where the sigmoid sits and which tensor the global tail is taken from. A model that drifted
# from the reference in any of these would give different numbers.


def randomise_batchnorm(model: nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters (eval mode uses them)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))


def released_bsfnet_embedding(model: BSFNet, image: Tensor) -> Tensor:
    """`SiameseNet`'s per-date output: BSFNet.forward, then F.normalize over channels."""
    sp, cp = model.spatial_path, model.context_path
    # spatial path: convblock (conv, BN, ReLU) twice; upsample H/4 -> H/2 with align_corners=True
    layer1 = F.relu(sp.down2[1](sp.down2[0](image)))
    layer2 = F.relu(sp.down4[1](sp.down4[0](layer1)))
    layer2_up = F.interpolate(layer2, size=layer1.shape[-2:], mode="bilinear", align_corners=True)
    sx = sp.fuse(torch.cat((layer1, layer2_up), dim=1))
    # PAM: conv, BN, conv, BN per branch, no ReLU; sum; sigmoid; multiply
    left, right = sp.attention.left, sp.attention.right
    x_l = left[3](left[2](left[1](left[0](sx))))
    x_r = right[3](right[2](right[1](right[0](sx))))
    sx = torch.sigmoid(x_l + x_r) * sx
    # context path: torchvision ResNet-50 stem and layers; tail = global mean of layer4
    r = model.encoder.resnet
    feature3 = r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(image)))))))
    feature4 = r.layer4(feature3)
    tail = torch.mean(torch.mean(feature4, 3, keepdim=True), 2, keepdim=True)

    def cam(module: nn.Module, x: Tensor) -> Tensor:  # avg-pool, 1x1 conv, BN, sigmoid
        return torch.sigmoid(module.bn(module.conv(F.adaptive_avg_pool2d(x, 1)))) * x

    cx1 = cp.reduce3(cam(cp.attention3, feature3))
    cx2 = cp.reduce4(cam(cp.attention4, feature4) + tail)
    cx1 = F.interpolate(cx1, size=sx.shape[-2:], mode="bilinear", align_corners=False)
    cx2 = F.interpolate(cx2, size=sx.shape[-2:], mode="bilinear", align_corners=False)
    cx = cx1 + cx2
    # BAM: reverse attention of the deep map on the shallow one, then 1x1 and 3x3
    bam = model.bam
    bout = bam.conv3(bam.conv1(sx * (1 - torch.sigmoid(bam.gate(cx)))))
    # FFM: cat(bout, cx), convblock, SE gate (avg-pool, 1x1, ReLU, 1x1, sigmoid), convblock
    ffm = model.ffm
    feature = F.relu(ffm.fuse[1](ffm.fuse[0](torch.cat((bout, cx), dim=1))))
    gate = torch.sigmoid(ffm.excite(F.relu(ffm.squeeze(F.adaptive_avg_pool2d(feature, 1)))))
    result = F.relu(ffm.out[1](ffm.out[0](gate * feature)))
    # head: x2 bilinear (align_corners=False), 1x1 conv; SiameseNet's L2 normalisation
    result = F.interpolate(result, scale_factor=2, mode="bilinear", align_corners=False)
    return F.normalize(model.head(result), 2, dim=1)


def released_ifn_logits(model: IFN, t0: Tensor, t1: Tensor) -> list[Tensor]:
    """open-cd's `IFN.forward`: the five logits, coarsest first."""
    vgg = [layer for part in model.encoder.slices for layer in part]
    assert len(vgg) == 30  # VGG16 features[:30]

    def taps(image: Tensor) -> list[Tensor]:  # after features[3], [8], [15], [22], [29]
        picked, x = [], image
        for index, layer in enumerate(vgg):
            x = layer(x)
            if index in (3, 8, 15, 22, 29):
                picked.append(x)
        return picked

    def conv_blocks(stage: nn.Module, x: Tensor) -> Tensor:  # conv, PReLU, BN (no dropout)
        for block in stage.convs:
            x = block[2](block[1](block[0](x)))
        return x

    def spatial_attention(stage: nn.Module, x: Tensor) -> Tensor:  # cat(mean, max), 7x7, sigmoid
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True)[0]], dim=1)
        return torch.sigmoid(stage.spatial_attention.conv(pooled)) * x

    def channel_attention(stage: nn.Module, x: Tensor) -> Tensor:  # shared MLP, avg + max
        fc1, fc2 = stage.channel_attention.mlp[0], stage.channel_attention.mlp[2]
        avg_out = fc2(F.relu(fc1(F.adaptive_avg_pool2d(x, 1))))
        max_out = fc2(F.relu(fc1(F.adaptive_max_pool2d(x, 1))))
        return torch.sigmoid(avg_out + max_out) * x

    f0, f1 = taps(t0), taps(t1)
    stage = model.stages[0]
    x = conv_blocks(stage, torch.cat([f0[4], f1[4]], dim=1))  # no channel attention here
    x = stage.norm(spatial_attention(stage, x))
    outs = [stage.side(x)]
    for k in range(1, 5):
        stage = model.stages[k]
        x = torch.cat([model.upsamplers[k - 1](x), f0[4 - k], f1[4 - k]], dim=1)
        x = conv_blocks(stage, channel_attention(stage, x))
        x = stage.norm(spatial_attention(stage, x))
        outs.append(stage.side(x))
    return outs


class TestFidelity:
    def test_bsfnet_layer_shapes_as_released(self) -> None:
        model = unfrozen_run("bsfnet").model
        pam = model.spatial_path.attention
        assert [pam.left[0].kernel_size, pam.left[2].kernel_size] == [(1, 7), (7, 1)]
        assert [pam.right[0].kernel_size, pam.right[2].kernel_size] == [(7, 1), (1, 7)]
        for block in (model.spatial_path.down2, model.spatial_path.down4):
            assert (block[0].kernel_size, block[0].stride, block[0].padding) == (
                (7, 7), (2, 2), (3, 3)
            )  # fmt: skip
            assert block[0].bias is None
        assert model.spatial_path.fuse.bias is not None and model.head.bias is not None

    def test_bsfnet_embedding_is_the_released_forward(self) -> None:
        model = build("bsfnet", seed=5).eval()
        randomise_batchnorm(model, seed=6)
        t0, t1 = make_pair(seed=7, batch=2, size=32)
        with torch.no_grad():
            output = model(t0, t1)
            expected = (released_bsfnet_embedding(model, t0), released_bsfnet_embedding(model, t1))
        torch.testing.assert_close(output.embeddings[0], expected[0])
        torch.testing.assert_close(output.embeddings[1], expected[1])
        # the authors' evaluation: F.pairwise_distance over the channels of each pixel
        e0, e1 = (e.permute(0, 2, 3, 1) for e in expected)
        distance = F.pairwise_distance(e0, e1, p=2).unsqueeze(1)
        torch.testing.assert_close(output.score, distance)

    def test_bsfnet_dates_pass_the_trunk_separately_in_training(self) -> None:
        # SiameseNet calls the trunk once per date, so in training each date's BatchNorm uses
        # its own batch statistics; batching both dates together would mix them.
        model = build("bsfnet", seed=5).train()
        t0, t1 = make_pair(seed=8, batch=2, size=32)
        with torch.no_grad():
            e0, _ = model(t0, t1).embeddings
            alone = model.embed(t0)
            mixed = model.embed(torch.cat([t0, t1]))[:2]
        torch.testing.assert_close(e0, alone)
        assert not torch.allclose(e0, mixed, atol=1e-4)

    def test_bsfnet_init_is_kaiming_fan_in_outside_the_encoder(self) -> None:
        # kaiming_normal_(fan_in, relu): std sqrt(2 / fan_in). CAM(2048)'s 1x1 conv has 4.2 M
        # weights with fan_in 2048 -> std 0.03125 (PyTorch's default would be
        # 1 / sqrt(3 * 2048) = 0.01276). Biases keep PyTorch's default, U(+-1/sqrt(fan_in)).
        model = build("bsfnet", seed=9)
        conv4 = model.context_path.attention4.conv
        assert conv4.weight.std().item() == pytest.approx(math.sqrt(2 / 2048), rel=0.01)
        assert conv4.weight.mean().abs().item() < 1e-3
        bound = 1 / math.sqrt(2048)
        assert conv4.bias.abs().max().item() <= bound and conv4.bias.abs().max().item() > 0
        head = model.head  # fan_in 16: std sqrt(2 / 16) = 0.354 over 256 weights
        assert head.weight.std().item() == pytest.approx(math.sqrt(2 / 16), rel=0.15)

    def test_ifn_layer_types_as_in_open_cd(self) -> None:
        model = frozen_run("ifn").model
        for stage in model.stages:
            for block in stage.convs:
                assert [type(layer) for layer in block] == [nn.Conv2d, nn.PReLU, nn.BatchNorm2d]
                assert block[0].kernel_size == (3, 3) and block[0].bias is not None
                assert block[1].num_parameters == 1
            sa = stage.spatial_attention.conv
            assert (sa.in_channels, sa.kernel_size, sa.padding, sa.bias) == (
                2,
                (7, 7),
                (3, 3),
                None,
            )
            assert stage.side.kernel_size == (1, 1) and stage.side.bias is not None
        for upsampler in model.upsamplers:
            assert (upsampler.kernel_size, upsampler.stride) == ((2, 2), (2, 2))

    def test_ifn_logits_are_the_open_cd_forward(self) -> None:
        model = build("ifn", seed=10).eval()
        randomise_batchnorm(model, seed=11)
        t0, t1 = make_pair(seed=12, batch=2, size=32)
        with torch.no_grad():
            output = model(t0, t1)
            expected = released_ifn_logits(model, t0, t1)
        assert len(output.side_logits) == len(expected) == 5
        for ours, theirs in zip(output.side_logits, expected, strict=True):
            torch.testing.assert_close(ours, theirs)
