"""Checkpoints from a file: the authors' released ones, mapped key by key, and our own.

`cdbench evaluate EXPERIMENT --weights FILE` scores any checkpoint under every protocol; this
module reads the file and puts its weights into our model. Three formats are recognised:
- a cdbench checkpoint (`best.pt` / `last.pt`, benchmark/training/checkpoint.py): its
  `model_and_loss` is loaded as it is (provenance "cdbench checkpoint");
- BSFNet's released checkpoint (ClarissaDHL/BSFNet, branch `master`; the best CDD model behind
  the readme's Baidu link, password RSCD): `{'net_CD': state_dict, 'epoch', 'metric'}`, the
  state dict of `SiameseNet()` in `model/BSFNet.py`, 726 entries under `basenet.`, as
  `cd_code/test code.py` loads it (provenance "released checkpoint");
- a state dict of IFN with the key names of GeoZcx's `pytorch version/DSIFN.py` (the version
  of commit c90e13d, 2021-03-17: five spatial-attention modules `sa1` ... `sa5`, two encoders
  `t1_base` / `t2_base`) (provenance "released checkpoint"). Note: the weights that
  repository links (`results/README.md`, Baidu, password nl1h) are Keras `.h5` files ("available
  only on the Keras version"); torch cannot read them, and the error says so. A PyTorch state
  dict of DSIFN.py (e.g. one trained with the authors' PyTorch code) loads through this table.

The mapping is an explicit key table per model (`KeyTable`): each key of the released file is
either mapped to one of our keys, an alias of a mapped key (the same tensor stored twice; it
must be equal, and is checked), or dropped with the reason. Loading fails, naming the key, on
a key the table does not know, a mapped key the file lacks, a shape that differs from ours,
or an alias that differs from the key it repeats. The tables are built from lists of module
prefixes (released module -> our module) applied to our model's own state-dict keys;
tests/test_released.py checks every key against names written out from the authors' code.

The fixed place for a checkpoint downloaded by hand is `RELEASED_DIR/<file>` (`RELEASED`,
`cdbench evaluate EXPERIMENT --released`); its SHA-256 is checked when known, and always
recorded in the metrics file and the MLflow run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmark.errors import CdbenchError
from benchmark.models.ifn import STAGE_WIDTHS, VGG16_TAPS

RELEASED_PROVENANCE = "released checkpoint"
"""Provenance of a file in an author's format (metrics file, MLflow tag)."""
CDBENCH_PROVENANCE = "cdbench checkpoint"
"""Provenance of one of our own checkpoints given with --weights."""
RUN_SUFFIX = {RELEASED_PROVENANCE: "-released", CDBENCH_PROVENANCE: "-weights"}
"""A run scored from --weights is written as `<run><suffix>`: never over a trained run."""

RELEASED_DIR = Path("data/released")
"""Where a checkpoint downloaded by hand is put (`--released`)."""


@dataclass(frozen=True)
class ReleasedFile:
    """An author's released checkpoint: where it is published, where to put it, its hash."""

    model: str
    file: str
    where: str
    """Where to download it (a sentence or two, said when the file is missing)."""
    sha256: str | None
    """None: not known here (no copy could be fetched); the file's hash is recorded only."""

    @property
    def path(self) -> Path:
        return RELEASED_DIR / self.file


RELEASED: dict[str, ReleasedFile] = {
    "bsfnet": ReleasedFile(
        model="bsfnet",
        file="bsfnet-cdd-best.pth",
        where=(
            "Download it by hand from the Baidu link in the readme of "
            "github.com/ClarissaDHL/BSFNet (branch master, password RSCD): the best CDD "
            "checkpoint, {'net_CD', 'epoch', 'metric'}."
        ),
        sha256=None,
    ),
    "ifn": ReleasedFile(
        model="ifn",
        file="ifn-dsifn.pth",
        where=(
            "GeoZcx/A-deeply-supervised-image-fusion-network-for-change-detection-in-remote-"
            "sensing-images publishes no PyTorch weights: its results/README.md links Keras "
            ".h5 files only (Baidu, password nl1h), which cannot be loaded. Use a PyTorch "
            "state dict with the key names of its `pytorch version/DSIFN.py`."
        ),
        sha256=None,
    ),
}
"""The released checkpoint of each model, by model name."""


