"""ImageNet-pretrained encoders from torchvision, read from the weights folder and hash-checked.

BSFNet's context path is torchvision's ResNet-50 with `ResNet50_Weights.IMAGENET1K_V1`
(the authors' `models.resnet50(pretrained=True)`, `model/BSFNet.py` of ClarissaDHL/BSFNet);
IFN's encoder is `VGG16.features[:30]` with `VGG16_Weights.IMAGENET1K_V1` (the authors'
`vgg16(pretrained=True)`, `pytorch version/DSIFN.py` of GeoZcx/A-deeply-supervised-image-
fusion-network-for-change-detection-in-remote-sensing-images; also open-cd and CDLab).

Where the files come from: torchvision's weights API (`torchvision.models.WeightsEnum`) names
each file's URL (`weights.url`); the file name is the URL's last part, and by torchvision's
convention it carries the first hex digits of the file's SHA-256 (`resnet50-0676ba61.pth`:
prefix `0676ba61`). `cdbench weights` (benchmark/models/weights_fetch.py, the DVC stage
`weights`) fetches them into one folder, `params.yaml` `data.weights_dir` (`data/weights`),
tracked by DVC. Training reads them from that folder only and never downloads; there is no
fallback to torch.hub's cache (`$TORCH_HOME/hub/checkpoints`), so a run depends on one place
that DVC tracks, not on whatever a user's cache holds. A missing file raises a `CdbenchError`
naming the file, its URL, the folder and `dvc repro weights`.

Loading: the file's SHA-256 must start with the prefix its name carries (torch.hub checks this
only while downloading; we check it every time a file is loaded, remembering within the process
which path, size and modification time already passed). Then it is read with
`torch.load(weights_only=True)` and the entries of the modules the encoder keeps are loaded with
`load_state_dict(strict=True)`: every weight the encoder needs must be present with the right
shape. Entries of the parts the models never use (ResNet-50's `fc.*`, VGG16's `classifier.*`)
are ignored, so a file holding only the used entries also loads.

Tests replace `RESNET50` / `VGG16` with a `WeightFile` whose URL names a planted file's own
hash, so the check is exercised on every load.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet50_Weights, VGG16_Weights, WeightsEnum

from benchmark.errors import CdbenchError

HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.")
"""torch.hub's rule (`HASH_REGEX`, at least 8 digits here): the hex digits between the first
'-' and '.' that enclose only such digits are the first digits of the file's SHA-256."""

FETCH_COMMAND = "dvc repro weights"
"""The pipeline step that fetches and verifies the files (`cdbench weights` underneath)."""


@dataclass(frozen=True)
class WeightFile:
    """One published weight file: its URL and what it is.

    Attributes:
        url: where it is published; its last part is the file name, which carries the first
            hex digits of the file's SHA-256.
        source: what it is, for messages (e.g. "torchvision ResNet50_Weights.IMAGENET1K_V1").
    """

    url: str
    source: str

    def __post_init__(self) -> None:
        if HASH_IN_NAME.search(self.name) is None:
            raise ValueError(
                f"weight file {self.name!r} (from {self.url}): expected a name carrying a "
                f"SHA-256 prefix, as torchvision's do (e.g. resnet50-0676ba61.pth)"
            )

    @classmethod
    def from_torchvision(cls, weights: WeightsEnum) -> WeightFile:
        """The file of a torchvision weights entry, e.g. `ResNet50_Weights.IMAGENET1K_V1`."""
        return cls(url=weights.url, source=f"torchvision {type(weights).__name__}.{weights.name}")

    @property
    def name(self) -> str:
        """The file name: the URL's last part."""
        return PurePosixPath(urlsplit(self.url).path).name

    @property
    def sha256_prefix(self) -> str:
        """The first hex digits of the file's SHA-256, read from its name."""
        found = HASH_IN_NAME.search(self.name)
        assert found is not None  # checked in __post_init__
        return found.group(1)

    def path(self, folder: Path) -> Path:
        """Where the file lies in the weights folder."""
        return folder / self.name


RESNET50 = WeightFile.from_torchvision(ResNet50_Weights.IMAGENET1K_V1)
"""ImageNet weights for BSFNet's ResNet-50 (`resnet50-0676ba61.pth`)."""

VGG16 = WeightFile.from_torchvision(VGG16_Weights.IMAGENET1K_V1)
"""ImageNet weights for IFN's VGG16 (`vgg16-397923af.pth`)."""

VGG16_FEATURES_USED = 30
"""IFN keeps `VGG16.features[:30]`: every conv and ReLU, without the last max-pool."""

_SHA256_SEEN: dict[tuple[str, int, int], str] = {}
"""SHA-256 of files already hashed in this process, by (resolved path, size, mtime in ns)."""


