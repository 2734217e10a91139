"""Tests of the ImageNet weights step: `benchmark.models.weights_fetch` (`cdbench weights`)
against a local HTTP server (tests/httpserver.py), the hash check on loading, and pretrained
training reading the weights folder.

Served and planted files are named as torchvision names its files, after the first 8 hex
digits of their own SHA-256, so every check runs for real; `WeightFile`s pointing at them
replace `benchmark.models.weights.RESNET50` / `VGG16` where the code under test reads those.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from benchmark import checkpoint
from benchmark.cli import main
from benchmark.config import load_params
from benchmark.errors import CdbenchError, DownloadError
from benchmark.models import weights
from benchmark.models.weights import WeightFile, verify_file
from benchmark.models.weights_fetch import fetch_weights
from benchmark.training.loop import train_run
from tests.httpserver import LocalServer, Route, closed_port_url

REPO = Path(__file__).resolve().parents[1]


def prefix_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def payload(seed: int, size: int = 200_000) -> bytes:
    return random.Random(seed).randbytes(size)


def serve(server: LocalServer, stem: str, data: bytes, body: bytes | None = None) -> WeightFile:
    """Serve `body` (default `data`) under the torchvision-style name of `data`'s hash."""
    path = f"/models/{stem}-{prefix_of(data)}.pth"
    server.add(path, Route(body=data if body is None else body))
    return WeightFile(url=server.url(path), source=f"test {stem}")


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class TestWeightFile:
    def test_torchvision_entries_name_the_published_files(self) -> None:
        assert weights.RESNET50.url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
        assert weights.VGG16.url == "https://download.pytorch.org/models/vgg16-397923af.pth"
        assert (weights.RESNET50.sha256_prefix, weights.VGG16.sha256_prefix) == (
            "0676ba61",
            "397923af",
        )
        assert weights.RESNET50.source == "torchvision ResNet50_Weights.IMAGENET1K_V1"
        assert weights.VGG16.source == "torchvision VGG16_Weights.IMAGENET1K_V1"
        assert weights.imagenet_files() == (weights.RESNET50, weights.VGG16)

    def test_name_without_a_hash_is_rejected(self) -> None:
        with pytest.raises(ValueError, match=r"'resnet50\.pth'.*SHA-256 prefix"):
            WeightFile(url="https://example.invalid/resnet50.pth", source="test")