@dataclass(frozen=True)
class KeyTable:
    """Every key of a released state dict, and what becomes of it.

    Attributes:
        model: our model's name ("bsfnet", "ifn").
        source: the authors' file the released names come from.
        mapped: released key -> our key.
        aliases: released key -> the mapped released key it repeats (same tensor; checked).
        dropped: released key -> why it is not loaded.
    """

    model: str
    source: str
    mapped: dict[str, str]
    aliases: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)

    def released_keys(self) -> list[str]:
        """Every key the released file holds, as the table knows it."""
        return [*self.mapped, *self.aliases, *self.dropped]

    def coverage(self) -> dict[str, int]:
        """How many released keys are mapped, aliases and dropped, and their total."""
        return {
            "mapped": len(self.mapped),
            "aliases": len(self.aliases),
            "dropped": len(self.dropped),
            "total": len(self.released_keys()),
        }


def _translate(
    our_keys: Iterable[str], prefixes: list[tuple[str, str]], model: str
) -> dict[str, str]:
    """released key -> our key, each of our keys renamed by the longest matching prefix pair
    (released prefix, our prefix); a key that no pair covers is a bug in the table."""
    by_ours = sorted(prefixes, key=lambda pair: len(pair[1]), reverse=True)
    mapped = {}
    for key in our_keys:
        for released, ours in by_ours:
            if key.startswith(ours + "."):
                mapped[released + key[len(ours) :]] = key
                break
        else:
            raise AssertionError(f"{model} key table: no released name for our key {key!r}")
    return mapped


BSFNET_PREFIXES: list[tuple[str, str]] = [
    ("basenet.spatial_path.conv1.conv", "spatial_path.down2.0"),
    ("basenet.spatial_path.conv1.bn", "spatial_path.down2.1"),
    ("basenet.spatial_path.conv2.conv", "spatial_path.down4.0"),
    ("basenet.spatial_path.conv2.bn", "spatial_path.down4.1"),
    ("basenet.conv3x3_sx", "spatial_path.fuse"),
    ("basenet.pam1.conv_l1", "spatial_path.attention.left.0"),
    ("basenet.pam1.bn_l1", "spatial_path.attention.left.1"),
    ("basenet.pam1.conv_l2", "spatial_path.attention.left.2"),
    ("basenet.pam1.bn_l2", "spatial_path.attention.left.3"),
    ("basenet.pam1.conv_r1", "spatial_path.attention.right.0"),
    ("basenet.pam1.bn_r1", "spatial_path.attention.right.1"),
    ("basenet.pam1.conv_r2", "spatial_path.attention.right.2"),
    ("basenet.pam1.bn_r2", "spatial_path.attention.right.3"),
    ("basenet.context_path.features", "encoder.resnet"),
    ("basenet.cam1.conv", "context_path.attention3.conv"),
    ("basenet.cam1.bn", "context_path.attention3.bn"),
    ("basenet.cam2.conv", "context_path.attention4.conv"),
    ("basenet.cam2.bn", "context_path.attention4.bn"),
    ("basenet.conv1x1_cx1", "context_path.reduce3"),
    ("basenet.conv1x1_cx2", "context_path.reduce4"),
    ("basenet.bam.conv1x1_1", "bam.gate"),
    ("basenet.bam.conv1x1_2", "bam.conv1"),
    ("basenet.bam.conv3x3_1", "bam.conv3"),
    ("basenet.ffm.convblock.conv", "ffm.fuse.0"),
    ("basenet.ffm.convblock.bn", "ffm.fuse.1"),
    ("basenet.ffm.conv1", "ffm.squeeze"),
    ("basenet.ffm.conv2", "ffm.excite"),
    ("basenet.ffm.final_conv.conv", "ffm.out.0"),
    ("basenet.ffm.final_conv.bn", "ffm.out.1"),
    ("basenet.conv", "head"),
]
"""BSFNet: released module (model/BSFNet.py, `SiameseNet().basenet`) -> our module."""

BSFNET_RESNET_ALIASES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")
"""The released `resnet50` wrapper also stores these torchvision modules under its own names
(`self.conv1 = self.features.conv1`, ...), so each of their entries appears twice."""


