"""Safe extraction of the dataset archives (zip for LEVIR-CD, RAR for CDD).

An archive is trusted no further than its listing: every entry is checked BEFORE anything is
written, and an archive holding an absolute path, a `..` component, a symbolic link, a hard
link, a file-copy reference or a device/FIFO entry is refused as a whole with a `DataError`
naming the archive and the entry. What passes is extracted into a temporary folder beside the
target; that folder is then checked again (no link of any kind, exactly the listed files with
the listed sizes) before it is renamed into place, so a tool that behaves differently from its
listing cannot leave a link or a stray file behind (defence in depth).

The format is read from the file's first bytes, not from its extension, so a zip named `.rar`
is extracted as a zip (the tests use this: no free tool writes RAR).

- zip: read with `zipfile`; each member is copied by this module to a path it built itself.
- RAR: listed with the `rarfile` package (pure-Python header parser, `errors="strict"` so a
  truncated header is an error), extracted by an external tool. Neither free tool reads every
  RAR flavour (datasets.md: bsdtar fails on RAR3 solid archives, unar on some RAR5 ones), so
  `bsdtar` is tried first and `unar` second, and when both fail the error reports both.

Reference checked: `rarfile` 4.5 (`RarFile.extractall` / `_extract_one`), the test archives of
its source distribution (../shared/fixtures/rar/).

Deliberate departures:
- RAR members are not extracted through `RarFile.extractall`: rarfile 4.5 starts one tool
  process per member, and on a solid archive each of those decompresses from the start again,
  which is quadratic in the member count (CDD holds about 50,000 files). One tool process per
  archive is used instead, with rarfile's listing as the contract it is checked against.
- Links are refused outright rather than created when they point inside the target (rarfile's
  behaviour): no dataset needs them, and refusing is simpler to reason about.
- A zip name holding backslashes is read with `\\` as a separator (as Info-ZIP's unzip does)
  for the safety checks and the destination path.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import rarfile
from tqdm import tqdm

from benchmark.errors import DataError

ArchiveFormat = Literal["zip", "rar"]

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
RAR_MAGIC = (b"Rar!\x1a\x07\x00", b"Rar!\x1a\x07\x01\x00")
RAR_TOOLS = ("bsdtar", "unar")
"""External RAR extractors, in the order they are tried."""

DEFAULT_FIX = "delete it and download it again (`cdbench download <dataset>`)"


@dataclass(frozen=True)
class Member:
    """One entry of an archive, after its name has been checked.

    Attributes:
        name: the entry's relative POSIX path, without leading `./` or trailing `/`.
        is_dir: whether the entry is a folder.
        size: uncompressed size in bytes (0 for folders).
    """

    name: str
    is_dir: bool
    size: int


def archive_format(path: Path, *, fix: str = DEFAULT_FIX) -> ArchiveFormat:
    """Tell a zip from a RAR archive by its first bytes.

    Args:
        path: the archive.
        fix: what to tell the user to do when the file is not an archive.

    Raises:
        DataError: the file is missing, empty, or neither a zip nor a RAR archive.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from exc
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(RAR_MAGIC):
        return "rar"
    raise DataError(
        f"{path}: neither a zip nor a RAR archive (first bytes {head!r}); "
        f"if it is a truncated or failed download, {fix}"
    )


def checked_name(archive: Path, raw_name: str) -> str:
    """Return `raw_name` as a relative POSIX path, or refuse an entry that could escape.

    Raises:
        DataError: the name is absolute, has a drive letter, contains `..`, or is empty.
    """
    name = raw_name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise DataError(
            f"{archive}: entry {raw_name!r} has an absolute path; refusing to extract "
            f"an archive that could write outside its target folder"
        )
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise DataError(
            f"{archive}: entry {raw_name!r} contains a '..' component; refusing to extract "
            f"an archive that could write outside its target folder"
        )
    if not parts:
        raise DataError(f"{archive}: entry {raw_name!r} has an empty name")
    return "/".join(parts)


def _refuse_kind(archive: Path, raw_name: str, kind: str) -> DataError:
    return DataError(
        f"{archive}: entry {raw_name!r} is a {kind}; links and special files are refused "
        f"(a dataset archive holds only folders and regular files)"
    )


def _mode_kind(mode: int) -> str | None:
    """The refused kind of a Unix mode (`None` for a regular file, a folder or no type bits)."""
    file_type = stat.S_IFMT(mode)
    if file_type in (0, stat.S_IFREG, stat.S_IFDIR):
        return None
    if file_type == stat.S_IFLNK:
        return "symbolic link"
    return "device, FIFO or socket"


