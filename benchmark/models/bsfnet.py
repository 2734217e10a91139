"""BSFNet: bilateral semantic fusion Siamese network for change detection.

Paper: "BSFNet: Bilateral Semantic Fusion Siamese Network for Change Detection From
Multitemporal Optical Remote Sensing Imagery", IEEE Geoscience and Remote Sensing Letters.
Checked against the authors' released code: github.com/ClarissaDHL/BSFNet, branch `master`,
`model/BSFNet.py` (network, `SiameseNet`), `cd_code/bsfnet_cd.py` and `cd_code/test code.py`
(the distance that is thresholded), `utils/loss.py` (the distance inside the losses).

One trunk with shared weights embeds each date into 16 channels at input resolution; each
pixel's embedding is L2-normalised and the change score is the Euclidean distance between the
two dates' embeddings (in [0, 2]). The trunk, for one H x W image:

    spatial path:  conv7x7/2 3->64 (H/2), conv7x7/2 64->128 (H/4), both BN+ReLU, no bias;
                   H/4 map bilinearly upsampled (align_corners=True) to H/2, concatenated
                   (192), conv3x3 192->64 (bias, no BN/ReLU), PAM                     -> sx
    context path:  ResNet-50 layer3 (1024, H/16) -> CAM -> conv1x1 ->256;
                   layer4 (2048, H/32) -> CAM, + global mean of layer4 -> conv1x1 ->256;
                   both bilinearly upsampled (align_corners=False) to H/2 and summed  -> cx
    BAM:           (1 - sigmoid(conv1x1 256->64 (cx))) * sx -> conv1x1 64->64 -> conv3x3 64->64
    FFM:           cat(BAM, cx) 320 -> conv3x3+BN+ReLU 64 = f; f * SE-gate(f) -> conv3x3+BN+ReLU 16
    head:          bilinear x2 (align_corners=False) to H x W, conv1x1 16->16

Initialisation as the authors': Kaiming normal (fan_in, ReLU) on the weight of every convolution
outside the ResNet (biases keep PyTorch's default), BN weight 1 and bias 0; the ResNet keeps
torchvision's initialisation or the ImageNet weights.

The two dates pass through the trunk one after the other, as in the authors' `SiameseNet`, so
that BatchNorm in training mode normalises each date's batch on its own. (Note for the training
recipe: the released `cd_code/bsfnet_cd.py` calls `net_CD.train()` once, before the first epoch,
and its `validate()` calls `net_CD.eval()` without switching back; from the first validation,
after epoch 5 (index 4), to the end, the released run therefore trains with every BatchNorm in
eval mode, on running statistics frozen at that point.)

Departures from the released code, all without effect on the output:
- Dead modules left out: ResNet-50's `fc` (2,049,000 parameters) and the two `supervision`
  1x1 convs (256->16, 8,224 parameters), which the released code builds but whose outputs are
  never returned. The released model has 32,415,294 parameters; this one 30,358,070.
- The score is computed here, in the model: `||e0 - e1 + 1e-6||_2` over channels, which is
  `F.pairwise_distance(e0, e1, p=2)` (default eps 1e-6) as the authors' evaluation computes it
  before thresholding at 1.0. The training loss (`utils/loss.py`, `BCL_v2`) computes
  `sqrt(sum((|e0 - e1| + 1e-6)^2))` instead (eps added to the absolute difference). Each is
  within sqrt(16) * 1e-6 = 4e-6 of the exact distance (so neither exceeds 2 by more than that),
  and they differ from each other by at most 8e-6 (reached when the 16 channels of e0 - e1
  are negative and equal). Losses that want the authors' training form can use `embeddings`.
- Training with batch size 1 raises a `ValueError` that says why (CAM's BatchNorm sees one
  value per channel) instead of PyTorch's message.
- `freeze_encoder` (off by default; the authors fine-tune the ResNet with the same learning
  rate) is an addition: it stops the ResNet's gradients and keeps its BatchNorm in eval mode.
- Input preprocessing (the authors feed BGR minus a per-date mean, 0..255, no std division)
  is the data pipeline's job, not the model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.models.output import ChangeModel, ChangeOutput, OutputName, check_pair
from benchmark.models.weights import resnet50_encoder

EMBEDDING_CHANNELS = 16
"""Channels of the per-pixel embedding (the authors' `num_classes=16`)."""

DISTANCE_EPS = 1e-6
"""Added to the embedding difference before the norm (`F.pairwise_distance`'s default)."""


class ConvBNReLU(nn.Sequential):
    """Convolution without bias, BatchNorm, ReLU (the authors' `convblock`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class PAM(nn.Module):
    """Spatial attention of the shallow path: two factorised 7x7 branches, summed, sigmoid.

    Left branch: conv (1 x k) C -> C/2 + BN, conv (k x 1) C/2 -> 1 + BN; right branch the same
    with the kernel shapes swapped. Convolutions have biases; there is no ReLU.
    """

    def __init__(self, channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        inner, pad = channels // 2, kernel_size // 2
        self.left = nn.Sequential(
            nn.Conv2d(channels, inner, (1, kernel_size), padding=(0, pad)),
            nn.BatchNorm2d(inner),
            nn.Conv2d(inner, 1, (kernel_size, 1), padding=(pad, 0)),
            nn.BatchNorm2d(1),
        )
        self.right = nn.Sequential(
            nn.Conv2d(channels, inner, (kernel_size, 1), padding=(pad, 0)),
            nn.BatchNorm2d(inner),
            nn.Conv2d(inner, 1, (1, kernel_size), padding=(0, pad)),
            nn.BatchNorm2d(1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.left(x) + self.right(x))


class CAM(nn.Module):
    """Channel attention of the context path: global mean, conv1x1 C -> C (bias), BN, sigmoid.

    The BN sees one value per channel and sample, so training needs a batch of 2 or more
    (`BSFNet.forward` checks it before any work).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class SpatialPath(nn.Module):
    """The shallow path: two stride-2 7x7 convs, their fusion at H/2, PAM -> 64 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.down2 = ConvBNReLU(3, 64, kernel_size=7, stride=2)
        self.down4 = ConvBNReLU(64, 128, kernel_size=7, stride=2)
        self.fuse = nn.Conv2d(64 + 128, 64, kernel_size=3, padding=1)
        self.attention = PAM(64, kernel_size=7)

    def forward(self, image: Tensor) -> Tensor:
        half = self.down2(image)
        quarter = self.down4(half)
        quarter_up = F.interpolate(
            quarter, size=half.shape[-2:], mode="bilinear", align_corners=True
        )
        fused: Tensor = self.attention(self.fuse(torch.cat([half, quarter_up], dim=1)))
        return fused


class ResNet50Encoder(nn.Module):
    """ResNet-50 up to layer4; returns layer3 (1024 ch, H/16) and layer4 (2048 ch, H/32)."""

    def __init__(self, weights_dir: Path | None) -> None:
        super().__init__()
        self.resnet = resnet50_encoder(weights_dir)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(image))))
        layer3 = r.layer3(r.layer2(r.layer1(x)))
        return layer3, r.layer4(layer3)


class ContextPath(nn.Module):
    """Channel attention on layer3 and layer4, the global-mean tail, 1x1 to 256, summed at H/2."""

    def __init__(self) -> None:
        super().__init__()
        self.attention3 = CAM(1024)
        self.attention4 = CAM(2048)
        self.reduce3 = nn.Conv2d(1024, 256, kernel_size=1)
        self.reduce4 = nn.Conv2d(2048, 256, kernel_size=1)

    def forward(self, layer3: Tensor, layer4: Tensor, size: torch.Size) -> Tensor:
        tail = layer4.mean(dim=(2, 3), keepdim=True)  # of layer4 before its attention
        x3 = self.reduce3(self.attention3(layer3))
        x4 = self.reduce4(self.attention4(layer4) + tail)
        x3 = F.interpolate(x3, size=size, mode="bilinear", align_corners=False)
        x4 = F.interpolate(x4, size=size, mode="bilinear", align_corners=False)
        return x3 + x4


class BAM(nn.Module):
    """Reverse attention: the deep map's complement gates the shallow map, then 1x1 and 3x3."""

    def __init__(self, deep_channels: int, channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(deep_channels, channels, kernel_size=1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=1)
        self.conv3 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, shallow: Tensor, deep: Tensor) -> Tensor:
        reverse = 1 - torch.sigmoid(self.gate(deep))
        refined: Tensor = self.conv3(self.conv1(shallow * reverse))
        return refined


class FFM(nn.Module):
    """Feature fusion: conv3x3+BN+ReLU to 64, a squeeze-excitation gate, conv3x3+BN+ReLU out."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fuse = ConvBNReLU(in_channels, 64, kernel_size=3, stride=1)
        self.squeeze = nn.Conv2d(64, 64, kernel_size=1)
        self.excite = nn.Conv2d(64, 64, kernel_size=1)
        self.out = ConvBNReLU(64, out_channels, kernel_size=3, stride=1)

    def forward(self, boundary: Tensor, context: Tensor) -> Tensor:
        feature = self.fuse(torch.cat([boundary, context], dim=1))
        pooled = feature.mean(dim=(2, 3), keepdim=True)
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(pooled))))
        excited: Tensor = self.out(feature * gate)
        return excited


class BSFNet(ChangeModel):
    """BSFNet: a shared trunk embeds each date; the score is the embeddings' distance.

    Args:
        weights_dir: the folder holding the ImageNet weights (ResNet50_Weights.IMAGENET1K_V1,
            `params.yaml` `data.weights_dir`, see `benchmark.models.weights`) to start the
            ResNet-50 from; None keeps torchvision's random initialisation.
        freeze_encoder: give the ResNet-50 no gradient and keep its BatchNorm in eval mode.

    Inputs are (B, 3, H, W) with H and W even; the output has the input's resolution.
    """

    outputs: ClassVar[frozenset[OutputName]] = frozenset({"distance", "embeddings"})

    def __init__(self, weights_dir: Path | None = None, freeze_encoder: bool = False) -> None:
        super().__init__()
        self.freeze_encoder = freeze_encoder
        self.spatial_path = SpatialPath()
        self.encoder = ResNet50Encoder(weights_dir)
        self.context_path = ContextPath()
        self.bam = BAM(256, 64)
        self.ffm = FFM(256 + 64, EMBEDDING_CHANNELS)
        self.head = nn.Conv2d(EMBEDDING_CHANNELS, EMBEDDING_CHANNELS, kernel_size=1)
        self._init_weights()
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def _init_weights(self) -> None:
        """Kaiming normal (fan_in, ReLU) convs and BN 1/0 everywhere outside the ResNet."""
        for name, module in self.named_modules():
            if name.startswith("encoder"):
                continue
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def train(self, mode: bool = True) -> BSFNet:
        """Set the training mode; a frozen encoder stays in eval mode (fixed BN statistics)."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def embed(self, image: Tensor) -> Tensor:
        """The trunk for one date: (B, 3, H, W) -> L2-normalised (B, 16, H, W)."""
        sx = self.spatial_path(image)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            layer3, layer4 = self.encoder(image)
        cx = self.context_path(layer3, layer4, size=sx.shape[-2:])
        fused = self.ffm(self.bam(sx, cx), cx)
        fused = F.interpolate(fused, scale_factor=2, mode="bilinear", align_corners=False)
        return F.normalize(self.head(fused), p=2, dim=1)

    def forward(self, t0: Tensor, t1: Tensor) -> ChangeOutput:
        """Embed both dates and return their per-pixel distance.

        Args:
            t0: the first date, (B, 3, H, W), H and W even.
            t1: the second date, same shape.

        Returns:
            `ChangeOutput` with `score` the distance (B, 1, H, W) in [0, 2] (see the module
            docstring for the 1e-6) and `embeddings` the two (B, 16, H, W) unit-norm maps.
        """
        check_pair(t0, t1, "BSFNet", 2, "the head upsamples an H/2 map by 2")
        if self.training and t0.shape[0] == 1:
            raise ValueError(
                "BSFNet cannot train with batch size 1: its channel attention (CAM) applies "
                "BatchNorm to a 1x1 pooled map, which then holds one value per channel. "
                "Use a batch size >= 2 for training, or call model.eval() for inference."
            )
        e0, e1 = self.embed(t0), self.embed(t1)
        distance = torch.linalg.vector_norm(e0 - e1 + DISTANCE_EPS, ord=2, dim=1, keepdim=True)
        return ChangeOutput(score=distance, score_kind="distance", embeddings=(e0, e1))