def bsfnet_table(our_keys: Iterable[str]) -> KeyTable:
    """The key table of BSFNet's released `SiameseNet()` state dict, from our state-dict keys."""
    mapped = _translate(our_keys, BSFNET_PREFIXES, "bsfnet")
    features = "basenet.context_path.features."
    aliases = {
        "basenet.context_path." + key[len(features) :]: key
        for key in mapped
        if key.startswith(features) and key[len(features) :].split(".")[0] in BSFNET_RESNET_ALIASES
    }
    dead_fc = "ResNet-50's classifier: built by models.resnet50, never called (no output uses it)"
    dead_sup = "built but its output is never returned (the deep-supervision branch is dead code)"
    dropped = {
        features + "fc.weight": dead_fc,
        features + "fc.bias": dead_fc,
        "basenet.supervision1.weight": dead_sup,
        "basenet.supervision1.bias": dead_sup,
        "basenet.supervision2.weight": dead_sup,
        "basenet.supervision2.bias": dead_sup,
    }
    return KeyTable(
        "bsfnet", "ClarissaDHL/BSFNet model/BSFNet.py SiameseNet", mapped, aliases, dropped
    )


IFN_SIDE_CONVS = ("o1_conv3", "o2_conv4", "o3_conv4", "o4_conv4", "o5_conv4")
"""The released name of each stage's 1x1 side-output conv, coarsest stage first."""
BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def ifn_prefixes() -> list[tuple[str, str]]:
    """IFN: released module (DSIFN.py, c90e13d) -> our module."""
    pairs: list[tuple[str, str]] = []
    starts = (0, *VGG16_TAPS[:-1])
    for index, (start, end) in enumerate(zip(starts, VGG16_TAPS, strict=True)):
        for layer in range(start, end):
            pairs.append((f"t1_base.features.{layer}", f"encoder.slices.{index}.{layer}"))
    for index in range(5):
        stage, k = f"stages.{index}", index + 1
        if index > 0:
            pairs.append((f"ca{k}.fc1", f"{stage}.channel_attention.mlp.0"))
            pairs.append((f"ca{k}.fc2", f"{stage}.channel_attention.mlp.2"))
            pairs.append((f"trans_conv{index}", f"upsamplers.{index - 1}"))
        for block in range(len(STAGE_WIDTHS[index])):
            pairs.append((f"o{k}_conv{block + 1}", f"{stage}.convs.{block}"))
        pairs.append((f"sa{k}.conv1", f"{stage}.spatial_attention.conv"))
        pairs.append((f"bn_sa{k}", f"{stage}.norm"))
        pairs.append((IFN_SIDE_CONVS[index], f"{stage}.side"))
    return pairs


def ifn_table(our_keys: Iterable[str]) -> KeyTable:
    """The key table of a DSIFN.py (c90e13d) state dict, from our IFN's state-dict keys."""
    mapped = _translate(our_keys, ifn_prefixes(), "ifn")
    aliases = {
        "t2_base." + key.removeprefix("t1_base."): key
        for key in mapped
        if key.startswith("t1_base.")
    }
    unused = "built in DSIFN.__init__ but never used in forward (open-cd and CDLab too)"
    dropped = {"ca1.fc1.weight": unused, "ca1.fc2.weight": unused}
    dropped.update({f"{bn}.{entry}": unused for bn in ("bn_ca1", "bn_ca2") for entry in BN_ENTRIES})
    return KeyTable(
        "ifn",
        "GeoZcx/A-deeply-supervised-image-fusion-network-for-change-detection-in-remote-sensing-"
        "images pytorch version/DSIFN.py (c90e13d)",
        mapped,
        aliases,
        dropped,
    )


KEY_TABLES = {"bsfnet": bsfnet_table, "ifn": ifn_table}
"""Each model's key-table builder (takes our model's state-dict keys)."""


def key_table(model_name: str, model: nn.Module) -> KeyTable:
    """The key table of `model_name`'s released checkpoint, for this `model`'s keys."""
    if model_name not in KEY_TABLES:
        raise CdbenchError(
            f"no released-checkpoint key table for model {model_name!r}; "
            f"known: {', '.join(sorted(KEY_TABLES))}"
        )
    return KEY_TABLES[model_name](model.state_dict().keys())


