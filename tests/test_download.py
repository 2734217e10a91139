"""Tests of `benchmark.data.download` against a local HTTP server (tests/httpserver.py).

The archives are real small zips built here with `zipfile` and, for CDD, a real RAR from the
`rar_fixtures` fixture; every expected md5 is computed from the bytes served.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import zipfile
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.data import download
from benchmark.data.datasets import DATASETS
from benchmark.data.download import download_dataset, sidecar_path
from benchmark.data.sources import Archive
from benchmark.errors import DownloadError
from tests.conftest import write_repo_params
from tests.httpserver import LocalServer, Route, closed_port_url

HTML = "text/html; charset=utf-8"
CDD_NAME = "ChangeDetectionDataset.rar"

CONFIRM_FORM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>
<style>.x {{ color: red }}</style></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="FILE-ID"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-42">
</form></body></html>"""

CONFIRM_LINK_PAGE = """<html><head><title>Google Drive - Virus scan warning</title></head><body>
<a id="uc-download-link" href="/uc?export=download&amp;confirm=AbCd&amp;id=FILE-ID">Download
anyway</a></body></html>"""

QUOTA_PAGE = """<html><head><title>Google Drive - Quota exceeded</title>
<script>var junk = "not text";</script></head><body><p>Sorry, you can't view or download this
file at this time.</p><p>Too many users have viewed or downloaded this file recently.</p>
<form action="/search"><input type="text" name="q"></form></body></html>"""


