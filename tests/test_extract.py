"""Safe extraction: traversal, absolute paths, links, truncation, tool fallback, subsets,
archive bombs (declared sizes, ratios, free space, bytes written), entries skipped unread."""

from __future__ import annotations

import io
import random
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from benchmark.data import extract
from benchmark.data.extract import (
    Limits,
    archive_format,
    checked_name,
    extract_archive,
    list_members,
)
from benchmark.data.prepare import prepare_dataset
from benchmark.errors import DataError
from tests.data.archives import levir_members, write_levir_archives, write_zip


def tree(root: Path) -> list[str]:
    """Every path under `root`, relative, sorted (links are listed, never followed)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def raw_zip(path: Path, entries: list[tuple[str, bytes, int | None]]) -> Path:
    """A zip whose entries are written verbatim: (name, data, Unix mode or None)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.create_system = 3
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """(archive folder, extraction parent): anything escaping lands in tmp_path itself."""
    (tmp_path / "archives").mkdir()
    (tmp_path / "work").mkdir()
    return tmp_path / "archives", tmp_path / "work"


# --------------------------------------------------------------------------- zip, good


def test_zip_extracts_files_and_folders(sandbox: tuple[Path, Path]) -> None:
    archives, work = sandbox
    archive = write_zip(archives / "a.zip", {"top/x.txt": b"x", "top/sub/y.txt": b"yy"})
    members = extract_archive(archive, work / "out").extracted
    assert (work / "out/top/x.txt").read_bytes() == b"x"
    assert (work / "out/top/sub/y.txt").read_bytes() == b"yy"
    assert {m.name for m in members if not m.is_dir} == {"top/x.txt", "top/sub/y.txt"}
    assert tree(work) == ["out", "out/top", "out/top/sub", "out/top/sub/y.txt", "out/top/x.txt"]


def test_zip_prefix_extracts_only_that_folder(sandbox: tuple[Path, Path]) -> None:
    archives, work = sandbox
    archive = write_zip(
        archives / "a.zip",
        {
            "D/Real/subset/train/A/0.jpg": b"1",
            "D/Model/train/A/0.jpg": b"2",
            "D/Real/subsetX": b"3",
        },
    )
    extract_archive(archive, work / "out", prefix="D/Real/subset")
    assert tree(work / "out") == [
        "D",
        "D/Real",
        "D/Real/subset",
        "D/Real/subset/train",
        "D/Real/subset/train/A",
        "D/Real/subset/train/A/0.jpg",
    ]


def test_format_is_read_from_magic_bytes_not_extension(sandbox: tuple[Path, Path]) -> None:
    archives, work = sandbox
    archive = write_zip(archives / "looks-like.rar", {"f.txt": b"zip inside"})
    assert archive_format(archive) == "zip"
    extract_archive(archive, work / "out")
    assert (work / "out/f.txt").read_bytes() == b"zip inside"


def test_not_an_archive_is_refused(sandbox: tuple[Path, Path]) -> None:
    archives, _ = sandbox
    page = archives / "train.zip"
    page.write_text("<!DOCTYPE html><html>Google Drive can't scan this file for viruses")
    with pytest.raises(DataError, match=r"train\.zip: neither a zip nor a RAR archive"):
        archive_format(page)


def test_existing_target_is_not_overwritten(sandbox: tuple[Path, Path]) -> None:
    archives, work = sandbox
    archive = write_zip(archives / "a.zip", {"f.txt": b"new"})
    (work / "out").mkdir()
    (work / "out/keep.txt").write_text("old")
    with pytest.raises(FileExistsError):
        extract_archive(archive, work / "out")
    assert tree(work) == ["out", "out/keep.txt"]


