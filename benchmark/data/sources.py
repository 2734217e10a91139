"""Where each real dataset's archives come from: file names, md5s and ordered source URLs.

Pure data, read by `benchmark.data.download`. Every value is taken from the sources
below:

- LEVIR-CD (Chen & Shi, "A Spatial-Temporal Attention-Based Method and a New Dataset for Remote
  Sensing Image Change Detection", Remote Sensing 12(10):1662, 2020): the per-split archives
  and md5s pinned by torchgeo (`torchgeo/datasets/levircd.py`, class `LEVIRCD`, checked), and
  the Google Drive file ids of the same three zips behind the official page. Their sizes in
  bytes (as recorded for the published files; a wrong size fails only the download, never
  silently passes it) bound each download, so one that passes them is stopped.
- CDD (Lebedev et al., ISPRS Archives XLII-2, 2018): the Google Drive file id cited by the
  CDLab, open-cd and SNUNet READMEs. No checksum is published anywhere, so `md5` is None and
  the downloader records the md5 of the first verified copy in a sidecar file.

Departures from torchgeo: torchgeo lists one URL per split (the Hugging Face mirror) and only
checks the md5 when asked (`checksum=True`). Here every archive has an ordered list of sources
(the mirror pinned to a commit first, then Google Drive), and the md5 is always checked.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Archive:
    """One archive of a dataset.

    Attributes:
        filename: The exact name the archive has on disk (in `data/raw/<dataset>/`).
        md5: Its published md5 (lower-case hex), or None where none is published (CDD).
        urls: Where to fetch it, tried in this order.
        size: Its size in bytes where known (the LEVIR-CD zips), or None (CDD). A download
            is stopped as soon as it passes this size (a server sending an endless body);
            without it, `benchmark.data.download.MAX_UNKNOWN_SIZE_BYTES` is the cap.
    """

    filename: str
    md5: str | None
    urls: tuple[str, ...]
    size: int | None = None


@dataclass(frozen=True)
class ManualPage:
    """A page where a person can fetch the archives by hand (named in error messages).

    Attributes:
        label: What the page is, e.g. "official page".
        url: Its address.
        note: Anything needed to use it (an extraction code), or "".
    """

    label: str
    url: str
    note: str = ""


def google_drive_url(file_id: str) -> str:
    """The direct-download URL of a Google Drive file (the drive.usercontent form).

    Large files answer this URL with an HTML "virus scan" page whose form leads to the file;
    `benchmark.data.download` follows it.
    """
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download"


LEVIR_CD_MIRROR = (
    "https://huggingface.co/datasets/satellite-image-deep-learning/LEVIR-CD/resolve/"
    "6a6bb0a5b389403d81c05e33bf08bc0b9e5f13a6"
)
"""The Hugging Face mirror used by torchgeo, pinned to a commit so the files cannot change."""

CDD_DRIVE_ID = "1GX656JqqOyBi_Ef0w65kDGVto-nHrNs9"

ARCHIVES: dict[str, tuple[Archive, ...]] = {
    "levir-cd": (
        Archive(
            filename="train.zip",
            md5="a638e71f480628652dea78d8544307e4",
            size=1_721_956_862,
            urls=(
                f"{LEVIR_CD_MIRROR}/train.zip",
                google_drive_url("18GuoCuBn48oZKAlEo-LrNwABrFhVALU-"),
            ),
        ),
        Archive(
            filename="val.zip",
            md5="f7b857978524f9aa8c3bf7f94e3047a4",
            size=246_152_048,
            urls=(
                f"{LEVIR_CD_MIRROR}/val.zip",
                google_drive_url("1BqSt4ueO7XAyQ_84mUjswUSJt13ZBuzG"),
            ),
        ),
        Archive(
            filename="test.zip",
            md5="07d5dd89e46f5c1359e2eca746989ed9",
            size=496_305_323,
            urls=(
                f"{LEVIR_CD_MIRROR}/test.zip",
                google_drive_url("1jj3qJD_grJlgIhUWO09zibRGJe0R4Tn0"),
            ),
        ),
    ),
    "cdd": (
        Archive(
            filename="ChangeDetectionDataset.rar",
            md5=None,
            urls=(google_drive_url(CDD_DRIVE_ID),),
        ),
    ),
}
"""Every archive of every real dataset, keyed by dataset name ('cdd', 'levir-cd')."""

MANUAL_PAGES: dict[str, tuple[ManualPage, ...]] = {
    "levir-cd": (
        ManualPage(
            "official page",
            "https://justchenhao.github.io/LEVIR/",
            "Google Drive folder 1dLuzldMRmbBNKPpUkX8Z53hi6NHLrWim",
        ),
        ManualPage("Baidu Netdisk", "https://pan.baidu.com/s/1fzNiOE7elGRmIo2h6MIhZw", "code l7iv"),
        ManualPage(
            "Hugging Face mirror (same md5s)",
            "https://huggingface.co/datasets/satellite-image-deep-learning/LEVIR-CD",
        ),
    ),
    "cdd": (
        ManualPage("Google Drive", f"https://drive.google.com/file/d/{CDD_DRIVE_ID}/view"),
        ManualPage("AI Studio mirror", "https://aistudio.baidu.com/datasetdetail/78676"),
    ),
}
"""Pages for fetching the archives by hand, keyed like `ARCHIVES`."""
