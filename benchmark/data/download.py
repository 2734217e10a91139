"""Fetch and verify a dataset's archives (`cdbench download {cdd,levir-cd}`).

For each archive of dataset `name` (`benchmark.data.datasets.DATASETS[name].archives`):

1. If `<out_dir>/<file>` is already there (placed by hand, or by an earlier run), verify it and
   download nothing.
2. Otherwise try each source URL in order. The body is streamed to `<file>.part` (progress bar
   in bytes); a `.part` left by an interrupted run, or by a dropped connection, is resumed with
   an HTTP Range request (a server that ignores Range and answers 200 makes us start over); a
   dropped connection is retried a bounded number of times. An HTML answer is followed when it
   is a Google Drive "virus scan" page (its download form, or a `confirm=` link) and fails the
   source otherwise, quoting what the page says (quota exceeded, no permission).
3. The finished `.part` must start with the signature of an archive format `cdbench prepare`
   reads (`PK\\x03\\x04` for zip, `Rar!\\x1a\\x07` for RAR, whatever the file's extension, as
   `benchmark.data.extract` reads the format from the first bytes: this catches an HTML page
   saved under the archive's name) and have the expected md5; only then is it renamed,
   atomically, to its final name. A file that fails is deleted and the next source is tried.
   A `<file>.part` left beside a verified archive (e.g. the user placed the file by hand after
   a failed download) is deleted, so it is not kept, and cached by DVC, forever.
   A transfer is bounded: an answer announcing more bytes than the archive's known size
   (`Archive.size`; `MAX_UNKNOWN_SIZE_BYTES` where none is known) fails that source before
   its body is read, and a body that passes the bound is stopped there and its `.part`
   deleted, so a server sending an endless body cannot fill the disk.
4. CDD publishes no md5: the md5 of the first verified copy is recorded in `<file>.md5`
   (`md5sum` format) and enforced from then on. Before it is recorded, the archive's whole
   listing must read (`benchmark.data.extract.list_members`), so a truncated first copy is not
   trusted; messages about a recorded md5 say how to reset it.

When every source of some archive fails, `DownloadError` lists, for each archive still
missing, every URL tried with the reason it failed, the exact file name and md5 expected, the
pages to fetch it by hand, and the folder to put it in.

Reference checked: torchgeo `torchgeo/datasets/levircd.py` (URLs, file names, md5s, through
`torchgeo.datasets.utils.download_and_extract_archive`) and torchvision
`torchvision/datasets/utils.py` (`download_url`, `download_file_from_google_drive`, which now
hands Google Drive to the `gdown` package). Deliberate departures:

- Google Drive is handled here with `requests` and the standard-library HTML parser instead of
  `gdown` (one dependency fewer; the confirm form is the only Drive-specific step).
- Downloads resume from a `.part` file and retry dropped connections; torchvision restarts
  from zero and writes straight to the final name.
- The md5 is always checked (torchgeo checks only with `checksum=True`); a file that does not
  verify is deleted rather than kept.
- Several sources per archive, tried in order, instead of one URL.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3

from benchmark.data.datasets import DATASETS, REAL_DATASETS
from benchmark.data.extract import RAR_MAGIC, ZIP_MAGIC, list_members
from benchmark.data.layout import file_digest
from benchmark.data.sources import Archive
from benchmark.errors import DataError, DownloadError
from benchmark.progress import progress_bar, say

CONNECT_TIMEOUT_S = 15.0
"""Seconds to wait for a server to accept the connection."""
READ_TIMEOUT_S = 60.0
"""Seconds without a single byte from the server before the connection counts as dropped."""
MAX_RESUMES = 5
"""Dropped connections resumed per source before that source is given up."""
RETRY_WAIT_S = 2.0
"""Pause before reconnecting after a dropped connection."""
MAX_HTML_PAGES = 3
"""HTML pages (Google Drive confirm pages) followed per source before giving up."""
MAX_HTML_BYTES = 1 << 20
"""At most this much of an HTML page is read."""
CHUNK_BYTES = 1 << 20
MAX_UNKNOWN_SIZE_BYTES = 16 << 30
"""The most a download may write when the archive's size is not known (CDD): 16 GiB.

