"""Safe extraction: traversal, absolute paths, links, truncation, tool fallback, subsets."""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from benchmark.data import extract
from benchmark.data.extract import archive_format, checked_name, extract_archive, list_members
from benchmark.errors import DataError
from tests.data.archives import write_zip


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
    members = extract_archive(archive, work / "out")
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
            self.file_redir, self.host_os, self.mode = None, 0, None

        def is_dir(self) -> bool:
            return self._dir

        def is_symlink(self) -> bool:
            return False

        def needs_password(self) -> bool:
            return False

    # The listing now claims `up` is a plain file; both tools create it as the link it is.
    monkeypatch.setattr(
        extract,
        "_rar_infos",
        lambda archive, fix: [Info("up", False, 0), Info("up/pwned.txt", False, 23)],
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
    )
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
    """unar fails on this RAR5 archive (datasets.md); without bsdtar it cannot be read."""
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