@dataclass(frozen=True)
class LoadedWeights:
    """What --weights loaded: recorded in the metrics file and the MLflow run."""

    path: Path
    sha256: str
    provenance: str
    """RELEASED_PROVENANCE or CDBENCH_PROVENANCE."""
    format: str
    """"cdbench", "bsfnet net_CD" or "ifn DSIFN.py state dict"."""
    coverage: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    """Extra fields the file carries (BSFNet's `epoch` and `metric`; our run and step)."""

    def record(self) -> dict[str, Any]:
        """The `weights` entry of the metrics file."""
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "provenance": self.provenance,
            "format": self.format,
            "key_coverage": dict(self.coverage),
            **self.details,
        }


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def released_path(model_name: str) -> Path:
    """The fixed place of `model_name`'s released checkpoint, checked to be there.

    Raises:
        CdbenchError: no released checkpoint is known for the model, or the file is missing
            (the message says where to download it from and where to put it).
    """
    if model_name not in RELEASED:
        raise CdbenchError(
            f"no released checkpoint is known for model {model_name!r}; "
            f"known: {', '.join(sorted(RELEASED))}"
        )
    entry = RELEASED[model_name]
    if not entry.path.is_file():
        raise CdbenchError(
            f"{entry.path}: no released {model_name} checkpoint there. {entry.where} Save it as "
            f"{entry.path} (or pass its path with --weights FILE)"
        )
    return entry.path