def imagenet_files() -> tuple[WeightFile, ...]:
    """Every weight file a model of the suite can load (read when called, so tests can swap
    the module's constants)."""
    return (RESNET50, VGG16)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, hashed once per path, size and modification time per process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256_SEEN:
        with open(path, "rb") as f:
            _SHA256_SEEN[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _SHA256_SEEN[key]


def verify_file(path: Path, file: WeightFile) -> None:
    """Refuse `path` unless its SHA-256 starts with the prefix `file`'s name carries.

    Raises:
        CdbenchError: naming the file, the expected prefix, the actual hash and the fix.
    """
    digest = file_sha256(path)
    if not digest.startswith(file.sha256_prefix):
        raise CdbenchError(
            f"{path}: SHA-256 {digest} does not start with {file.sha256_prefix}, the prefix "
            f"its name carries: the file is damaged, truncated or not {file.source}. Delete "
            f"it and run `{FETCH_COMMAND}` (or `cdbench weights --out {path.parent}`) to fetch "
            f"it again from {file.url}."
        )


def missing_message(file: WeightFile, folder: Path) -> str:
    """What to do when a weight file is not in the weights folder."""
    return (
        f"pretrained ImageNet weights not found: {file.path(folder)} ({file.source}, "
        f"{file.url}). Training never downloads: run `{FETCH_COMMAND}` (or `cdbench weights "
        f"--out {folder}`) to fetch and verify them; offline, download {file.url} on a "
        f"connected machine and put it in {folder}/, then run `{FETCH_COMMAND}`, which "
        f"verifies it and goes on; or set the recipe's `pretrained: false`."
    )


def read_state_dict(file: WeightFile, folder: Path) -> dict[str, torch.Tensor]:
    """Read a weight file from the weights folder after checking its hash; never download.

    Args:
        file: the weight file to read (e.g. `RESNET50`).
        folder: the weights folder (`params.yaml` `data.weights_dir`).

    Returns:
        The state dict stored in the file.

    Raises:
        CdbenchError: the file is absent (the message names the file, its URL, the folder and
            `dvc repro weights`), its hash does not match its name, or it cannot be read as a
            state dict.
    """
    path = file.path(folder)
    if not path.is_file():
        raise CdbenchError(missing_message(file, folder))
    verify_file(path, file)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a damaged or foreign file
        raise CdbenchError(
            f"{path}: cannot read it as a PyTorch state dict ({type(exc).__name__}: {exc}); "
            f"expected {file.source} from {file.url}. Delete it and run `{FETCH_COMMAND}`."
        ) from exc
    if not isinstance(state, dict):
        raise CdbenchError(
            f"{path}: expected a state dict (a dict of tensors), got {type(state).__name__}; "
            f"expected {file.source} from {file.url}. Delete it and run `{FETCH_COMMAND}`."
        )
    return state


def load_into(module: nn.Module, file: WeightFile, folder: Path, prefix: str = "") -> None:
    """Load the entries under `prefix` of a weight file into `module`, strictly.

    Args:
        module: the module to fill (e.g. a ResNet-50 without `fc`, or `VGG16.features[:30]`).
        file: the weight file to read.
        folder: the weights folder holding it.
        prefix: the key prefix of `module` in the file (e.g. `"features."`); entries of the
            file outside `module` (e.g. a classifier) are ignored.

    Raises:
        CdbenchError: the file is absent, fails its hash check, is unreadable, lacks an entry
            `module` needs, or has an entry of the wrong shape.
    """
    state = read_state_dict(file, folder)
    path = file.path(folder)
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
            f"{path}: lacks {len(missing)} entries the encoder needs (e.g. {shown}); "
            f"expected {file.source} from {file.url}."
        )
    for key, value in picked.items():
        if value.shape != expected[key].shape:
            raise CdbenchError(
                f"{path}: entry {prefix + key} has shape {tuple(value.shape)}, the encoder "
                f"needs {tuple(expected[key].shape)}; expected {file.source} from {file.url}."
            )
    module.load_state_dict(picked, strict=True)


def resnet50_encoder(weights_dir: Path | None) -> torchvision.models.ResNet:
    """torchvision's ResNet-50 without its classifier (`fc` is an `Identity`).

    Args:
        weights_dir: the weights folder to load `RESNET50` from; None keeps torchvision's
            random initialisation.

    Returns:
        The ResNet-50; its parameter names are torchvision's (`conv1`, `bn1`, `layer1`...).
    """
    resnet = torchvision.models.resnet50(weights=None)
    resnet.fc = nn.Identity()  # 2,049,000 parameters the change detector never uses
    if weights_dir is not None:
        load_into(resnet, RESNET50, weights_dir)
    return resnet


def vgg16_features(weights_dir: Path | None) -> nn.Sequential:
    """`VGG16.features[:30]`: the 13 convolutions with their ReLUs and the first 4 max-pools.

    The full VGG16 is built on the meta device, so its 123.6 M-parameter classifier is
    neither allocated nor initialised; the kept layers are then materialised on the CPU and
    initialised as torchvision's `VGG.__init__` does (Kaiming normal, fan_out, ReLU; zero bias).

    Args:
        weights_dir: the weights folder to load `VGG16` from; None keeps that initialisation.

    Returns:
        The layers as an `nn.Sequential` with torchvision's indices (0..29).
    """
    with torch.device("meta"):
        vgg = torchvision.models.vgg16(weights=None)
    features: nn.Sequential = vgg.features[:VGG16_FEATURES_USED].to_empty(device="cpu")
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            assert layer.bias is not None, "torchvision's VGG16 convolutions have biases"
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    if weights_dir is not None:
        load_into(features, VGG16, weights_dir, prefix="features.")
    return features