A server sending an endless body wrote 20 GB in 20 s before this cap; CDD's archive is a few
GiB. An archive with a known size (`Archive.size`, the LEVIR-CD zips) is held to that size."""
USER_AGENT = "cdbench/0.1 (python-requests)"

SIGNATURES: tuple[bytes, ...] = (*ZIP_MAGIC, *RAR_MAGIC)
"""The first bytes of every archive `cdbench prepare` can read (zip or RAR, any extension)."""

_MD5_PATTERN = re.compile(r"[0-9a-f]{32}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class _SourceFailed(Exception):
    """One URL (or one file already on disk) did not give a verified archive."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _ArchiveFailed(Exception):
    """No source gave a verified archive; `problems` holds one line per source."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class _Expected:
    """The md5 an archive must have, and where that value comes from (for messages)."""

    md5: str | None
    origin: str


def download_dataset(
    name: str, out_dir: Path, archives: Sequence[Archive] | None = None
) -> list[Path]:
    """Make sure every archive of dataset `name` is in `out_dir`, verified.

    Args:
        name: 'cdd' or 'levir-cd' (names the manual download pages in error messages).
        out_dir: The folder for the archives (created if missing), e.g. `data/raw/levir-cd`.
        archives: The archives to fetch; None means the dataset's (`benchmark.data.datasets`).
            Tests pass archives whose URLs point at a local server.

    Returns:
        The path of every archive, in the order of `archives`.

    Raises:
        DownloadError: Some archive could not be obtained or does not verify; the message
            says, for each, what was tried and how to place the file by hand.
    """
    if archives is None:
        if name not in REAL_DATASETS:
            raise DownloadError(
                f"unknown dataset {name!r}: expected one of {', '.join(sorted(REAL_DATASETS))}"
            )
        archives = DATASETS[name].archives
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    failures: list[tuple[Archive, list[str]]] = []
    with requests.Session() as session:
        session.headers["User-Agent"] = USER_AGENT
        session.headers["Accept-Encoding"] = "identity"  # byte offsets must mean file offsets
        for archive in archives:
            try:
                paths.append(fetch_archive(archive, out_dir, session))
            except _ArchiveFailed as exc:
                failures.append((archive, exc.problems))
    if failures:
        raise DownloadError(_failure_message(name, out_dir, failures, len(archives)))
    return paths


def fetch_archive(archive: Archive, out_dir: Path, session: requests.Session) -> Path:
    """Verify `archive` in `out_dir`, downloading it first if it is not there.

    Raises:
        _ArchiveFailed: With one line per source tried (or for the file already there).
    """
    final = out_dir / archive.filename
    part = final.with_name(final.name + ".part")
    expected = _expected_md5(archive, out_dir)
    if final.exists():
        try:
            md5 = _verify(final, expected)
        except _SourceFailed as exc:
            raise _ArchiveFailed(
                [
                    f"{final} is already there but {exc.reason}; it was left untouched: "
                    "delete it to download it again, or replace it with a good copy"
                ]
            ) from None
        _record_md5(final, md5, expected)
        say(f"{final}: already there, verified (md5 {md5})")
        if part.exists():
            say(f"{part}: left by an earlier download; deleted ({part.stat().st_size} bytes)")
            part.unlink()
        return final

    problems: list[str] = []
    for index, url in enumerate(archive.urls):
        say(f"{archive.filename}: downloading from {url}")
        try:
            _download(session, url, part, _Limit.of(archive))
            try:
                md5 = _verify(part, expected)
            except _SourceFailed as exc:
                part.unlink()
                raise _SourceFailed(f"the downloaded file {exc.reason}; it was deleted") from None
        except _SourceFailed as exc:
            problems.append(f"{url}: {exc.reason}")
            more = "; trying the next source" if index + 1 < len(archive.urls) else ""
            say(f"{archive.filename}: {url} failed: {exc.reason}{more}")
            continue
        os.replace(part, final)
        _record_md5(final, md5, expected)
        say(f"{final}: downloaded and verified (md5 {md5})")
        return final
    if not archive.urls:
        problems.append("no source URL is known")
    raise _ArchiveFailed(problems)


def file_md5(path: Path) -> str:
    """The md5 of a file, read in chunks with a progress bar."""
    return file_digest(path, "md5", progress=True)


def sidecar_path(archive_path: Path) -> Path:
    """Where the recorded md5 of an archive without a published md5 lives: `<file>.md5`."""
    return archive_path.with_name(archive_path.name + ".md5")


def _expected_md5(archive: Archive, out_dir: Path) -> _Expected:
    """The published md5, else the one recorded in the sidecar, else none yet."""
    if archive.md5 is not None:
        return _Expected(archive.md5.lower(), "published md5")
    sidecar = sidecar_path(out_dir / archive.filename)
    if not sidecar.exists():
        return _Expected(None, "no published md5")
    text = sidecar.read_text(errors="replace")
    words = text.split()
    if not words or not _MD5_PATTERN.fullmatch(words[0].lower()):
        raise DownloadError(
            f"{sidecar}: expected '<32 hex digits>  {archive.filename}' (the md5 recorded on "
            f"the first download), got {text[:80]!r}; delete it only if you trust "
            f"{out_dir / archive.filename}, and rerun to record that file's md5"
        )
    return _Expected(
        words[0].lower(),
        f"md5 recorded in {sidecar} on the first download; if that first copy was bad, "
        f"delete {sidecar.name} and rerun",
    )


def _record_md5(path: Path, md5: str, expected: _Expected) -> None:
    """Write the sidecar `<file>.md5` for an archive with no published or recorded md5."""
    if expected.md5 is not None:
        return
    sidecar = sidecar_path(path)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(f"{md5}  {path.name}\n")
    os.replace(tmp, sidecar)
    say(f"{path.name}: no md5 is published; recorded md5 {md5} in {sidecar}")


def _verify(path: Path, expected: _Expected) -> str:
    """Check the archive signature and md5 of `path`; return its md5.

    With no md5 to check against (the first copy of CDD), the archive's listing must also
    read to the end before its md5 may be recorded and trusted.

    Raises:
        _SourceFailed: Saying what is wrong (the first bytes, the listing, or both md5s).
    """
    with path.open("rb") as f:
        head = f.read(64)
    if not head.startswith(SIGNATURES):
        hint = " (an HTML page?)" if head.lstrip().startswith(b"<") else ""
        raise _SourceFailed(
            f"is not a zip or RAR archive: it starts with {head[:24]!r}{hint}, "
            f"not {ZIP_MAGIC[0]!r} (zip) or {RAR_MAGIC[0][:6]!r} (RAR)"
        )
    md5 = file_md5(path)
    if expected.md5 is None:
        say(f"{path.name}: no md5 to check against; checking that its listing reads")
        try:
            list_members(path, fix="its md5 is not recorded")
        except DataError as exc:
            raise _SourceFailed(f"cannot be read as an archive: {exc}") from None
    elif md5 != expected.md5:
        raise _SourceFailed(
            f"has md5 {md5}, expected {expected.md5} ({expected.origin}), "
            f"size {path.stat().st_size} bytes"
        )
    return md5


@dataclass(frozen=True)
class _Limit:
    """The most bytes a download of one archive may write, and what that number is."""

    size: int
    what: str

    @staticmethod
    def of(archive: Archive) -> _Limit:
        if archive.size is not None:
            return _Limit(archive.size, f"{archive.filename}'s known size")
        return _Limit(
            MAX_UNKNOWN_SIZE_BYTES,
            f"the cap for {archive.filename}, whose size is not known (MAX_UNKNOWN_SIZE_BYTES)",
        )


def _download(session: requests.Session, url: str, part: Path, limit: _Limit) -> None:
    """Stream `url` into `part`, resuming what `part` already holds, never past `limit`.

    Every pass of the loop either returns, raises, or uses up one of a bounded budget (HTML
    pages followed, dropped connections resumed, one restart after HTTP 416), so it ends.

    Raises:
        _SourceFailed: The source cannot give the whole file; `part` keeps what arrived, or
            is deleted when the source sent (or announced) more than `limit`.
    """
    target = url  # becomes the URL behind a Google Drive confirm page
    html_pages = 0
    resumes = 0
    restarted = False
    got_bytes = False
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if offset > limit.size:
            say(f"{part.name}: holds {offset} bytes, more than {limit.size}; starting over")
            part.unlink()
            offset = 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = session.get(
                target,
                headers=headers,
                stream=True,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            )
        except requests.RequestException as exc:
            if got_bytes and resumes < MAX_RESUMES:
                resumes += 1
                say(f"{part.name}: reconnecting after {_describe(exc)}")
                time.sleep(RETRY_WAIT_S)
                continue
            raise _SourceFailed(f"could not connect: {_describe(exc)}") from None

        with response:
            status = response.status_code
            if status == 416 and offset:
                total = _unsatisfied_total(response)
                if total == offset:
                    return  # the .part already holds the whole file
                if restarted:
                    raise _SourceFailed(f"HTTP 416 again for Range bytes={offset}-")
                restarted = True
                say(f"{part.name}: the server rejected Range bytes={offset}-; starting over")
                part.unlink()
                continue
            if status not in (200, 206):
                raise _SourceFailed(f"HTTP {status} {response.reason}{_page_note(response)}")
            if _is_html(response):
                html_pages += 1
                if html_pages > MAX_HTML_PAGES:
                    raise _SourceFailed(
                        f"still an HTML page after following {MAX_HTML_PAGES} confirm pages"
                    )
                target = _follow_html(response)
                say(f"{part.name}: got a confirm page; following {target}")
                continue

            start, total = _start_and_total(response, offset)
            if total is not None and total > limit.size:
                raise _SourceFailed(
                    f"the server announces {total} bytes, more than the {limit.size} bytes of "
                    f"{limit.what}; nothing of this answer was written: the source is broken or "
                    f"serves another file, so get the file from another source"
                )
            if offset and start == 0:
                say(f"{part.name}: the server ignored the Range request; starting over")
            try:
                got = _stream(response, part, start, total, limit)
                got_bytes = got_bytes or got > 0
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                size = part.stat().st_size
                got_bytes = got_bytes or size > start
                of_total = f" of {total}" if total is not None else ""
                problem = f"the connection dropped at byte {size}{of_total} ({type(exc).__name__})"
            else:
                size = part.stat().st_size
                if total is None or size >= total:
                    return
                problem = f"the connection ended at byte {size} of {total}"
            if resumes >= MAX_RESUMES:
                raise _SourceFailed(
                    f"the connection dropped {resumes + 1} times; last: {problem}; "
                    f"{part.stat().st_size} bytes are kept in {part} and resumed next time"
                )
            resumes += 1
            say(f"{part.name}: {problem}; resuming ({resumes}/{MAX_RESUMES})")
            time.sleep(RETRY_WAIT_S)


def _start_and_total(response: requests.Response, offset: int) -> tuple[int, int | None]:
    """Where this response's body starts in the file, and the file's size if announced."""
    length = response.headers.get("Content-Length")
    body = int(length) if length and length.isdigit() else None
    if response.status_code == 200:
        return 0, body
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match is None:
        raise _SourceFailed(
            f"HTTP 206 without a valid Content-Range header "
            f"(got {response.headers.get('Content-Range')!r})"
        )
    start = int(match.group(1))
    if start not in (0, offset):
        raise _SourceFailed(f"asked for bytes {offset}- but got Content-Range {match.group(0)!r}")
    total = match.group(3)
    if total.isdigit():
        return start, int(total)
    return start, None if body is None else start + body


def _unsatisfied_total(response: requests.Response) -> int | None:
    """The file size a 416 answer announces (`Content-Range: bytes */<size>`), if any."""
    match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _stream(
    response: requests.Response, part: Path, start: int, total: int | None, limit: _Limit
) -> int:
    """Write the body to `part` from byte `start` on; return the number of bytes written.

    Raises:
        _SourceFailed: The body would take `part` past `limit.size` bytes (the excess is never
            written, and `part` is deleted: its bytes came from a source that is not serving
            the archive).
    """
    written = 0
    with (
        part.open("ab" if start else "wb") as f,
        progress_bar(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            desc=part.name.removesuffix(".part"),
        ) as bar,
    ):
        # read1 hands over whatever has arrived, so the bytes received before a dropped
        # connection are written, not lost in a buffer (iter_content would lose them).
        while chunk := response.raw.read1(CHUNK_BYTES, decode_content=False):
            if start + written + len(chunk) > limit.size:
                f.close()
                part.unlink()
                raise _SourceFailed(
                    f"the server sent more than the {limit.size} bytes of {limit.what}; "
                    f"stopped there and deleted {part.name}: the source is broken or serves "
                    f"another file, so get the file from another source"
                )
            f.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    return written


def _is_html(response: requests.Response) -> bool:
    return response.headers.get("Content-Type", "").lower().startswith("text/html")


@dataclass
class _Form:
    attrs: dict[str, str]
    fields: dict[str, str] = field(default_factory=dict)


class _PageParser(HTMLParser):
    """Collects the forms (with hidden inputs), `confirm=` links, title and text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self.confirm_links: list[str] = []
        self.title = ""
        self.words: list[str] = []
        self._form: _Form | None = None
        self._in_title = False
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form":
            self._form = _Form(values)
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None:
            if values.get("type", "").lower() == "hidden" and values.get("name"):
                self._form.fields[values["name"]] = values.get("value", "")
        elif tag == "a" and "confirm=" in values.get("href", ""):
            self.confirm_links.append(values["href"])
        elif tag == "title":
            self._in_title = True
        elif tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "title":
            self._in_title = False
        elif tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.words.extend(data.split())

    def download_form(self) -> _Form | None:
        """The Drive confirm form: id `download-form`, or any form with a hidden `confirm`."""
        for form in self.forms:
            if form.attrs.get("id") == "download-form" or "confirm" in form.fields:
                return form
        return None

    def summary(self) -> str:
        title = " ".join(self.title.split())
        text = " ".join(self.words)
        if len(text) > 300:
            text = text[:300] + "..."
        return f"title {title!r}, text {text!r}"


