"""The data pipeline as a user runs it, on fixture archives served from 127.0.0.1.

`cdbench download` (sources pointed at a local server) -> `cdbench prepare --allow-partial` ->
`ChangeDetectionDataset` (tiles, and whole images for LEVIR-CD) -> a `DataLoader` with two
worker processes. Every expectation is derived from the fixture generator
(`tests/data/archives.py`): the pixels it drew, the change masks, the counts, the archives'
bytes.

End-to-end: the data commands together, not one module of benchmark/.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from benchmark import cli
from benchmark.data import cache
from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.datasets import DATASETS
from benchmark.data.download import sidecar_path
from benchmark.data.images import tile_name, tile_offsets
from benchmark.data.layout import PARTS, SPLITS, WHOLE
from benchmark.data.sources import Archive
from benchmark.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PairNormalize, PairTransform
from benchmark.errors import DataError
from tests.conftest import write_repo_params
from tests.data.archives import (
    CDD_ROOT,
    CDD_SMALL,
    LEVIR_SMALL,
    cdd_mask,
    cdd_members,
    change_pair,
    write_cdd_archive,
    write_levir_archives,
)
from tests.httpserver import LocalServer, Route

LEVIR_SIZE = 512
TILE = 256
TILES_PER_IMAGE = (LEVIR_SIZE // TILE) ** 2
CDD_SIZE = 256
NORMALIZE = PairNormalize((IMAGENET_MEAN,) * 2, (IMAGENET_STD,) * 2)


pytestmark = pytest.mark.usefixtures("fast_download_retries")


def cdbench(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `cdbench <args>` (the repository's params.yaml), require exit 0, return its stdout."""
    params = write_repo_params(tmp_path / "params.yaml")
    code = cli.main(["--params", str(params), *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def serve(
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    dataset: str,
    files: dict[str, bytes],
    published_md5: bool,
) -> None:
    """Serve `files` and point `dataset`'s archives at them (md5 published or, as CDD, not)."""
    archives = []
    for name, data in files.items():
        server.add(f"/{dataset}/{name}", Route(data))
        md5 = hashlib.md5(data).hexdigest() if published_md5 else None
        archives.append(Archive(name, md5, (server.url(f"/{dataset}/{name}"),)))
    served = dataclasses.replace(DATASETS[dataset], archives=tuple(archives))
    monkeypatch.setitem(DATASETS, dataset, served)


def download_twice(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    server: LocalServer,
    dataset: str,
    raw: Path,
    files: dict[str, bytes],
) -> None:
    """First run fetches every archive; the second verifies them and asks for nothing."""
    printed = cdbench(tmp_path, capsys, "download", dataset, "--out", str(raw))
    assert printed.splitlines() == [f"verified {raw / name}" for name in files]
    for name, data in files.items():
        assert (raw / name).read_bytes() == data
    assert sorted(r.path for r in server.requests) == sorted(f"/{dataset}/{n}" for n in files)

    asked = len(server.requests)
    assert cdbench(tmp_path, capsys, "download", dataset, "--out", str(raw)) == printed
    assert len(server.requests) == asked


def check_manifest_files(root: Path, group: dict[str, dict[str, Any]]) -> None:
    """Per split: the manifest lists exactly the files on disk, with their sha256 (but the
    decoded-pairs cache, derived from them and checked in tests/test_cache.py)."""
    for split in SPLITS:
        info = group[split]
        folder = root / split
        assert (folder / cache.ARRAY).is_file() and (folder / cache.INDEX).is_file()
        derived = {cache.ARRAY, cache.INDEX}
        on_disk = {
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and p.name not in derived
        }
        assert set(info["files"]) == on_disk
        assert len(on_disk) == len(PARTS) * info["pairs"]
        for key, digest in info["files"].items():
            assert hashlib.sha256((folder / key).read_bytes()).hexdigest() == digest


def changed_fraction(dataset: ChangeDetectionDataset) -> float:
    changed = total = 0
    for index in range(len(dataset)):
        mask = dataset[index]["mask"]
        changed += int(mask.sum())
        total += mask.numel()
    return changed / total


def check_loader(dataset: ChangeDetectionDataset, side: int) -> None:
    """Two worker processes, a flip shared by dates and mask, per-date normalisation.

    Each batch must equal the same samples transformed by hand from the untransformed dataset.
    """
    pickle.loads(pickle.dumps(dataset))  # what a spawned worker needs
    plain = {dataset[i]["name"]: dataset[i] for i in range(len(dataset))}
    dataset.transforms = v2.Compose([PairTransform(v2.RandomHorizontalFlip(p=1.0)), NORMALIZE])
    loader = DataLoader(dataset, batch_size=2, shuffle=True, num_workers=2)
    seen = []
    for batch in loader:
        count = len(batch["name"])
        assert batch["image"].shape == (count, 2, 3, side, side)
        assert batch["image"].dtype == torch.float32
        assert batch["mask"].shape == (count, 1, side, side)
        assert batch["mask"].dtype == torch.uint8
        assert set(batch["mask"].unique().tolist()) <= {0, 1}
        for image, mask, name in zip(batch["image"], batch["mask"], batch["name"], strict=True):
            expected = NORMALIZE({**plain[name], "image": plain[name]["image"].flip(-1)})
            torch.testing.assert_close(image, expected["image"])
            assert torch.equal(mask, plain[name]["mask"].flip(-1))
        seen += batch["name"]
    assert sorted(seen) == sorted(plain)
    dataset.transforms = None


def test_levir_cd_download_prepare_load(
    tmp_path: Path,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    built = write_levir_archives(tmp_path / "built", LEVIR_SMALL, size=LEVIR_SIZE)
    files = {path.name: path.read_bytes() for path in built.values()}
    serve(server, monkeypatch, "levir-cd", files, published_md5=True)
    raw, out = tmp_path / "data" / "raw" / "levir-cd", tmp_path / "data" / "prepared" / "levir-cd"

    download_twice(tmp_path, capsys, server, "levir-cd", raw, files)
    prepare = ["prepare", "levir-cd", "--raw", str(raw), "--out", str(out), "--allow-partial"]
    printed = cdbench(tmp_path, capsys, *prepare)

    tiles = {split: LEVIR_SMALL[split] * TILES_PER_IMAGE for split in SPLITS}
    assert printed == f"prepared levir-cd in {out}: {json.dumps(tiles)}\n"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no scratch left
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["allow_partial"] is True
    assert manifest["sources"] == {
        name: {"md5": hashlib.md5(data).hexdigest(), "bytes": len(data)}
        for name, data in files.items()
    }
    for split in SPLITS:
        assert manifest["counts"][split]["found"] == tiles[split]
        assert manifest["counts"][split]["found_images"] == LEVIR_SMALL[split]
        assert manifest["splits"][split]["pairs"] == tiles[split]
        assert manifest["whole"][split]["pairs"] == LEVIR_SMALL[split]
        names = (out / "list" / f"{split}.txt").read_text().split()
        assert sorted(names) == sorted(f"{n}.png" for n in ChangeDetectionDataset(out, split).names)
    assert manifest["duplicates_across_splits"] == 0
    check_manifest_files(out, manifest["splits"])
    check_manifest_files(out / WHOLE, manifest["whole"])

    for split in SPLITS:
        tiles_ds = ChangeDetectionDataset(out, split)
        whole_ds = ChangeDetectionDataset(out, split, whole=True)
        stems = [f"{split}_{index}" for index in range(1, LEVIR_SMALL[split] + 1)]
        assert sorted(whole_ds.names) == sorted(stems)
        offsets = tile_offsets(LEVIR_SIZE, LEVIR_SIZE, TILE)
        assert sorted(tiles_ds.names) == sorted(
            tile_name(stem, row, col) for stem in stems for row, col in offsets
        )
        fraction = manifest["splits"][split]["changed_fraction"]
        assert changed_fraction(tiles_ds) == fraction
        assert changed_fraction(whole_ds) == fraction
        assert manifest["whole"][split]["changed_fraction"] == fraction

        by_name = {name: index for index, name in enumerate(tiles_ds.names)}
        for index, stem in enumerate(whole_ds.names):
            whole = whole_ds[index]
            assert whole["name"] == stem
            # The pixels the generator drew arrive unchanged, label as {0, 1}.
            a, b, change = change_pair(0, split, int(stem.rsplit("_", 1)[1]), LEVIR_SIZE)
            assert torch.equal(
                whole["image"], torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2)
            )
            assert torch.equal(whole["mask"][0], torch.from_numpy(change.astype(np.uint8)))
            # The tiles put back at the offsets their names give are exactly the whole image.
            image = torch.zeros_like(whole["image"])
            mask = torch.zeros_like(whole["mask"])
            for row, col in offsets:
                tile = tiles_ds[by_name[tile_name(stem, row, col)]]
                assert tile["image"].shape == (2, 3, TILE, TILE)
                image[..., row : row + TILE, col : col + TILE] = tile["image"]
                mask[..., row : row + TILE, col : col + TILE] = tile["mask"]
            assert torch.equal(image, whole["image"])
            assert torch.equal(mask, whole["mask"])

    check_loader(ChangeDetectionDataset(out, "train"), TILE)
    check_loader(ChangeDetectionDataset(out, "test", whole=True), LEVIR_SIZE)


def test_cdd_download_prepare_load(
    tmp_path: Path,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The fixture CDD archive is a zip named `.rar`: both stages read the format from its bytes."""
    archive = write_cdd_archive(tmp_path / "built")
    files = {archive.name: archive.read_bytes()}
    serve(server, monkeypatch, "cdd", files, published_md5=False)
    raw, out = tmp_path / "data" / "raw" / "cdd", tmp_path / "data" / "prepared" / "cdd"

    download_twice(tmp_path, capsys, server, "cdd", raw, files)
    md5 = hashlib.md5(files[archive.name]).hexdigest()
    assert sidecar_path(raw / archive.name).read_text() == f"{md5}  {archive.name}\n"
    prepare = ["prepare", "cdd", "--raw", str(raw), "--out", str(out), "--allow-partial"]
    printed = cdbench(tmp_path, capsys, *prepare)

    assert printed == f"prepared cdd in {out}: {json.dumps(dict(CDD_SMALL))}\n"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["allow_partial"] is True
    assert manifest["sources"] == {archive.name: {"md5": md5, "bytes": len(files[archive.name])}}
    assert manifest["duplicates_across_splits"] == 0
    check_manifest_files(out, manifest["splits"])
    assert not (out / WHOLE).exists()
    with pytest.raises(DataError, match=f"{out / WHOLE / 'val'}: no whole-image folder"):
        ChangeDetectionDataset(out, "val", whole=True)

    members = cdd_members(CDD_SMALL)
    for split in SPLITS:
        dataset = ChangeDetectionDataset(out, split)
        # Names restart at 00000 in every split, as in the archive.
        assert dataset.names == [f"{index:05d}" for index in range(CDD_SMALL[split])]
        assert manifest["counts"][split]["found"] == CDD_SMALL[split]
        assert changed_fraction(dataset) == manifest["splits"][split]["changed_fraction"]
        for index, name in enumerate(dataset.names):
            sample = dataset[index]
            assert sample["image"].shape == (2, 3, CDD_SIZE, CDD_SIZE)
            # JPEG dates are stored losslessly; JPEG-like grey labels are binarised at 128.
            for date, part in enumerate("AB"):
                with Image.open(io.BytesIO(members[f"{CDD_ROOT}/{split}/{part}/{name}.jpg"])) as im:
                    decoded = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
                assert torch.equal(sample["image"][date], decoded)
            expected_mask = cdd_mask(split, index, size=CDD_SIZE).astype(np.uint8)
            assert torch.equal(sample["mask"][0], torch.from_numpy(expected_mask))

    check_loader(ChangeDetectionDataset(out, "train"), CDD_SIZE)