# --------------------------------------------------------------------------- zip, refused


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.txt", "contains a '..' component"),
        ("ok/../../evil.txt", "contains a '..' component"),
        ("..\\evil.txt", "contains a '..' component"),
        ("/tmp/evil.txt", "has an absolute path"),
        ("C:/evil.txt", "has an absolute path"),
    ],
)
def test_zip_escaping_names_are_refused_before_writing(
    sandbox: tuple[Path, Path], name: str, reason: str
) -> None:
    archives, work = sandbox
    # The good entry comes first: nothing at all may be written, not even it.
    archive = raw_zip(archives / "evil.zip", [("good.txt", b"g", None), (name, b"evil", None)])
    with pytest.raises(DataError) as info:
        extract_archive(archive, work / "out")
    message = str(info.value)
    assert str(archive) in message and repr(name) in message and reason in message
    assert tree(work) == []
    assert not (work.parent / "evil.txt").exists()


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        (stat.S_IFLNK | 0o777, "symbolic link"),
        (stat.S_IFCHR | 0o644, "device, FIFO or socket"),
        (stat.S_IFIFO | 0o644, "device, FIFO or socket"),
    ],
)
def test_zip_links_and_special_files_are_refused(
    sandbox: tuple[Path, Path], mode: int, kind: str
) -> None:
    archives, work = sandbox
    archive = raw_zip(
        archives / "link.zip", [("good.txt", b"g", None), ("data/link", b"../../etc", mode)]
    )
    with pytest.raises(DataError) as info:
        list_members(archive)
    assert f"entry 'data/link' is a {kind}" in str(info.value)
    with pytest.raises(DataError):
        extract_archive(archive, work / "out")
    assert tree(work) == []


def test_zip_symlink_entry_from_the_generator_is_refused(sandbox: tuple[Path, Path]) -> None:
    archives, work = sandbox
    archive = write_zip(archives / "l.zip", {"A/x.png": b"x"}, links={"A/up": ".."})
    with pytest.raises(DataError, match=r"entry 'A/up' is a symbolic link"):
        extract_archive(archive, work / "out")
    assert tree(work) == []


def test_zip_duplicate_entries_are_refused(sandbox: tuple[Path, Path]) -> None:
    archives, work = sandbox
    with pytest.warns(UserWarning, match="Duplicate name"):
        archive = raw_zip(archives / "dup.zip", [("a.txt", b"1", None), ("a.txt", b"2", None)])
    with pytest.raises(DataError, match=r"entry 'a\.txt' appears more than once"):
        extract_archive(archive, work / "out")


def test_truncated_zip_names_the_archive_and_the_fix(sandbox: tuple[Path, Path]) -> None:
    archives, work = sandbox
    archive = write_zip(archives / "train.zip", {"A/train_1.png": bytes(range(256)) * 64})
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        extract_archive(archive, work / "out", fix="delete it and re-run `cdbench download x`")
    message = str(info.value)
    assert str(archive) in message and "truncated or corrupt" in message
    assert "delete it and re-run `cdbench download x`" in message
    assert tree(work) == []


def test_corrupt_zip_member_names_the_entry(sandbox: tuple[Path, Path]) -> None:
    archives, work = sandbox
    payload = b"change detection " * 4096
    archive = write_zip(archives / "val.zip", {"A/val_1.png": payload})
    data = bytearray(archive.read_bytes())
    start = data.index(b"A/val_1.png") + len("A/val_1.png")  # first bytes of compressed data
    for offset in range(start + 10, start + 60):
        data[offset] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError) as info:
        extract_archive(archive, work / "out")
    message = str(info.value)
    assert str(archive) in message and "'A/val_1.png'" in message
    assert "truncated or corrupt" in message
    assert tree(work) == []


def test_checked_name_normalises_harmless_forms() -> None:
    archive = Path("x.zip")
    assert checked_name(archive, "./a//b/./c.png") == "a/b/c.png"
    assert checked_name(archive, "a\\b.png") == "a/b.png"
    with pytest.raises(DataError, match="empty name"):
        checked_name(archive, "./")


# --------------------------------------------------------------------------- RAR fixtures


def test_rar_evil_symlink_traversal_writes_nothing(
    rar_fixtures: Path, sandbox: tuple[Path, Path]
) -> None:
    _, work = sandbox
    archive = rar_fixtures / "rar5-evil-symlink-traversal.rar"
    with pytest.raises(DataError) as info:
        extract_archive(archive, work / "out")
    assert str(archive) in str(info.value)
    assert "entry 'up' is a symbolic link" in str(info.value)
    assert tree(work.parent) == ["archives", "work"]


