"""IFN (DSIFN): deeply supervised image fusion network for change detection.

Paper: C. Zhang et al., "A deeply supervised image fusion network for change detection in high
resolution bi-temporal remote sensing images", ISPRS J. Photogramm. Remote Sens. 166 (2020),
doi:10.1016/j.isprsjprs.2020.06.003.
Checked against: the authors' github.com/GeoZcx/A-deeply-supervised-image-fusion-network-for-
change-detection-in-remote-sensing-images, `pytorch version/DSIFN.py` (and `Keras version/DSIFN.py`,
`Keras version/attention_module.py`); open-cd `opencd/models/backbones/ifn.py` (likyoo/open-cd);
CDLab `src/models/ifn.py` and `src/models/_common.py` (Bobholamovic/CDLab). The recipes this
suite reproduces (open-cd on LEVIR-CD, CDLab on CDD) use the open-cd/CDLab network, which this
module follows.

Network, for a pair of H x W images:

    encoder:  VGG16 `features[:30]` (ImageNet), shared by both dates; taps after relu1_2 (64, H),
              relu2_2 (128, H/2), relu3_3 (256, H/4), relu4_3 (512, H/8), relu5_3 (512, H/16)
    stage 1:  cat(relu5_3 of t0, t1) 1024 -> 2 conv blocks (512, 512) -> SA -> BN -> side 1/16
    stage k:  ConvTranspose(2, stride 2) of the previous stage -> cat[up, t0 tap, t1 tap]
              -> CA -> 3 conv blocks -> SA -> BN -> side output; k = 2..5:
              1536 -> 512, 256, 256 (1/8);  768 -> 256, 128, 128 (1/4);
              384 -> 128, 64, 64 (1/2);     192 -> 64, 32, 16 (1/1)

A conv block is conv3x3 (bias) -> PReLU (one parameter) -> BN [-> Dropout]. Channel attention
(CA): average and max pooling, a shared 1x1 MLP (ratio 8, no bias, ReLU), sum, sigmoid, multiply.
Spatial attention (SA): cat(channel mean, channel max) -> conv 7x7 2->1 (no bias) -> sigmoid
-> multiply; one per stage. A side output is a 1x1 conv C->1 (bias) on the stage's BN'd
features, which also feed the next stage. All decoder layers keep PyTorch's default init.

Options and their defaults (the recipes reproduced): `freeze_encoder=True` (open-cd and CDLab run
the encoder under `torch.no_grad()`; the authors' Keras model sets it non-trainable) and
`dropout=0.0` (open-cd builds no Dropout, `use_dropout=False`). The authors' PyTorch file instead
trains the encoder and uses Dropout(p=0.6) after every conv block: `IFN(freeze_encoder=False,
dropout=0.6)`. CDLab's `src/models/ifn.py` is stored in two versions: one (commit b3aec217,
"Dropout layers are disabled by default") has `use_dropout=False`; the other (commit 6e45d703,
the commit of the `configs/svcd/config_svcd_ifn.yaml` that the CDD recipe reads) always builds
Dropout(p=0.6). Which of them produced CDLab's published CDD figure is not recorded; the
CDLab recipe may need `dropout=0.6`.
A frozen encoder has `requires_grad=False` and runs under `torch.no_grad()`. Its train/eval
mode does not matter: VGG16 (without BN) `features[:30]` holds no BatchNorm and no Dropout,
which is why open-cd's and CDLab's `.eval()` calls in `forward` change nothing; we leave the
mode alone.

Departures:
- Outputs are logits, as open-cd and CDLab return; the authors' PyTorch file applies a sigmoid
  in the model (and its loss applies another; issue #1 of their repository).
- Left out: open-cd's and CDLab's `ca1`, `bn_ca1`, `bn_ca2` (267,264 parameters), built but
  never used (the authors' PyTorch file builds and leaves them unused too).
- Not a departure: channel attention max-pools and there is one spatial attention module per
  stage, as in open-cd, CDLab, the Keras code and the authors' current `DSIFN.py`, whose history
  settles it: 0e7ae5a used one shared spatial-attention module with average pooling twice;
  2204571 (2021-03-01) switched to max pooling; c90e13d (2021-03-17) has five modules
  `sa1`...`sa5` (matches ours).
- One encoder serves both dates, as in open-cd and CDLab (`encoder1 = encoder2`). The authors'
  PyTorch `DSIFN(model_A, model_B)` takes one encoder per date and leaves sharing to the caller
  (no training script is released); an older CDLab builder passes the same module twice,
  `DSIFN(vgg16_model, vgg16_model)`. With a frozen encoder the two readings coincide.
- Each date's encoder taps are computed by one call per date (the authors', open-cd's and
  CDLab's order); without BatchNorm in the encoder, batching the dates would give the same.
- Not followed: the authors' Keras version, which also differs from their PyTorch file (biases
  in the channel-attention MLP, He-normal initialisation, no BN after the last stage's spatial
  attention).
Total: 35,727,549 parameters (the 35.73 M other papers cite), 21,012,861 outside the encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from benchmark.models.output import ChangeModel, ChangeOutput, OutputName, check_pair
from benchmark.models.weights import vgg16_features

VGG16_TAPS = (4, 9, 16, 23, 30)
"""End (exclusive) of each encoder slice of `features[:30]`: after relu1_2 ... relu5_3."""

STAGE_WIDTHS: tuple[tuple[int, ...], ...] = (
    (512, 512),
    (512, 256, 256),
    (256, 128, 128),
    (128, 64, 64),
    (64, 32, 16),
)
"""Output channels of each decoder stage's conv blocks, coarsest stage first."""

