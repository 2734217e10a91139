"""Fetch and verify the encoders' ImageNet weights into one folder (`cdbench weights`).

The DVC stage `weights` runs this into `params.yaml` `data.weights_dir` (`data/weights`);
training reads the files there (benchmark/models/weights.py) and never downloads.

For each file of `benchmark.models.weights.imagenet_files()` (torchvision's
`ResNet50_Weights.IMAGENET1K_V1` and `VGG16_Weights.IMAGENET1K_V1`; URL and file name from
torchvision's weights API, `weights.url`):

1. If `<folder>/<file name>` is already there (fetched earlier, or put there by hand) and its
   SHA-256 starts with the prefix its name carries, nothing is fetched.
2. Otherwise it is downloaded as `torch.hub.download_url_to_file(url, dst, hash_prefix=...)`
   (torchvision's own mechanism) does: the body is streamed to a temporary
   `<file name>.<random>.partial` beside the destination while its SHA-256 is computed, the
   hash's prefix is checked, and only then is the file renamed, atomically, to its name; a
   download that fails or does not verify is deleted. A present file that failed its check
   stays until a verified copy replaces it. `.partial` files left by an interrupted run are
   deleted first. The bytes are counted by the project's progress bar
   (benchmark/progress.py: ETA on a terminal, a few plain lines in a log), not torch.hub's,
   which fills a log with carriage-return redraws.
3. When some file could not be fetched (offline, or any source failing), `DownloadError` names
   each such file, its URL, why it failed, and the folder to put it in; re-running the stage
   then verifies the files placed there and goes on.

Departures from `torchvision.models.WeightsEnum.get_state_dict` (torch.hub's
`load_state_dict_from_url`): the folder is the project's, not `$TORCH_HOME/hub/checkpoints`;
a file already present is verified too (torch.hub trusts it by name); connections time out
(`TIMEOUT_S`) instead of waiting forever; the body is streamed with `requests` (asking for no
content encoding, so the bytes hashed are the file's) instead of `urllib`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from benchmark.errors import CdbenchError, DownloadError
from benchmark.models import weights
from benchmark.models.weights import WeightFile
from benchmark.progress import progress_bar, say

TIMEOUT_S = 60.0
"""Seconds a connection may wait for the server (to connect, or for the next bytes)."""
CHUNK_BYTES = 1 << 20
"""Bytes read, written and hashed at a time."""


@dataclass(frozen=True)
class Fetched:
    """A verified weight file in the folder, and whether this run downloaded it."""

    path: Path
    downloaded: bool


def fetch_weights(
    out_dir: Path, files: Sequence[WeightFile] | None = None, progress: bool = True
) -> list[Fetched]:
    """Make `out_dir` hold every weight file, verified (see the module docstring).

    Args:
        out_dir: the weights folder (created if absent).
        files: the files to fetch; default `weights.imagenet_files()` (ResNet-50 and VGG16).
        progress: show a progress bar while downloading.

    Returns:
        One `Fetched` per file, in order.

    Raises:
        DownloadError: some file could not be fetched or did not verify; the message names
            each such file, its URL, the reason and the folder to put it in by hand.
    """
    files = weights.imagenet_files() if files is None else tuple(files)
    out_dir.mkdir(parents=True, exist_ok=True)
    fetched: list[Fetched] = []
    failures: list[tuple[WeightFile, str]] = []
    for file in files:
        for leftover in out_dir.glob(f"{file.name}.*.partial"):
            leftover.unlink()
        path = file.path(out_dir)
        present_problem = ""
        if path.is_file():
            try:
                weights.verify_file(path, file)
            except CdbenchError as exc:
                present_problem = f"the file present fails its check ({exc}); "
                say(f"{path}: does not verify; fetching it again")
            else:
                fetched.append(Fetched(path, downloaded=False))
                continue
        try:
            _download(file, path, progress)
        except Exception as exc:  # any failing source is reported with the others, not raised
            failures.append((file, f"{present_problem}{type(exc).__name__}: {exc}"))
            continue
        fetched.append(Fetched(path, downloaded=True))
    if failures:
        raise DownloadError(_failure_message(failures, out_dir))
    return fetched


def _download(file: WeightFile, path: Path, progress: bool) -> None:
    """Download `file` to `path` as torch.hub's `download_url_to_file` does: to a temporary
    `.partial` name beside it, the SHA-256 prefix checked, then renamed; deleted on failure.

    Raises:
        requests.RequestException: the server could not be reached, timed out or refused.
        CdbenchError: the download's SHA-256 does not start with the prefix of its name.
    """
    say(f"downloading {file.url} -> {path}")
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        digest = _stream(file, partial, progress)
        if not digest.startswith(file.sha256_prefix):
            raise CdbenchError(
                f"the download's SHA-256 {digest} does not start with {file.sha256_prefix}, "
                f"the prefix its name carries: the server sent a damaged or another file; the "
                f"download was deleted"
            )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def _stream(file: WeightFile, partial: Path, progress: bool) -> str:
    """Write the body of `file.url` to `partial`, counting bytes on a progress bar; return its
    SHA-256 (hex), computed as the bytes arrive."""
    sha256 = hashlib.sha256()
    answer = requests.get(
        file.url, stream=True, timeout=TIMEOUT_S, headers={"Accept-Encoding": "identity"}
    )
    with answer:
        answer.raise_for_status()
        total = int(answer.headers.get("Content-Length", 0)) or None
        with (
            partial.open("wb") as out,
            progress_bar(
                desc=f"download {file.name}",
                total=total,
                unit="B",
                unit_scale=True,
                enabled=progress,
            ) as bar,
        ):
            for chunk in answer.iter_content(CHUNK_BYTES):
                out.write(chunk)
                sha256.update(chunk)
                bar.update(len(chunk))
    return sha256.hexdigest()


def _failure_message(failures: list[tuple[WeightFile, str]], out_dir: Path) -> str:
    lines = [f"could not fetch {len(failures)} ImageNet weight file(s) into {out_dir}/:"]
    for file, reason in failures:
        lines.append(f"  {file.name} ({file.source})")
        lines.append(f"    URL: {file.url}")
        lines.append(f"    failed: {reason}")
    lines.append(
        f"Offline (or if these sources fail), download each URL on a connected machine and put "
        f"the file, under exactly that name, in {out_dir}/ (e.g. `curl -L -o "
        f"{failures[0][0].path(out_dir)} {failures[0][0].url}`); then run `dvc repro weights` "
        f"(or `cdbench weights --out {out_dir}`) again: it verifies the files' SHA-256 and "
        f"goes on."
    )
    return "\n".join(lines)