def test_rar_symlinks_are_refused(rar_fixtures: Path, sandbox: tuple[Path, Path]) -> None:
    _, work = sandbox
    archive = rar_fixtures / "rar5-symlink-unix.rar"
    with pytest.raises(DataError, match=r"entry 'data_link' is a symbolic link"):
        extract_archive(archive, work / "out")
    assert tree(work) == []


def test_defence_in_depth_catches_a_link_the_listing_missed(
    rar_fixtures: Path, sandbox: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pretend the listing check was fooled: the extracted tree is still checked for links."""
    _, work = sandbox
    monkeypatch.setattr(extract, "_refuse_kind", lambda *args: None)
    monkeypatch.setattr(extract, "_mode_kind", lambda mode: None)

    class Info:
        def __init__(self, name: str, is_dir: bool, size: int) -> None:
            self.filename, self._dir, self.file_size = name, is_dir, size
            self.compress_size = size
            self.file_redir, self.host_os, self.mode = None, 0, None

        def is_dir(self) -> bool:
            return self._dir

        def is_symlink(self) -> bool:
            return False

        def needs_password(self) -> bool:
            return False

    # The listing now claims `up` is a plain folder; both tools create it as the link it is.
    monkeypatch.setattr(
        extract,
        "_rar_infos",
        lambda archive, fix: [Info("up", True, 0), Info("up/pwned.txt", False, 23)],
    )
    archive = rar_fixtures / "rar5-evil-symlink-traversal.rar"
    with pytest.raises(DataError, match=r"extracting produced 'up', which is a link"):
        extract_archive(archive, work / "out")
    assert tree(work.parent) == ["archives", "work"]


@pytest.mark.parametrize("name", ["rar3-solid.rar", "rar5-solid.rar"])
def test_rar_solid_archives_extract_with_tool_fallback(
    rar_fixtures: Path, sandbox: tuple[Path, Path], name: str
) -> None:
    _, work = sandbox
    extract_archive(rar_fixtures / name, work / "out")
    assert tree(work) == ["out", "out/stest1.txt", "out/stest2.txt"]
    for text in ("stest1.txt", "stest2.txt"):
        assert (work / "out" / text).stat().st_size == 2048


@pytest.mark.parametrize("name", ["rar3-subdirs.rar", "rar5-subdirs.rar"])
def test_rar_subdirs_extract_with_names_intact(
    rar_fixtures: Path, sandbox: tuple[Path, Path], name: str
) -> None:
    _, work = sandbox
    extract_archive(rar_fixtures / name, work / "out")
    files = {
        p.relative_to(work / "out").as_posix(): p.stat().st_size
        for p in (work / "out").rglob("*")
        if p.is_file()
    }
    assert files == {
        "sub/dir1/file1.txt": 6,
        "sub/dir2/file2.txt": 6,
        "sub/with space/long fn.txt": 8,
        "sub/üȵĩöḋè/file.txt": 5,
    }
    assert (work / "out/sub/empty").is_dir()


def test_rar_prefix(rar_fixtures: Path, sandbox: tuple[Path, Path]) -> None:
    _, work = sandbox
    members = extract_archive(
        rar_fixtures / "rar5-subdirs.rar", work / "out", prefix="sub/with space"
    ).extracted
    assert [m.name for m in members if not m.is_dir] == ["sub/with space/long fn.txt"]
    assert tree(work / "out") == ["sub", "sub/with space", "sub/with space/long fn.txt"]


def test_rar3_solid_needs_unar_and_reports_both_tools(
    rar_fixtures: Path, sandbox: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """bsdtar cannot read RAR3 solid; with unar missing, the error names both tools."""
    _, work = sandbox
    real_which = shutil.which
    monkeypatch.setattr(
        extract.shutil, "which", lambda tool: None if tool == "unar" else real_which(tool)
    )
    archive = rar_fixtures / "rar3-solid.rar"
    with pytest.raises(DataError) as info:
        extract_archive(archive, work / "out")
    message = str(info.value)
    assert str(archive) in message and "no tool could extract it" in message
    assert "bsdtar: exit status 1" in message and "unar: not installed" in message
    assert tree(work) == []


def test_rar5_solid_needs_bsdtar(
    rar_fixtures: Path, sandbox: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """unar fails on this RAR5 archive (tests/data/rar/README.md); without bsdtar it cannot be
    read."""
    _, work = sandbox
    real_which = shutil.which
    monkeypatch.setattr(
        extract.shutil, "which", lambda tool: None if tool == "bsdtar" else real_which(tool)
    )
    with pytest.raises(DataError, match=r"bsdtar: not installed; unar: exit status 1"):
        extract_archive(rar_fixtures / "rar5-solid.rar", work / "out")


def test_no_rar_tool_says_what_to_install(
    rar_fixtures: Path, sandbox: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, work = sandbox
    monkeypatch.setattr(extract.shutil, "which", lambda tool: None)
    with pytest.raises(DataError, match=r"no RAR extractor found; install `unar`"):
        extract_archive(rar_fixtures / "rar5-subdirs.rar", work / "out")


@pytest.mark.parametrize("name", ["rar3-solid.rar", "rar5-subdirs.rar", "rar3-subdirs.rar"])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_rar_is_a_data_error(
    rar_fixtures: Path, sandbox: tuple[Path, Path], name: str, fraction: float
) -> None:
    archives, work = sandbox
    data = (rar_fixtures / name).read_bytes()
    archive = archives / name
    archive.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(DataError) as info:
        extract_archive(archive, work / "out", fix="delete it and re-run `cdbench download cdd`")
    message = str(info.value)
    assert str(archive) in message
    assert "delete it and re-run `cdbench download cdd`" in message
    assert tree(work) == []


# --------------------------------------------------------------------------- bounds (bombs)

MIB = 1 << 20


def zeros_zip(path: Path, entries: dict[str, int], extra: dict[str, bytes] | None = None) -> Path:
    """A deflated zip of entries made of zeros (name -> size): they pack about 1000:1."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, size in entries.items():
            zf.writestr(name, bytes(size))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def test_bomb_entry_is_refused_with_the_default_limits_before_writing(
    sandbox: tuple[Path, Path],
) -> None:
    """8 MiB of zeros packed about 1000:1: the real default ratio limit (100) refuses it."""
    archives, work = sandbox
    archive = zeros_zip(archives / "train.zip", {"A/train_3.png": 8 * MIB})
    packed = zipfile.ZipFile(archive).getinfo("A/train_3.png").compress_size
    with pytest.raises(DataError) as info:
        extract_archive(archive, work / "out", fix="delete it and re-run `cdbench download`")
    message = str(info.value)
    assert (
        f"{archive}: entry 'A/train_3.png' declares {8 * MIB} bytes packed into {packed} bytes, "
        f"a compression ratio of {8 * MIB / packed:.0f} over the limit of 100"
    ) in message
    assert "refused, nothing was written" in message
    assert "delete it and re-run `cdbench download`" in message
    assert tree(work) == []


def test_entry_over_the_size_limit_is_refused_whatever_its_ratio(
    sandbox: tuple[Path, Path],
) -> None:
    archives, work = sandbox
    data = random.Random(0).randbytes(5000)  # incompressible: ratio about 1
    archive = write_zip(archives / "a.zip", {"A/train_1.png": data})
    limits = Limits(max_entry_bytes=4000)
    with pytest.raises(DataError) as info:
        extract_archive(archive, work / "out", limits=limits)
    message = str(info.value)
    assert "entry 'A/train_1.png' declares 5000 bytes" in message
    assert "over the limit of 4000 bytes for one entry" in message
    assert tree(work) == []
    extract_archive(archive, work / "out", limits=Limits(max_entry_bytes=5000))
    assert (work / "out/A/train_1.png").read_bytes() == data


def test_many_small_bomb_entries_are_refused_together(sandbox: tuple[Path, Path]) -> None:
    """Each entry is under the ratio floor, their total is not: the total ratio is checked."""
    archives, work = sandbox
    archive = zeros_zip(archives / "a.zip", {f"A/train_{i}.png": 300_000 for i in range(1, 5)})
    limits = Limits(ratio_floor_bytes=MIB)
    with pytest.raises(DataError, match=r"its 4 entries to extract declare 1200000 bytes packed"):
        extract_archive(archive, work / "out", limits=limits)
    assert tree(work) == []


def test_lowered_ratio_limit_is_applied(sandbox: tuple[Path, Path]) -> None:
    """A smaller bomb against a lowered limit: the limit passed is the one applied."""
    archives, work = sandbox
    archive = zeros_zip(archives / "a.zip", {"x.bin": 20_000})
    extract_archive(archive, work / "ok")  # under the default floor: accepted
    with pytest.raises(DataError, match=r"entry 'x.bin' declares 20000 bytes .* limit of 5 "):
        extract_archive(archive, work / "out", limits=Limits(max_ratio=5, ratio_floor_bytes=0))
    assert tree(work) == ["ok", "ok/x.bin"]


def test_free_disk_space_is_checked_before_writing(
    sandbox: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    archives, work = sandbox
    archive = write_zip(archives / "a.zip", {"A/train_1.png": b"x" * 1000})
    monkeypatch.setattr(extract, "_free_bytes", lambda folder: 1500)
    with pytest.raises(DataError) as info:
        extract_archive(archive, work / "out", limits=Limits(free_margin_bytes=600))
    message = str(info.value)
    assert f"{work}: extracting {archive} needs 1000 bytes plus a margin of 600 bytes" in message
    assert "only 1500 bytes are free on that disk; nothing was written" in message
    assert tree(work) == []
    extract_archive(archive, work / "out", limits=Limits(free_margin_bytes=500))
    assert tree(work) == ["out", "out/A", "out/A/train_1.png"]


def test_a_member_is_never_copied_past_its_declared_size() -> None:
    """Declared sizes can lie: the copy stops at the declared size, whatever the source yields."""
    member = extract.Member("A/train_3.png", False, size=10, packed=5)
    written = io.BytesIO()
    with pytest.raises(DataError) as info:
        extract._copy_at_most(Path("t.zip"), member, io.BytesIO(bytes(100)), written, "fix it")
    assert "t.zip: entry 'A/train_3.png' holds more than the 10 bytes it declares" in str(
        info.value
    )
    assert len(written.getvalue()) <= 10
    exact = io.BytesIO()
    extract._copy_at_most(Path("t.zip"), member, io.BytesIO(bytes(10)), exact, "fix it")
    assert exact.getvalue() == bytes(10)


def test_rar_tool_cannot_write_past_the_largest_declared_size(
    rar_fixtures: Path,
    sandbox: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tool whose parse disagrees with the listing is stopped by the file-size limit."""
    _, work = sandbox
    fake = tmp_path / "fake-bsdtar"
    fake.write_text(
        "#!/bin/sh\n"
        'while [ $# -gt 0 ]; do [ "$1" = "-C" ] && dest="$2"; shift; done\n'
        'mkdir -p "$dest/sub/dir1"\n'
        'exec head -c 10000000 /dev/zero > "$dest/sub/dir1/file1.txt"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr(
        extract.shutil, "which", lambda tool: str(fake) if tool == "bsdtar" else None
    )
    with pytest.raises(DataError) as info:
        extract_archive(rar_fixtures / "rar5-subdirs.rar", work / "out")
    assert (
        "bsdtar: stopped by the file-size limit of 8 bytes (the largest size the listing declares)"
    ) in str(info.value)
    assert tree(work) == []


# --------------------------------------------------------------------------- only what is needed


def test_only_needed_entries_are_extracted_and_the_rest_skipped_unread(
    sandbox: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    archives, work = sandbox
    archive = zeros_zip(
        archives / "train.zip",
        {"junk.bin": 8 * MIB},  # a bomb by the default limits, but not needed
        extra={"A/train_1.png": b"a", "B/train_1.png": b"b", "Thumbs.db": b"t"},
    )
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: str | zipfile.ZipInfo, *args: object, **kw: object):  # type: ignore[no-untyped-def]
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    result = extract_archive(archive, work / "out", only={"A/train_1.png", "B/train_1.png"})
    assert tree(work / "out") == ["A", "A/train_1.png", "B", "B/train_1.png"]
    assert sorted(opened) == ["A/train_1.png", "B/train_1.png"]
    assert sorted(m.name for m in result.skipped) == ["Thumbs.db", "junk.bin"]
    assert result.skipped_summary() == {"files": 2, "names": ["Thumbs.db", "junk.bin"]}
    assert result.skipped_summary(listed=1) == {"files": 2, "names": ["Thumbs.db"]}


def test_only_names_an_entry_the_archive_lacks(sandbox: tuple[Path, Path]) -> None:
    archives, work = sandbox
    archive = write_zip(archives / "a.zip", {"A/x.png": b"x"})
    with pytest.raises(DataError, match=r"a.zip: has no file entry 'A/y.png'"):
        extract_archive(archive, work / "out", only={"A/x.png", "A/y.png"})
    assert tree(work) == []


def test_rar_only_keeps_the_needed_entries(rar_fixtures: Path, sandbox: tuple[Path, Path]) -> None:
    _, work = sandbox
    result = extract_archive(
        rar_fixtures / "rar5-subdirs.rar", work / "out", prefix="sub", only={"sub/dir1/file1.txt"}
    )
    assert [p for p in tree(work / "out") if (work / "out" / p).is_file()] == ["sub/dir1/file1.txt"]
    assert sorted(m.name for m in result.skipped) == [
        "sub/dir2/file2.txt",
        "sub/with space/long fn.txt",
        "sub/üȵĩöḋè/file.txt",
    ]


# --------------------------------------------------------------------------- file/folder clash


@pytest.mark.parametrize(
    "entries",
    [
        [("A/train_1.png", b"x", None), ("A/train_1.png/x", b"y", None)],
        [("A/train_1.png/x", b"y", None), ("A/train_1.png", b"x", None)],
        [("A/train_1.png", b"x", None), ("A/train_1.png/", b"", None)],
    ],
)
def test_file_and_folder_of_the_same_name_is_a_clear_error(
    sandbox: tuple[Path, Path], entries: list[tuple[str, bytes, int | None]]
) -> None:
    archives, work = sandbox
    archive = raw_zip(archives / "train.zip", entries)
    for call in (
        lambda: list_members(archive),
        lambda: extract_archive(archive, work / "out"),
    ):
        with pytest.raises(DataError) as info:
            call()
        message = str(info.value)
        assert f"{archive}: entry 'A/train_1.png' is a file, but entry 'A/train_1.png" in message
        assert "needs a folder of that name" in message
    assert tree(work) == []


# --------------------------------------------------------------------------- through prepare


def test_prepare_skips_a_junk_bomb_and_lists_it_in_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    write_levir_archives(raw, size=256)
    with zipfile.ZipFile(raw / "train.zip", "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("junk.bin", bytes(8 * MIB))
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: str | zipfile.ZipInfo, *args: object, **kw: object):  # type: ignore[no-untyped-def]
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    manifest = prepare_dataset("levir-cd", raw, tmp_path / "out", allow_partial=True, workers=1)
    assert "junk.bin" not in opened
    assert manifest["skipped_entries"] == {
        "train.zip": {"files": 1, "names": ["junk.bin"]},
        "val.zip": {"files": 0, "names": []},
        "test.zip": {"files": 0, "names": []},
    }
    assert manifest["counts"]["train"]["found_images"] == 3


def test_prepare_refuses_a_bomb_as_a_needed_image(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_levir_archives(raw, size=256)
    members = levir_members("train", 3, size=256)
    del members["A/train_3.png"]
    write_zip(raw / "train.zip", members)
    with zipfile.ZipFile(raw / "train.zip", "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("A/train_3.png", bytes(8 * MIB))
    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, tmp_path / "out", allow_partial=True, workers=1)
    message = str(info.value)
    assert f"{raw / 'train.zip'}: entry 'A/train_3.png' declares {8 * MIB} bytes" in message
    assert "over the limit of 100 (an archive bomb); refused" in message
    assert "re-run `cdbench download levir-cd`" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