class TestVerify:
    def test_mismatch_names_file_prefix_hash_and_fix(self, tmp_path: Path) -> None:
        data = payload(1)
        file = WeightFile(url=f"https://x.invalid/a-{prefix_of(data)}.pth", source="test a")
        path = file.path(tmp_path)
        path.write_bytes(payload(2))
        with pytest.raises(CdbenchError) as caught:
            verify_file(path, file)
        message = str(caught.value)
        actual = hashlib.sha256(payload(2)).hexdigest()
        assert f"{path}: SHA-256 {actual} does not start with {file.sha256_prefix}" in message
        assert "dvc repro weights" in message and file.url in message

    def test_hash_is_cached_but_a_changed_file_is_hashed_again(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        data = payload(3)
        file = WeightFile(url=f"https://x.invalid/a-{prefix_of(data)}.pth", source="test a")
        path = file.path(tmp_path)
        path.write_bytes(data)
        calls: list[str] = []
        real = hashlib.file_digest

        def counting(f, digest):  # type: ignore[no-untyped-def]
            calls.append(digest)
            return real(f, digest)

        monkeypatch.setattr(weights.hashlib, "file_digest", counting)
        verify_file(path, file)
        verify_file(path, file)
        assert len(calls) == 1
        path.write_bytes(data + b"tampered")  # another size: another cache key
        with pytest.raises(CdbenchError, match="does not start with"):
            verify_file(path, file)
        assert len(calls) == 2


@pytest.mark.usefixtures("fast_weights_timeout")
class TestFetch:
    @pytest.fixture
    def fast_weights_timeout(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from benchmark.models import weights_fetch

        monkeypatch.setattr(weights_fetch, "TIMEOUT_S", 5.0)

    def test_downloads_verifies_and_leaves_only_the_files(
        self, server: LocalServer, tmp_path: Path
    ) -> None:
        first, second = payload(10), payload(11, size=50_000)
        files = [serve(server, "resnet50", first), serve(server, "vgg16", second)]
        out = tmp_path / "weights"
        fetched = fetch_weights(out, files, progress=False)
        assert [(f.path.name, f.downloaded) for f in fetched] == [
            (files[0].name, True),
            (files[1].name, True),
        ]
        assert (out / files[0].name).read_bytes() == first
        assert (out / files[1].name).read_bytes() == second
        assert files_in(out) == sorted(f.name for f in files)  # no temporary file left

    def test_files_present_and_valid_are_not_fetched_again(
        self, server: LocalServer, tmp_path: Path
    ) -> None:
        data = payload(12)
        file = serve(server, "resnet50", data)
        out = tmp_path / "weights"
        fetch_weights(out, [file], progress=False)
        asked = len(server.requests)
        (again,) = fetch_weights(out, [file], progress=False)
        assert not again.downloaded and len(server.requests) == asked == 1
        # placed by hand, with no server reachable: verified, nothing fetched
        by_hand = tmp_path / "by-hand"
        by_hand.mkdir()
        offline = WeightFile(url=closed_port_url(f"/{file.name}"), source="test")
        shutil.copy(out / file.name, by_hand / file.name)
        (placed,) = fetch_weights(by_hand, [offline], progress=False)
        assert placed.path == by_hand / file.name and not placed.downloaded

    def test_download_whose_hash_differs_is_refused_and_not_kept(
        self, server: LocalServer, tmp_path: Path
    ) -> None:
        expected, served = payload(13), payload(14)
        file = serve(server, "vgg16", expected, body=served)
        out = tmp_path / "weights"
        with pytest.raises(DownloadError) as caught:
            fetch_weights(out, [file], progress=False)
        message = str(caught.value)
        assert file.name in message and file.url in message and f"{out}/" in message
        assert file.sha256_prefix in message and hashlib.sha256(served).hexdigest() in message
        assert files_in(out) == []

    def test_unreachable_source_names_files_urls_and_folder(self, tmp_path: Path) -> None:
        files = [
            WeightFile(url=closed_port_url("/models/resnet50-0676ba61.pth"), source="test r"),
            WeightFile(url=closed_port_url("/models/vgg16-397923af.pth"), source="test v"),
        ]
        out = tmp_path / "weights"
        with pytest.raises(DownloadError) as caught:
            fetch_weights(out, files, progress=False)
        message = str(caught.value)
        for file in files:
            assert file.name in message and file.url in message
        assert f"could not fetch 2 ImageNet weight file(s) into {out}/" in message
        assert "dvc repro weights" in message and "verifies" in message
        assert files_in(out) == []

    def test_one_file_failing_still_fetches_the_other(
        self, server: LocalServer, tmp_path: Path
    ) -> None:
        good = serve(server, "resnet50", payload(15))
        missing = WeightFile(url=server.url("/models/vgg16-397923af.pth"), source="test v")
        out = tmp_path / "weights"
        with pytest.raises(DownloadError) as caught:
            fetch_weights(out, [good, missing], progress=False)
        message = str(caught.value)
        assert "could not fetch 1 " in message and "404" in message
        assert missing.url in message and good.url not in message
        assert files_in(out) == [good.name]

    def test_bad_file_present_is_replaced_by_a_verified_download(
        self, server: LocalServer, tmp_path: Path
    ) -> None:
        data = payload(16)
        file = serve(server, "resnet50", data)
        out = tmp_path / "weights"
        out.mkdir()
        file.path(out).write_bytes(b"truncated")
        (fetched,) = fetch_weights(out, [file], progress=False)
        assert fetched.downloaded and file.path(out).read_bytes() == data

    def test_bad_file_present_is_kept_and_named_when_the_download_fails(
        self, tmp_path: Path
    ) -> None:
        file = WeightFile(url=closed_port_url("/resnet50-0676ba61.pth"), source="test")
        out = tmp_path / "weights"
        out.mkdir()
        file.path(out).write_bytes(b"truncated")
        with pytest.raises(DownloadError, match="the file present fails its check"):
            fetch_weights(out, [file], progress=False)
        assert file.path(out).read_bytes() == b"truncated"

    def test_partial_file_of_an_interrupted_run_is_removed(
        self, server: LocalServer, tmp_path: Path
    ) -> None:
        file = serve(server, "resnet50", payload(17))
        out = tmp_path / "weights"
        out.mkdir()
        (out / f"{file.name}.0123abcd.partial").write_bytes(b"half")
        fetch_weights(out, [file], progress=False)
        assert files_in(out) == [file.name]


class TestCommand:
    def test_fetches_into_out_and_reports_each_file(
        self,
        server: LocalServer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        resnet = serve(server, "resnet50", payload(20))
        vgg = serve(server, "vgg16", payload(21))
        monkeypatch.setattr(weights, "RESNET50", resnet)
        monkeypatch.setattr(weights, "VGG16", vgg)
        out = tmp_path / "weights"
        assert main(["weights", "--out", str(out)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines == [
            f"downloaded, verified: {out / resnet.name}",
            f"downloaded, verified: {out / vgg.name}",
        ]
        assert main(["weights", "--out", str(out)]) == 0
        assert capsys.readouterr().out.count("present, verified:") == 2

    def test_default_folder_is_data_weights_dir(
        self,
        server: LocalServer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        assert params["data"]["weights_dir"] == "data/weights"
        params["data"]["weights_dir"] = str(tmp_path / "elsewhere")
        params_path = tmp_path / "params.yaml"
        params_path.write_text(yaml.safe_dump(params))
        file = serve(server, "vgg16", payload(22))
        monkeypatch.setattr(weights, "imagenet_files", lambda: (file,))
        assert main(["--params", str(params_path), "weights"]) == 0
        assert files_in(tmp_path / "elsewhere") == [file.name]

    def test_offline_exits_1_naming_files_urls_and_folder(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        resnet = WeightFile(url=closed_port_url("/resnet50-0676ba61.pth"), source="test r")
        vgg = WeightFile(url=closed_port_url("/vgg16-397923af.pth"), source="test v")
        monkeypatch.setattr(weights, "RESNET50", resnet)
        monkeypatch.setattr(weights, "VGG16", vgg)
        out = tmp_path / "weights"
        assert main(["weights", "--out", str(out)]) == 1
        error = capsys.readouterr().err
        assert "cdbench weights: error: could not fetch 2 ImageNet weight" in error
        for file in (resnet, vgg):
            assert file.name in error and file.url in error
        assert f"{out}/" in error


# --- training reads the weights folder --------------------------------------------------------


def plant_resnet50(folder: Path) -> tuple[WeightFile, dict[str, torch.Tensor]]:
    """A randomly initialised ResNet-50 state dict saved as `resnet50-<its hash>.pth`."""
    torch.manual_seed(7)
    state = torchvision.models.resnet50(weights=None).state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / "scratch"
    torch.save(state, scratch)
    prefix = prefix_of(scratch.read_bytes())
    file = WeightFile(url=f"https://x.invalid/resnet50-{prefix}.pth", source="test resnet50")
    scratch.rename(file.path(folder))
    return file, state


@pytest.mark.slow
def test_pretrained_training_starts_from_the_folder(
    tiny_pretrained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = load_params(tiny_pretrained)
    (spec,) = params.runs()
    out = tmp_path / "checkpoints"
    file, state = plant_resnet50(Path(params.data.weights_dir))
    monkeypatch.setattr(weights, "RESNET50", file)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"training attempted a download: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    train_run(params, spec, out, tracking=False)
    trained = checkpoint.load(out / "last.pt")["model_and_loss"]
    prefix = "model.encoder.resnet."
    encoder = {k.removeprefix(prefix): v for k, v in trained.items() if k.startswith(prefix)}
    used = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert encoder.keys() == used.keys()
    for key, value in used.items():  # the frozen encoder still holds the planted weights
        assert torch.equal(encoder[key], value), key


def test_pretrained_training_without_the_file_names_it_and_the_stage(
    tiny_pretrained: Path, tmp_path: Path
) -> None:
    params = load_params(tiny_pretrained)
    (spec,) = params.runs()
    out = tmp_path / "checkpoints"
    folder = Path(params.data.weights_dir)
    with pytest.raises(CdbenchError) as caught:
        train_run(params, spec, out, tracking=False)
    message = str(caught.value)
    assert str(folder / "resnet50-0676ba61.pth") in message
    assert weights.RESNET50.url in message and "dvc repro weights" in message
    assert not (out / "last.pt").exists()
