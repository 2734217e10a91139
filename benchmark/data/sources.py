"""The types of a dataset's download sources: archives (file name, md5, ordered URLs) and pages
for fetching them by hand.

Pure data, read by `benchmark.data.download`; the values are each dataset's
(`benchmark.data.datasets`). Every archive has an ordered list of sources, and its md5 is
always checked where one is published.
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