def _read_page(response: requests.Response) -> _PageParser:
    """Parse at most `MAX_HTML_BYTES` of an HTML response."""
    data = b""
    for chunk in response.iter_content(64 * 1024):
        data += chunk
        if len(data) >= MAX_HTML_BYTES:
            break
    parser = _PageParser()
    parser.feed(data[:MAX_HTML_BYTES].decode(response.encoding or "utf-8", errors="replace"))
    parser.close()
    return parser


def _follow_html(response: requests.Response) -> str:
    """The URL a Google Drive confirm page leads to (its form, submitted as GET, or link).

    Raises:
        _SourceFailed: The page has neither, quoting its title and text.
    """
    try:
        page = _read_page(response)
    except requests.RequestException as exc:
        raise _SourceFailed(f"got an HTML page instead of the file and lost it: {exc}") from None
    form = page.download_form()
    if form is not None:
        action = urljoin(response.url, form.attrs.get("action") or response.url)
        # A GET form replaces the action's query with its own fields, as a browser does.
        return urlunsplit(urlsplit(action)._replace(query=urlencode(form.fields)))
    if page.confirm_links:
        return urljoin(response.url, page.confirm_links[0])
    host = urlsplit(response.url).hostname or response.url
    raise _SourceFailed(
        f"{host} returned an HTML page instead of the file, with no download form or "
        f"confirm link to follow ({page.summary()}); the file may be over its download "
        "quota, not shared publicly, or removed"
    )


