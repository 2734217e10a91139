"""ImageNet-pretrained encoders from torchvision, loaded from the local torch hub cache only.

BSFNet's context path is torchvision's ResNet-50 with `ResNet50_Weights.IMAGENET1K_V1`
(the authors' `models.resnet50(pretrained=True)`, `model/BSFNet.py` of ClarissaDHL/BSFNet);
IFN's encoder is `VGG16.features[:30]` with `VGG16_Weights.IMAGENET1K_V1` (the authors'
`vgg16(pretrained=True)`, `pytorch version/DSIFN.py` of GeoZcx/A-deeply-supervised-image-
fusion-network-for-change-detection-in-remote-sensing-images; also open-cd and CDLab).

Where the file comes from: torchvision's weights API names the URL and the file name
(`weights.url`); torch.hub keeps downloaded files in `torch.hub.get_dir()/checkpoints`
(`$TORCH_HOME/hub/checkpoints`). This module never downloads: the development and CI machines
are offline, and a run must not silently depend on the network. A missing file raises a
`CdbenchError` naming the file, its URL and the folder to put it in.

Loading: the file is read with `torch.load(weights_only=True)` and the entries of the modules
the encoder keeps are loaded with `load_state_dict(strict=True)`: every weight the encoder
needs must be present with the right shape. Entries of the parts the models never use
(ResNet-50's `fc.*`, VGG16's `classifier.*`) are ignored, so a file holding only the used
entries also loads.

Departure from torch.hub: no hash check. torch.hub itself checks the SHA-256 prefix in the
file name only while downloading; a file already in the cache is trusted by name. We do the
same, which lets tests plant a randomly initialised file under the expected name. The strict
load still rejects a file that is not a ResNet-50 / VGG16 state dict.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet50_Weights, VGG16_Weights, WeightsEnum

from benchmark.errors import CdbenchError

RESNET50_WEIGHTS = ResNet50_Weights.IMAGENET1K_V1
"""ImageNet weights for BSFNet's ResNet-50 (file `resnet50-0676ba61.pth`)."""

VGG16_WEIGHTS = VGG16_Weights.IMAGENET1K_V1
"""ImageNet weights for IFN's VGG16 (file `vgg16-397923af.pth`)."""

VGG16_FEATURES_USED = 30
"""IFN keeps `VGG16.features[:30]`: every conv and ReLU, without the last max-pool."""


def checkpoint_path(weights: WeightsEnum) -> Path:
    """Where torch.hub keeps (and where we look for) a torchvision weight file.

    Args:
        weights: a torchvision weights entry, e.g. `ResNet50_Weights.IMAGENET1K_V1`.

    Returns:
        `torch.hub.get_dir()/checkpoints/<file name of weights.url>`.
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def read_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """Read a torchvision weight file from the local hub cache; never download.

    Args:
        weights: the torchvision weights entry whose file to read.

    Returns:
        The state dict stored in the file.

    Raises:
        CdbenchError: the file is absent (the message names the file, its URL and the folder
            to put it in) or cannot be read as a state dict.
    """
    path = checkpoint_path(weights)
    if not path.is_file():
        raise CdbenchError(
            f"pretrained ImageNet weights not found: expected the file {path.name} in "
            f"{path.parent} (torch.hub's cache, $TORCH_HOME/hub/checkpoints). This suite does "
            f"not download them. Download {weights.url} and put it there, e.g. "
            f"`mkdir -p {path.parent} && curl -L -o {path} {weights.url}`, or point TORCH_HOME "
            f"at a folder whose hub/checkpoints holds it; or use pretrained=False."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a damaged or foreign file
        raise CdbenchError(
            f"{path}: cannot read it as a PyTorch state dict ({type(exc).__name__}: {exc}); "
            f"expected torchvision's {path.name} from {weights.url}. Delete it and download it "
            f"again."
        ) from exc
    if not isinstance(state, dict):
        raise CdbenchError(
            f"{path}: expected a state dict (a dict of tensors), got {type(state).__name__}; "
            f"download {weights.url} again."
        )
    return state


def load_into(module: nn.Module, weights: WeightsEnum, prefix: str = "") -> None:
    """Load the entries under `prefix` of a weight file into `module`, strictly.

    Args:
        module: the module to fill (e.g. a ResNet-50 without `fc`, or `VGG16.features[:30]`).
        weights: the torchvision weights entry whose file to read.
        prefix: the key prefix of `module` in the file (e.g. `"features."`); entries of the
            file outside `module` (e.g. a classifier) are ignored.

    Raises:
        CdbenchError: the file is absent, unreadable, lacks an entry `module` needs, or has an
            entry of the wrong shape.
    """
    state = read_state_dict(weights)
    expected = module.state_dict()
    picked = {
        key[len(prefix) :]: value
        for key, value in state.items()
        if key.startswith(prefix) and key[len(prefix) :] in expected
    }
    missing = sorted(set(expected) - set(picked))
    if missing:
        shown = ", ".join(prefix + key for key in missing[:5])
        raise CdbenchError(
            f"{checkpoint_path(weights)}: lacks {len(missing)} entries the encoder needs "
            f"(e.g. {shown}); expected torchvision's {Path(weights.url).name}. "
            f"Download {weights.url} again."
        )
    for key, value in picked.items():
        if value.shape != expected[key].shape:
            raise CdbenchError(
                f"{checkpoint_path(weights)}: entry {prefix + key} has shape "
                f"{tuple(value.shape)}, the encoder needs {tuple(expected[key].shape)}; "
                f"expected torchvision's {Path(weights.url).name}. Download {weights.url} again."
            )
    module.load_state_dict(picked, strict=True)


def resnet50_encoder(pretrained: bool) -> torchvision.models.ResNet:
    """torchvision's ResNet-50 without its classifier (`fc` is an `Identity`).

    Args:
        pretrained: load `ResNet50_Weights.IMAGENET1K_V1` from the local hub cache; otherwise
            torchvision's random initialisation.

    Returns:
        The ResNet-50; its parameter names are torchvision's (`conv1`, `bn1`, `layer1`...).
    """
    resnet = torchvision.models.resnet50(weights=None)
    resnet.fc = nn.Identity()  # 2,049,000 parameters the change detector never uses
    if pretrained:
        load_into(resnet, RESNET50_WEIGHTS)
    return resnet


def vgg16_features(pretrained: bool) -> nn.Sequential:
    """`VGG16.features[:30]`: the 13 convolutions with their ReLUs and the first 4 max-pools.

    The full VGG16 is built on the meta device, so its 123.6 M-parameter classifier is
    neither allocated nor initialised; the kept layers are then materialised on the CPU and
    initialised as torchvision's `VGG.__init__` does (Kaiming normal, fan_out, ReLU; zero bias).

    Args:
        pretrained: load `VGG16_Weights.IMAGENET1K_V1` from the local hub cache.

    Returns:
        The layers as an `nn.Sequential` with torchvision's indices (0..29).
    """
    with torch.device("meta"):
        vgg = torchvision.models.vgg16(weights=None)
    features = vgg.features[:VGG16_FEATURES_USED].to_empty(device="cpu")
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    if pretrained:
        load_into(features, VGG16_WEIGHTS, prefix="features.")
    return features