def _zip_members(archive: Path, fix: str) -> list[tuple[zipfile.ZipInfo, Member]]:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(
            f"{archive}: not a readable zip archive ({exc}); it is probably truncated or "
            f"corrupt: {fix}"
        ) from exc
    members = []
    for info in infos:
        name = checked_name(archive, info.filename)
        kind = _mode_kind(info.external_attr >> 16)
        if kind is not None:
            raise _refuse_kind(archive, info.filename, kind)
        if info.flag_bits & 0x1:
            raise DataError(f"{archive}: entry {info.filename!r} is encrypted; not supported")
        is_dir = info.is_dir()
        members.append((info, Member(name, is_dir, 0 if is_dir else info.file_size)))
    return members


def _rar_infos(archive: Path, fix: str) -> list[rarfile.RarInfo]:
    try:
        with rarfile.RarFile(archive, errors="strict") as rf:
            return rf.infolist()
    except rarfile.Error as exc:
        raise DataError(
            f"{archive}: not a readable RAR archive ({exc}); it is probably truncated or "
            f"corrupt: {fix}"
        ) from exc


def _rar_members(archive: Path, fix: str) -> list[Member]:
    members = []
    for info in _rar_infos(archive, fix):
        name = checked_name(archive, info.filename)
        if info.file_redir is not None:
            redir_type = info.file_redir[0]
            kinds = {
                rarfile.RAR5_XREDIR_UNIX_SYMLINK: "symbolic link",
                rarfile.RAR5_XREDIR_WINDOWS_SYMLINK: "symbolic link",
                rarfile.RAR5_XREDIR_WINDOWS_JUNCTION: "junction",
                rarfile.RAR5_XREDIR_HARD_LINK: "hard link",
                rarfile.RAR5_XREDIR_FILE_COPY: "file-copy reference",
            }
            raise _refuse_kind(archive, info.filename, kinds.get(redir_type, "link"))
        if info.is_symlink():
            raise _refuse_kind(archive, info.filename, "symbolic link")
        if info.host_os == rarfile.RAR_OS_UNIX and info.mode is not None:
            kind = _mode_kind(info.mode)
            if kind is not None:
                raise _refuse_kind(archive, info.filename, kind)
        if info.needs_password():
            raise DataError(f"{archive}: entry {info.filename!r} is encrypted; not supported")
        is_dir = info.is_dir()
        members.append(Member(name, is_dir, 0 if is_dir else info.file_size))
    return members


def _refuse_duplicates(archive: Path, members: list[Member]) -> None:
    seen: set[str] = set()
    for member in members:
        if member.name in seen and not member.is_dir:
            raise DataError(f"{archive}: entry {member.name!r} appears more than once")
        seen.add(member.name)


def list_members(archive: Path, *, fix: str = DEFAULT_FIX) -> list[Member]:
    """List an archive's entries, refusing the archive if any entry is unsafe.

    Args:
        archive: the zip or RAR file (the format is read from its first bytes).
        fix: what to tell the user to do when the archive is truncated or corrupt.

    Raises:
        DataError: the archive is unreadable, or an entry is absolute, has `..`, is a link,
            a special file, encrypted, or appears twice.
    """
    archive = Path(archive)
    if archive_format(archive, fix=fix) == "zip":
        members = [member for _, member in _zip_members(archive, fix)]
    else:
        members = _rar_members(archive, fix)
    _refuse_duplicates(archive, members)
    return members


def _under(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + "/")