def _page_note(response: requests.Response) -> str:
    """For an error answer that is an HTML page, its title (what the server says)."""
    if not _is_html(response):
        return ""
    try:
        page = _read_page(response)
    except requests.RequestException:
        return ""
    title = " ".join(page.title.split())
    return f" (page title {title!r})" if title else ""


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _failure_message(
    name: str, out_dir: Path, failures: list[tuple[Archive, list[str]]], total: int
) -> str:
    folder = out_dir.resolve()
    lines = [f"could not get {len(failures)} of {total} archive(s) of {name} into {folder}", ""]
    for archive, problems in failures:
        lines.append(f"{archive.filename} ({_md5_text(archive, out_dir)}):")
        lines.extend(f"  - {problem}" for problem in problems)
        part = out_dir / f"{archive.filename}.part"
        if part.exists():
            lines.append(
                f"  ({part.stat().st_size} bytes are kept in {part}; the next run resumes them)"
            )
    pages = DATASETS[name].manual_pages if name in DATASETS else ()
    if pages:
        lines += ["", "Get the file(s) by hand from:"]
        for page in pages:
            note = f" ({page.note})" if page.note else ""
            lines.append(f"  - {page.label}: {page.url}{note}")
    lines += ["", f"Put them, under exactly these names, in {folder}/ :"]
    for archive, _ in failures:
        lines.append(f"  {archive.filename}  ({_md5_text(archive, out_dir)})")
    lines.append(
        f"then rerun the same `cdbench download {name}` command: it verifies the files there "
        "and downloads nothing."
    )
    return "\n".join(lines)


def _md5_text(archive: Archive, out_dir: Path) -> str:
    if archive.md5 is not None:
        return f"md5 {archive.md5}"
    sidecar = sidecar_path(out_dir / archive.filename)
    try:
        expected = _expected_md5(archive, out_dir)
    except DownloadError:
        return f"no published md5; {sidecar} is unreadable"
    if expected.md5 is not None:
        return f"no published md5; md5 {expected.md5} recorded in {sidecar}"
    return f"no published md5; its md5 is recorded in {sidecar.name} on first use"