def load_weights(path: Path, model_name: str, trainable: nn.Module) -> LoadedWeights:
    """Load the checkpoint at `path` into `trainable` (a `Trainable`: `.model` and `.loss`).

    Args:
        path: a cdbench checkpoint, BSFNet's released `{'net_CD', ...}` or a DSIFN.py state dict.
        model_name: the experiment's model ("bsfnet" or "ifn").
        trainable: the experiment's model and loss, freshly built (random weights).

    Returns:
        The file's identity and provenance (see `LoadedWeights`).

    Raises:
        CdbenchError: the file is missing or unreadable, its SHA-256 is not the known one,
            its format is not one of the three, or a key is unknown, missing, of another shape
            or an alias that differs (the message names the key).
    """
    if not path.is_file():
        raise CdbenchError(
            f"{path}: no such checkpoint file (--weights); give the path of an existing "
            f"checkpoint: a cdbench best.pt / last.pt, or an author's released file (for the "
            f"model's own, put it under {RELEASED_DIR}/ and pass --released)"
        )
    sha256 = sha256_of(path)
    known = {entry.path.resolve(): entry for entry in RELEASED.values()}.get(path.resolve())
    if known is not None and known.sha256 is not None and known.sha256 != sha256:
        raise CdbenchError(
            f"{path}: SHA-256 {sha256}, expected {known.sha256}: not the released file, or a "
            f"damaged copy. {known.where}"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CdbenchError(
            f"{path}: not a PyTorch checkpoint torch.load can read with weights_only=True "
            f"({type(exc).__name__}: {exc}). "
            f"Expected a cdbench checkpoint, BSFNet's released {{'net_CD', 'epoch', 'metric'}} or "
            f"a DSIFN.py state dict (IFN's Keras .h5 weights cannot be loaded)"
        ) from exc
    if not isinstance(payload, dict):
        raise CdbenchError(f"{path}: holds a {type(payload).__name__}, expected a dict")
    if "model_and_loss" in payload:
        return _load_cdbench(path, sha256, payload, model_name, trainable)
    if "net_CD" in payload:
        _expect_model(path, "bsfnet", model_name, "BSFNet's released checkpoint ('net_CD')")
        model = trainable.model
        assert isinstance(model, nn.Module), "a Trainable's .model is a module"
        table = key_table("bsfnet", model)
        _load_by_table(path, payload["net_CD"], table, model)
        details = {
            f"released_{key}": _plain(payload[key]) for key in ("epoch", "metric") if key in payload
        }
        return LoadedWeights(
            path, sha256, RELEASED_PROVENANCE, "bsfnet net_CD", table.coverage(), details
        )
    if any(isinstance(key, str) and key.startswith(("t1_base.", "o1_conv1.")) for key in payload):
        _expect_model(path, "ifn", model_name, "a DSIFN.py state dict (t1_base., o1_conv1., ...)")
        model = trainable.model
        assert isinstance(model, nn.Module), "a Trainable's .model is a module"
        table = key_table("ifn", model)
        _load_by_table(path, payload, table, model)
        return LoadedWeights(
            path, sha256, RELEASED_PROVENANCE, "ifn DSIFN.py state dict", table.coverage()
        )
    shown = ", ".join(repr(key) for key in list(payload)[:5])
    raise CdbenchError(
        f"{path}: unknown checkpoint format (first keys: {shown}); expected a cdbench checkpoint "
        f"('model_and_loss'), BSFNet's released checkpoint ('net_CD') or a DSIFN.py state dict "
        f"('t1_base.features.0.weight', 'o1_conv1.0.weight', ...)"
    )


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a small value stored in a checkpoint (a 0-d tensor -> a number)."""
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value if isinstance(value, int | float | str | bool) or value is None else repr(value)


def _expect_model(path: Path, found: str, model_name: str, what: str) -> None:
    if found != model_name:
        raise CdbenchError(
            f"{path}: {what} is a {found} checkpoint, but the experiment's model is "
            f"{model_name!r}; evaluate it with a {found} experiment"
        )


def _load_cdbench(
    path: Path, sha256: str, payload: dict[str, Any], model_name: str, trainable: nn.Module
) -> LoadedWeights:
    """One of our checkpoints: the model (and the loss's own parameters) as saved."""
    config = payload.get("config") or {}
    if config.get("model") not in (None, model_name):
        raise CdbenchError(
            f"{path}: a cdbench checkpoint of model {config.get('model')!r} (run "
            f"{config.get('run')!r}), but the experiment's model is {model_name!r}"
        )
    try:
        trainable.load_state_dict(payload["model_and_loss"])
    except RuntimeError as exc:
        raise CdbenchError(
            f"{path}: its weights do not fit experiment's model and loss ({exc}); evaluate it "
            f"with the experiment it was trained as ({config.get('experiment')!r})"
        ) from exc
    details = {
        "trained_run": config.get("run", ""),
        "trained_step": payload.get("step"),
        "trained_config_digest": payload.get("digest", ""),
    }
    return LoadedWeights(path, sha256, CDBENCH_PROVENANCE, "cdbench", {}, details)


def translate_state_dict(
    path: Path, state: Mapping[str, Tensor], table: KeyTable, ours: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """The released `state` renamed to our keys by `table`, every key accounted for.

    Raises:
        CdbenchError: naming a key the table does not know, a mapped key `state` lacks, a shape
            other than ours, or an alias that differs from the key it repeats.
    """
    where = f"{path} ({table.source})"
    unknown = [
        key
        for key in state
        if key not in table.mapped and key not in table.aliases and key not in table.dropped
    ]
    if unknown:
        raise CdbenchError(
            f"{where}: unknown key {unknown[0]!r}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; the {table.model} key table maps, aliases or drops every key of the released "
            f"file and nothing else: not a {table.model} checkpoint of that code?"
        )
    missing = [key for key in (*table.mapped, *table.aliases) if key not in state]
    if missing:
        raise CdbenchError(
            f"{where}: missing key {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f", which maps to our {table.mapped.get(missing[0], table.aliases.get(missing[0]))!r}"
        )
    translated = {}
    for key, target in table.mapped.items():
        tensor = state[key]
        if not isinstance(tensor, Tensor) or tensor.shape != ours[target].shape:
            shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise CdbenchError(
                f"{where}: key {key!r} has shape {shape}, expected {tuple(ours[target].shape)} "
                f"(our {target!r})"
            )
        translated[target] = tensor
    for key, repeated in table.aliases.items():
        if not torch.equal(state[key], state[repeated]):
            raise CdbenchError(
                f"{where}: key {key!r} differs from {repeated!r}: it must hold the same tensor "
                f"(our model keeps one copy: {table.mapped[repeated]!r}); this checkpoint "
                f"cannot be evaluated faithfully with our {table.model}"
            )
    return translated


def _load_by_table(path: Path, state: Any, table: KeyTable, model: nn.Module) -> None:
    if not isinstance(state, Mapping):
        raise CdbenchError(f"{path}: expected a state dict, found {type(state).__name__}")
    translated = translate_state_dict(path, state, table, model.state_dict())
    model.load_state_dict(translated, strict=True)