def extract_archive(
    archive: Path, target: Path, *, prefix: str = "", fix: str = DEFAULT_FIX
) -> list[Member]:
    """Extract an archive (or only its entries under `prefix`) into a new folder `target`.

    Args:
        archive: the zip or RAR file (the format is read from its first bytes).
        target: folder to create; it must not exist yet.
        prefix: relative folder inside the archive; when given, only entries under it are
            extracted (e.g. `ChangeDetectionDataset/Real/subset` for CDD). Entries elsewhere are
            still checked for safety.
        fix: what to tell the user to do when the archive is truncated or corrupt.

    Returns:
        The extracted members (their `name` is their path relative to `target`).

    Raises:
        DataError: an unsafe entry (nothing is written), a truncated or corrupt archive, or no
            tool able to read a RAR archive.
        FileExistsError: `target` already exists.
    """
    archive = Path(archive)
    target = Path(target)
    prefix = prefix.strip("/")
    if target.exists():
        raise FileExistsError(f"{target}: extraction target already exists")
    kind = archive_format(archive, fix=fix)
    if kind == "zip":
        pairs = _zip_members(archive, fix)
        _refuse_duplicates(archive, [m for _, m in pairs])
        selected = [(info, m) for info, m in pairs if _under(m.name, prefix)]
        members = [m for _, m in selected]
    else:
        members = [m for m in list_members(archive, fix=fix) if _under(m.name, prefix)]
    if prefix and not members:
        raise DataError(f"{archive}: holds nothing under {prefix + '/'!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.extracting-", dir=target.parent))
    try:
        if kind == "zip":
            _extract_zip(archive, selected, scratch, fix)
            problem = _tree_problem(archive, scratch, members)
            if problem:
                raise DataError(f"{archive}: extraction went wrong ({problem}); {fix}")
        else:
            _extract_rar(archive, members, scratch, prefix, fix)
        scratch.rename(target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return members


def _extract_zip(
    archive: Path, selected: list[tuple[zipfile.ZipInfo, Member]], scratch: Path, fix: str
) -> None:
    with (
        zipfile.ZipFile(archive) as zf,
        tqdm(total=len(selected), desc=f"extract {archive.name}", unit="file") as bar,
    ):
        made: set[Path] = set()  # folders already created (one mkdir each, not one per file)
        for info, member in selected:
            bar.update()
            dest = scratch / member.name
            folder = dest if member.is_dir else dest.parent
            if folder not in made:
                folder.mkdir(parents=True, exist_ok=True)
                made.add(folder)
            if member.is_dir:
                continue
            try:
                with zf.open(info) as src, open(dest, "xb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise DataError(
                    f"{archive}: entry {info.filename!r} cannot be read ({exc}); the archive "
                    f"is truncated or corrupt: {fix}"
                ) from exc


def _tree_problem(archive: Path, root: Path, members: list[Member]) -> str | None:
    """Check an extracted tree against the listing.

    Returns:
        A description of a tool-level problem (missing, extra or wrong-sized file), or None.

    Raises:
        DataError: the tree holds a link or a special file (never a tool quirk: a security
            failure, reported at once).
    """
    expected = {m.name: m.size for m in members if not m.is_dir}
    found: dict[str, int] = {}
    for folder, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = Path(folder) / entry
            mode = path.lstat().st_mode
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise DataError(
                    f"{archive}: extracting produced {rel!r}, which is a link or special file "
                    f"although the archive's listing showed none; refusing to use it"
                )
            if stat.S_ISREG(mode):
                found[rel] = path.lstat().st_size
    missing = sorted(set(expected) - set(found))
    if missing:
        return f"{len(missing)} listed file(s) not extracted, e.g. {missing[0]!r}"
    extra = sorted(set(found) - set(expected))
    if extra:
        return f"{len(extra)} file(s) extracted that are not in the listing, e.g. {extra[0]!r}"
    for name, size in expected.items():
        if found[name] != size:
            return f"{name!r} has {found[name]} bytes, the listing says {size}"
    return None


def _rar_command(tool: str, executable: str, archive: Path, dest: Path, prefix: str) -> list[str]:
    if tool == "bsdtar":
        # bsdtar's defaults already refuse '..', absolute paths and writing through links.
        return [executable, "-x", "-v", "-f", str(archive), "-C", str(dest)] + (
            [prefix] if prefix else []
        )
    # -D: no extra containing folder; -nr: do not unpack archives found inside; -k skip: no
    # Mac resource-fork side files.
    return [executable, "-o", str(dest), "-D", "-f", "-nr", "-k", "skip", str(archive)] + (
        [f"{prefix}/*"] if prefix else []
    )


def _run_tool(command: list[str], progress: tqdm) -> tuple[int, str]:
    """Run an extractor, advancing `progress` per line of its verbose output."""
    tail: deque[str] = deque(maxlen=5)
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.strip()
            if line:
                tail.append(line)
                progress.update(1)
        returncode = process.wait()
    return returncode, " | ".join(tail)


def _extract_rar(
    archive: Path, members: list[Member], scratch: Path, prefix: str, fix: str
) -> None:
    failures = []
    for tool in RAR_TOOLS:
        executable = shutil.which(tool)
        if executable is None:
            failures.append(f"{tool}: not installed")
            continue
        command = _rar_command(tool, executable, archive, scratch, prefix)
        with tqdm(total=len(members), desc=f"extract {archive.name} ({tool})", unit="file") as bar:
            returncode, output = _run_tool(command, bar)
        problem = _tree_problem(archive, scratch, members)
        if returncode == 0 and problem is None:
            return
        failure = f"{tool}: exit status {returncode}"
        if problem:
            failure += f", {problem}"
        if output and returncode != 0:
            failure += f" ({output})"
        failures.append(failure)
        shutil.rmtree(scratch)
        scratch.mkdir()
    if all(failure.endswith("not installed") for failure in failures):
        raise DataError(
            f"{archive}: no RAR extractor found; install `unar` or `libarchive-tools` "
            f"(bsdtar), e.g. `sudo apt-get install unar libarchive-tools`"
        )
    raise DataError(
        f"{archive}: no tool could extract it ({'; '.join(failures)}); if the archive is "
        f"truncated or corrupt, {fix}"
    )