def make_zip(seed: int, payload: int = 300_000) -> bytes:
    """A real zip holding one incompressible member of `payload` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"A/train_{seed}.png", random.Random(seed).randbytes(payload))
    return buffer.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


pytestmark = pytest.mark.usefixtures("fast_download_retries")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "raw" / "levir-cd"


def test_plain_download_checks_md5_and_leaves_only_the_archives(
    server: LocalServer, out: Path
) -> None:
    train, val = make_zip(1), make_zip(2, payload=1000)
    server.add("/train.zip", Route(train))
    server.add("/val.zip", Route(val))
    archives = [
        Archive("train.zip", md5(train), (server.url("/train.zip"),)),
        Archive("val.zip", md5(val), (server.url("/val.zip"),)),
    ]

    paths = download_dataset("levir-cd", out, archives)

    assert paths == [out / "train.zip", out / "val.zip"]
    assert (out / "train.zip").read_bytes() == train
    assert (out / "val.zip").read_bytes() == val
    assert sorted(p.name for p in out.iterdir()) == ["train.zip", "val.zip"]
    assert [(r.path, r.range) for r in server.requests] == [
        ("/train.zip", None),
        ("/val.zip", None),
    ]


def test_hand_placed_archive_is_verified_without_any_request(
    server: LocalServer, out: Path
) -> None:
    data = make_zip(3, payload=1000)
    out.mkdir(parents=True)
    (out / "train.zip").write_bytes(data)
    server.add("/train.zip", Route(data))

    paths = download_dataset(
        "levir-cd", out, [Archive("train.zip", md5(data), (server.url("/train.zip"),))]
    )

    assert paths == [out / "train.zip"]
    assert server.requests == []


def test_part_left_beside_a_hand_placed_archive_is_deleted(server: LocalServer, out: Path) -> None:
    """A failed download keeps a `.part`; once the user places the file by hand, it goes."""
    data = make_zip(30, payload=1000)
    out.mkdir(parents=True)
    (out / "train.zip").write_bytes(data)
    (out / "train.zip.part").write_bytes(data[:100])

    download_dataset("levir-cd", out, [Archive("train.zip", md5(data), (server.url("/x"),))])

    assert sorted(p.name for p in out.iterdir()) == ["train.zip"]
    assert server.requests == []


def test_hand_placed_archive_with_wrong_md5_is_reported_and_left_alone(
    server: LocalServer, out: Path
) -> None:
    good, bad = make_zip(4, payload=1000), make_zip(5, payload=1000)
    out.mkdir(parents=True)
    (out / "train.zip").write_bytes(bad)
    server.add("/train.zip", Route(good))

    with pytest.raises(DownloadError) as caught:
        download_dataset(
            "levir-cd", out, [Archive("train.zip", md5(good), (server.url("/train.zip"),))]
        )

    message = str(caught.value)
    assert f"{out / 'train.zip'} is already there but has md5 {md5(bad)}" in message
    assert f"expected {md5(good)} (published md5)" in message
    assert (out / "train.zip").read_bytes() == bad
    assert server.requests == []


def test_google_drive_confirm_form_is_followed(server: LocalServer, out: Path) -> None:
    data = make_zip(6)
    page = CONFIRM_FORM_PAGE.format(action=server.url("/download"))
    server.add("/download", Route(page.encode(), content_type=HTML))
    server.add("/download", Route(data, query={"id": "FILE-ID", "confirm": "t", "uuid": "u-42"}))
    url = server.url("/download?id=FILE-ID&export=download")

    download_dataset("levir-cd", out, [Archive("train.zip", md5(data), (url,))])

    assert (out / "train.zip").read_bytes() == data
    assert [r.query for r in server.requests] == [
        {"id": "FILE-ID", "export": "download"},
        {"id": "FILE-ID", "export": "download", "confirm": "t", "uuid": "u-42"},
    ]


def test_google_drive_confirm_link_is_followed(server: LocalServer, out: Path) -> None:
    data = make_zip(7, payload=1000)
    server.add("/uc", Route(CONFIRM_LINK_PAGE.encode(), content_type=HTML))
    server.add("/uc", Route(data, query={"confirm": "AbCd", "id": "FILE-ID"}))

    download_dataset(
        "levir-cd", out, [Archive("train.zip", md5(data), (server.url("/uc?id=FILE-ID"),))]
    )

    assert (out / "train.zip").read_bytes() == data
    assert server.requests[-1].query == {"export": "download", "confirm": "AbCd", "id": "FILE-ID"}


def test_html_page_without_form_fails_that_source_and_the_next_is_tried(
    server: LocalServer, out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_zip(8, payload=1000)
    server.add("/quota", Route(QUOTA_PAGE.encode(), content_type=HTML))
    server.add("/mirror.zip", Route(data))
    urls = (server.url("/quota"), server.url("/mirror.zip"))

    download_dataset("levir-cd", out, [Archive("train.zip", md5(data), urls)])

    assert (out / "train.zip").read_bytes() == data
    assert [r.path for r in server.requests] == ["/quota", "/mirror.zip"]
    log = capsys.readouterr().err
    assert "Google Drive - Quota exceeded" in log
    assert "trying the next source" in log


def test_html_page_without_form_is_a_clear_error(server: LocalServer, out: Path) -> None:
    server.add("/quota", Route(QUOTA_PAGE.encode(), content_type=HTML))
    url = server.url("/quota")

    with pytest.raises(DownloadError) as caught:
        download_dataset("levir-cd", out, [Archive("train.zip", "0" * 32, (url,))])

    message = str(caught.value)
    assert f"{url}: 127.0.0.1 returned an HTML page instead of the file" in message
    assert "title 'Google Drive - Quota exceeded'" in message
    assert "Too many users have viewed or downloaded this file recently." in message
    assert "not text" not in message  # script content is not page text
    assert list(out.iterdir()) == []


def test_confirm_pages_that_never_end_are_given_up(server: LocalServer, out: Path) -> None:
    page = CONFIRM_FORM_PAGE.format(action="/loop")
    server.add("/loop", Route(page.encode(), content_type=HTML))

    with pytest.raises(DownloadError, match="still an HTML page after following 3 confirm pages"):
        download_dataset("levir-cd", out, [Archive("t.zip", "0" * 32, (server.url("/loop"),))])

    assert len(server.requests) == download.MAX_HTML_PAGES + 1


def test_dropped_connection_resumes_with_range(server: LocalServer, out: Path) -> None:
    data = make_zip(9)
    server.add("/train.zip", Route(data, drop_first=2, drop_after=100_000))

    download_dataset(
        "levir-cd", out, [Archive("train.zip", md5(data), (server.url("/train.zip"),))]
    )

    assert md5((out / "train.zip").read_bytes()) == md5(data)
    # Each cut answer delivered 100_000 bytes, so the resumes start at 100_000 and 200_000.
    assert [r.range for r in server.requests] == [None, "bytes=100000-", "bytes=200000-"]
    assert not (out / "train.zip.part").exists()


def test_connection_dropping_every_time_is_bounded_and_keeps_the_part(
    server: LocalServer, out: Path
) -> None:
    data = make_zip(10)
    server.add("/train.zip", Route(data, drop_first=100, drop_after=1000))

    with pytest.raises(DownloadError, match="the connection dropped 6 times"):
        download_dataset(
            "levir-cd", out, [Archive("train.zip", md5(data), (server.url("/train.zip"),))]
        )

    assert len(server.requests) == download.MAX_RESUMES + 1
    part = out / "train.zip.part"
    assert part.read_bytes() == data[: 1000 * (download.MAX_RESUMES + 1)]
    assert not (out / "train.zip").exists()


@pytest.mark.parametrize("leftover", [b"garbage" * 1000, b""])
def test_server_ignoring_range_makes_us_start_over(
    server: LocalServer, out: Path, leftover: bytes
) -> None:
    data = make_zip(11)
    out.mkdir(parents=True)
    expected_ranges: list[str | None]
    if leftover:  # a .part of wrong bytes: appending to it would fail the md5
        (out / "train.zip.part").write_bytes(leftover)
        server.add("/train.zip", Route(data, ranges=False))
        expected_ranges = [f"bytes={len(leftover)}-"]
    else:  # a dropped connection, then a resume the server ignores
        server.add("/train.zip", Route(data, ranges=False, drop_first=1, drop_after=50_000))
        expected_ranges = [None, "bytes=50000-"]

    download_dataset(
        "levir-cd", out, [Archive("train.zip", md5(data), (server.url("/train.zip"),))]
    )

    assert (out / "train.zip").read_bytes() == data
    assert [r.range for r in server.requests] == expected_ranges


@pytest.mark.parametrize("extra", [0, 10])
def test_range_past_the_end(server: LocalServer, out: Path, extra: int) -> None:
    """416: a complete .part is kept; a .part longer than the file is started over."""
    data = make_zip(12, payload=1000)
    out.mkdir(parents=True)
    (out / "train.zip.part").write_bytes(data + b"x" * extra)
    server.add("/train.zip", Route(data))

    download_dataset(
        "levir-cd", out, [Archive("train.zip", md5(data), (server.url("/train.zip"),))]
    )

    assert (out / "train.zip").read_bytes() == data
    expected = [f"bytes={len(data) + extra}-"] + ([None] if extra else [])
    assert [r.range for r in server.requests] == expected


def test_wrong_md5_is_deleted_and_reported(server: LocalServer, out: Path) -> None:
    good, bad = make_zip(13, payload=1000), make_zip(14, payload=1000)
    server.add("/train.zip", Route(bad))
    url = server.url("/train.zip")

    with pytest.raises(DownloadError) as caught:
        download_dataset("levir-cd", out, [Archive("train.zip", md5(good), (url,))])

    assert (
        f"{url}: the downloaded file has md5 {md5(bad)}, expected {md5(good)} (published md5), "
        f"size {len(bad)} bytes; it was deleted"
    ) in str(caught.value)
    assert list(out.iterdir()) == []


def test_mirror_failing_then_second_source_working(server: LocalServer, out: Path) -> None:
    good, bad = make_zip(15, payload=1000), make_zip(16, payload=1000)
    server.add("/mirror/train.zip", Route(b"busy", content_type="text/plain", status=503))
    server.add("/stale/train.zip", Route(bad))
    server.add("/drive/train.zip", Route(good))
    urls = tuple(server.url(f"/{s}/train.zip") for s in ("mirror", "stale", "drive"))

    paths = download_dataset("levir-cd", out, [Archive("train.zip", md5(good), urls)])

    assert paths[0].read_bytes() == good
    assert [r.path for r in server.requests] == [
        "/mirror/train.zip",
        "/stale/train.zip",
        "/drive/train.zip",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["train.zip"]


def test_all_sources_failing_lists_everything_needed(server: LocalServer, out: Path) -> None:
    server.add("/quota", Route(QUOTA_PAGE.encode(), content_type=HTML))
    good = make_zip(17, payload=1000)
    server.add("/test.zip", Route(good))
    refused = closed_port_url("/train.zip")
    archives = [
        Archive("train.zip", "a" * 32, (server.url("/missing/train.zip"), refused)),
        Archive("val.zip", "b" * 32, (server.url("/quota"),)),
        Archive("test.zip", md5(good), (server.url("/test.zip"),)),
    ]

    with pytest.raises(DownloadError) as caught:
        download_dataset("levir-cd", out, archives)

    message = str(caught.value)
    folder = out.resolve()
    assert message.startswith(f"could not get 2 of 3 archive(s) of levir-cd into {folder}")
    assert f"{server.url('/missing/train.zip')}: HTTP 404 Not Found" in message
    assert f"{refused}: could not connect: ConnectionError" in message
    assert f"{server.url('/quota')}: 127.0.0.1 returned an HTML page" in message
    assert f"train.zip (md5 {'a' * 32}):" in message
    assert f"val.zip (md5 {'b' * 32}):" in message
    assert "https://justchenhao.github.io/LEVIR/" in message
    assert "https://pan.baidu.com/s/1fzNiOE7elGRmIo2h6MIhZw (code l7iv)" in message
    assert f"in {folder}/ :\n  train.zip  (md5 {'a' * 32})\n  val.zip  (md5 {'b' * 32})\n" in (
        message
    )
    assert "rerun the same `cdbench download levir-cd` command" in message
    assert "test.zip (" not in message  # the archive that arrived is not listed as missing
    assert (out / "test.zip").read_bytes() == good


def test_cdd_md5_is_recorded_then_enforced(
    server: LocalServer, tmp_path: Path, rar_fixtures: Path
) -> None:
    out = tmp_path / "raw" / "cdd"
    rar = (rar_fixtures / "rar5-solid.rar").read_bytes()
    other = (rar_fixtures / "rar3-solid.rar").read_bytes()
    route = server.add("/cdd", Route(rar))
    archive = Archive(CDD_NAME, None, (server.url("/cdd"),))
    sidecar = sidecar_path(out / CDD_NAME)

    download_dataset("cdd", out, [archive])
    assert (out / CDD_NAME).read_bytes() == rar
    assert sidecar.read_text() == f"{md5(rar)}  {CDD_NAME}\n"

    # Second run: verified against the sidecar, nothing fetched.
    download_dataset("cdd", out, [archive])
    assert len(server.requests) == 1

    # A tampered archive fails against the recorded md5 and is left for the user.
    with (out / CDD_NAME).open("ab") as f:
        f.write(b"tampered")
    with pytest.raises(DownloadError) as caught:
        download_dataset("cdd", out, [archive])
    message = str(caught.value)
    assert f"has md5 {md5(rar + b'tampered')}, expected {md5(rar)}" in message
    assert f"md5 recorded in {sidecar} on the first download" in message
    assert (out / CDD_NAME).read_bytes() == rar + b"tampered"

    # Deleted and downloaded again from a source that now serves another RAR: refused too.
    (out / CDD_NAME).unlink()
    route.body = other
    with pytest.raises(DownloadError, match=f"has md5 {md5(other)}, expected {md5(rar)}"):
        download_dataset("cdd", out, [archive])
    assert sorted(p.name for p in out.iterdir()) == [sidecar.name]


def test_cdd_hand_placed_archive_gets_its_md5_recorded(
    server: LocalServer, tmp_path: Path, rar_fixtures: Path
) -> None:
    out = tmp_path / "cdd"
    out.mkdir()
    rar = (rar_fixtures / "rar3-subdirs.rar").read_bytes()
    (out / CDD_NAME).write_bytes(rar)

    download_dataset("cdd", out, [Archive(CDD_NAME, None, (server.url("/cdd"),))])

    assert sidecar_path(out / CDD_NAME).read_text() == f"{md5(rar)}  {CDD_NAME}\n"
    assert server.requests == []


def test_cdd_zip_under_the_rar_name_is_accepted(server: LocalServer, tmp_path: Path) -> None:
    """prepare reads the format from the first bytes, so download accepts a zip named .rar."""
    out = tmp_path / "cdd"
    data = make_zip(31, payload=1000)
    server.add("/cdd", Route(data))

    download_dataset("cdd", out, [Archive(CDD_NAME, None, (server.url("/cdd"),))])

    assert (out / CDD_NAME).read_bytes() == data
    assert sidecar_path(out / CDD_NAME).read_text() == f"{md5(data)}  {CDD_NAME}\n"


@pytest.mark.parametrize("hand_placed", [True, False])
def test_cdd_truncated_first_copy_is_not_trusted(
    server: LocalServer, tmp_path: Path, hand_placed: bool
) -> None:
    """With no md5 to check, a first copy that does not list completely gets no md5 record."""
    out = tmp_path / "cdd"
    out.mkdir()
    truncated = make_zip(32, payload=5000)[:-30]  # the end of the central directory is cut
    if hand_placed:
        (out / CDD_NAME).write_bytes(truncated)
    server.add("/cdd", Route(truncated))

    with pytest.raises(DownloadError) as caught:
        download_dataset("cdd", out, [Archive(CDD_NAME, None, (server.url("/cdd"),))])

    message = str(caught.value)
    assert "cannot be read as an archive: " in message
    assert "not a readable zip archive" in message
    assert "its md5 is not recorded" in message
    assert not sidecar_path(out / CDD_NAME).exists()
    assert sorted(p.name for p in out.iterdir()) == ([CDD_NAME] if hand_placed else [])


def test_cdd_recorded_md5_mismatch_says_how_to_reset_it(
    server: LocalServer, tmp_path: Path
) -> None:
    out = tmp_path / "cdd"
    out.mkdir()
    first, second = make_zip(33, payload=1000), make_zip(34, payload=1000)
    sidecar = sidecar_path(out / CDD_NAME)
    sidecar.write_text(f"{md5(first)}  {CDD_NAME}\n")
    server.add("/cdd", Route(second))

    with pytest.raises(DownloadError) as caught:
        download_dataset("cdd", out, [Archive(CDD_NAME, None, (server.url("/cdd"),))])

    assert (
        f"has md5 {md5(second)}, expected {md5(first)} (md5 recorded in {sidecar} on the first "
        f"download; if that first copy was bad, delete {sidecar.name} and rerun)"
    ) in str(caught.value)
    assert sorted(p.name for p in out.iterdir()) == [sidecar.name]


@pytest.mark.parametrize("hand_placed", [True, False])
def test_html_saved_under_the_rar_name_is_caught(
    server: LocalServer, tmp_path: Path, hand_placed: bool
) -> None:
    out = tmp_path / "cdd"
    out.mkdir()
    page = b"<!DOCTYPE html><html><body>Sign in</body></html>"
    if hand_placed:
        (out / CDD_NAME).write_bytes(page)
    # Served with a binary content type, so only the signature check can catch it.
    server.add("/cdd", Route(page))

    with pytest.raises(DownloadError) as caught:
        download_dataset("cdd", out, [Archive(CDD_NAME, None, (server.url("/cdd"),))])

    message = str(caught.value)
    assert (
        "is not a zip or RAR archive: it starts with b'<!DOCTYPE html><html><bo' (an HTML page?), "
        "not b'PK\\x03\\x04' (zip) or b'Rar!\\x1a\\x07' (RAR)"
    ) in message
    assert "no published md5" in message
    assert "https://aistudio.baidu.com/datasetdetail/78676" in message
    assert not sidecar_path(out / CDD_NAME).exists()
    assert sorted(p.name for p in out.iterdir()) == ([CDD_NAME] if hand_placed else [])


def test_cli_download_success_and_failure(
    server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = make_zip(18, payload=1000)
    server.add("/train.zip", Route(data))
    out = tmp_path / "raw"
    params = ["--params", str(write_repo_params(tmp_path / "params.yaml"))]
    levir = DATASETS["levir-cd"]
    train = (Archive("train.zip", md5(data), (server.url("/train.zip"),)),)
    monkeypatch.setitem(DATASETS, "levir-cd", dataclasses.replace(levir, archives=train))

    assert main([*params, "download", "levir-cd", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"verified {out / 'train.zip'}\n"
    assert (out / "train.zip").read_bytes() == data

    val = (Archive("val.zip", md5(data), (server.url("/val.zip"),)),)
    monkeypatch.setitem(DATASETS, "levir-cd", dataclasses.replace(levir, archives=val))
    assert main([*params, "download", "levir-cd", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == (
        "then rerun the same `cdbench download levir-cd` command: it verifies the files there "
        "and downloads nothing."
    )
    assert (
        f"cdbench download: error: could not get 1 of 1 archive(s) of levir-cd into "
        f"{out.resolve()}" in captured.err
    )


# --------------------------------------------------------------------------- bounded transfers

ENDLESS_CHUNK = b"PK\x03\x04" + bytes(64 * 1024 - 4)
"""What the endless test server sends over and over: a zip signature, then zeros."""


def test_endless_body_is_stopped_at_the_known_size(server: LocalServer, out: Path) -> None:
    server.add("/val.zip", Route(ENDLESS_CHUNK, endless=True))
    limit = 1_000_000
    archive = Archive("val.zip", md5(b"never"), (server.url("/val.zip"),), size=limit)

    with pytest.raises(DownloadError) as caught:
        download_dataset("levir-cd", out, [archive])

    message = str(caught.value)
    assert (
        f"the server sent more than the {limit} bytes of val.zip's known size; "
        "stopped there and deleted val.zip.part"
    ) in message
    assert list(out.iterdir()) == []  # nothing kept: neither the archive nor a .part
    assert len(server.requests_to("/val.zip")) == 1  # stopped, not resumed


def test_endless_body_of_unknown_size_is_stopped_at_the_cap(
    server: LocalServer, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "MAX_UNKNOWN_SIZE_BYTES", 2_000_000)
    server.add("/cdd", Route(ENDLESS_CHUNK, endless=True))

    with pytest.raises(DownloadError) as caught:
        download_dataset("cdd", out, [Archive(CDD_NAME, None, (server.url("/cdd"),))])

    message = str(caught.value)
    assert (
        f"the server sent more than the 2000000 bytes of the cap for {CDD_NAME}, whose size "
        "is not known (MAX_UNKNOWN_SIZE_BYTES)"
    ) in message
    assert list(out.iterdir()) == []


def test_announced_length_over_the_known_size_is_refused_unread(
    server: LocalServer, out: Path
) -> None:
    data = make_zip(40, payload=5000)
    server.add("/train.zip", Route(data))
    limit = len(data) - 1
    archive = Archive("train.zip", md5(data), (server.url("/train.zip"),), size=limit)

    with pytest.raises(DownloadError) as caught:
        download_dataset("levir-cd", out, [archive])

    assert (
        f"the server announces {len(data)} bytes, more than the {limit} bytes of "
        "train.zip's known size; nothing of this answer was written"
    ) in str(caught.value)
    assert list(out.iterdir()) == []


def test_part_larger_than_the_known_size_is_started_over(server: LocalServer, out: Path) -> None:
    """A `.part` already past the size cannot be the start of the archive: it is discarded."""
    data = make_zip(41, payload=5000)
    server.add("/train.zip", Route(data))
    out.mkdir(parents=True)
    (out / "train.zip.part").write_bytes(bytes(len(data) + 10))

    download_dataset(
        "levir-cd",
        out,
        [Archive("train.zip", md5(data), (server.url("/train.zip"),), size=len(data))],
    )

    assert (out / "train.zip").read_bytes() == data
    assert [r.range for r in server.requests] == [None]