TAP_CHANNELS = (512, 512, 256, 128, 64)
"""Channels of the encoder taps the stages fuse, coarsest first (relu5_3 ... relu1_2)."""


class ConvBlock(nn.Sequential):
    """conv3x3 (bias) -> PReLU -> BN, then Dropout(p) when p > 0 (the authors' `conv2d_bn`)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.PReLU(),
            nn.BatchNorm2d(out_channels),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(p=dropout))
        super().__init__(*layers)


class ChannelAttention(nn.Module):
    """CBAM channel attention: shared 1x1 MLP on average- and max-pooled maps, summed, sigmoid."""

    def __init__(self, channels: int, ratio: int = 8) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, channels // ratio, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // ratio, channels, kernel_size=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        average = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        maximum = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(average + maximum)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: conv 7x7 (no bias) on the channel mean and max, sigmoid."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class FusionStage(nn.Module):
    """[CA] -> conv blocks -> SA -> BN = the stage's features; a 1x1 conv on them = side logit."""

    def __init__(
        self,
        in_channels: int,
        widths: tuple[int, ...],
        channel_attention: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.channel_attention = ChannelAttention(in_channels) if channel_attention else None
        blocks, channels = [], in_channels
        for width in widths:
            blocks.append(ConvBlock(channels, width, dropout))
            channels = width
        self.convs = nn.Sequential(*blocks)
        self.spatial_attention = SpatialAttention()
        self.norm = nn.BatchNorm2d(channels)
        self.side = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.channel_attention is not None:
            x = self.channel_attention(x)
        features = self.norm(self.spatial_attention(self.convs(x)))
        return features, self.side(features)


class VGG16Encoder(nn.Module):
    """VGG16 `features[:30]` cut into five slices; returns the taps coarsest first."""

    def __init__(self, weights_dir: Path | None) -> None:
        super().__init__()
        features = vgg16_features(weights_dir)
        starts = (0, *VGG16_TAPS[:-1])
        self.slices = nn.ModuleList(
            features[start:end] for start, end in zip(starts, VGG16_TAPS, strict=True)
        )

    def forward(self, image: Tensor) -> list[Tensor]:
        taps, x = [], image
        for block in self.slices:
            x = block(x)
            taps.append(x)
        return taps[::-1]


class IFN(ChangeModel):
    """IFN: a shared VGG16 encoder and a five-stage, deeply supervised fusion decoder.

    Args:
        weights_dir: the folder holding the ImageNet weights (VGG16_Weights.IMAGENET1K_V1,
            `params.yaml` `data.weights_dir`, see `benchmark.models.weights`) to start the
            encoder from; None keeps torchvision's initialisation.
        freeze_encoder: give the encoder no gradient (open-cd, CDLab; the default).
        dropout: Dropout probability after each conv block; 0 builds none (open-cd, CDLab;
            the default). The authors' PyTorch file uses 0.6.

    Inputs are (B, 3, H, W) with H and W divisible by 16.
    """

    outputs: ClassVar[frozenset[OutputName]] = frozenset({"logit", "side_logits"})

    def __init__(
        self,
        weights_dir: Path | None = None,
        freeze_encoder: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"IFN: dropout must be in [0, 1), got {dropout}")
        self.freeze_encoder = freeze_encoder
        self.encoder = VGG16Encoder(weights_dir)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        self.stages = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        previous = 0
        for index, (widths, tap) in enumerate(zip(STAGE_WIDTHS, TAP_CHANNELS, strict=True)):
            if index > 0:
                self.upsamplers.append(nn.ConvTranspose2d(previous, previous, 2, stride=2))
            self.stages.append(
                FusionStage(
                    previous + 2 * tap, widths, channel_attention=index > 0, dropout=dropout
                )
            )
            previous = widths[-1]

    def forward(self, t0: Tensor, t1: Tensor) -> ChangeOutput:
        """Fuse both dates' encoder taps from coarse to fine.

        Args:
            t0: the first date, (B, 3, H, W), H and W divisible by 16.
            t1: the second date, same shape.

        Returns:
            `ChangeOutput` with `score` the full-resolution logit (B, 1, H, W) and
            `side_logits` the five logits at 1/16, 1/8, 1/4, 1/2 and 1/1 of the input.
        """
        check_pair(t0, t1, "IFN", 16, "four 2x upsamplings meet the encoder's taps")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            taps0, taps1 = self.encoder(t0), self.encoder(t1)
        features, logit = self.stages[0](torch.cat([taps0[0], taps1[0]], dim=1))
        logits = [logit]
        for stage, upsample, tap0, tap1 in zip(
            self.stages[1:], self.upsamplers, taps0[1:], taps1[1:], strict=True
        ):
            features, logit = stage(torch.cat([upsample(features), tap0, tap1], dim=1))
            logits.append(logit)
        return ChangeOutput(score=logits[-1], score_kind="logit", side_logits=tuple(logits))
