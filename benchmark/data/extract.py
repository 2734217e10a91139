"""Safe extraction of the dataset archives (zip for LEVIR-CD, RAR for CDD).

An archive is trusted no further than its listing: every entry is checked BEFORE anything is
written, and an archive holding an absolute path, a `..` component, a symbolic link, a hard
link, a file-copy reference or a device/FIFO entry is refused as a whole with a `DataError`
naming the archive and the entry. What passes is extracted into a temporary folder beside the
target; that folder is then checked again (no link of any kind, exactly the listed files with
the listed sizes) before it is renamed into place, so a tool that behaves differently from its
listing cannot leave a link or a stray file behind (defence in depth).

What is written is bounded (archive bombs): before anything is written, every entry to be
extracted must declare at most `Limits.max_entry_bytes` and, above `Limits.ratio_floor_bytes`,
a compression ratio (declared size / packed size) of at most `Limits.max_ratio`, the same
holds for all of them together, and their declared total (plus a margin) must fit in the free
space of the target's disk. Declared sizes can lie, so the bytes actually written are bounded
too: a zip member is copied only up to its declared size, and the RAR tools run under a
file-size limit (`RLIMIT_FSIZE`) of the largest declared size. Only the entries a caller
needs are extracted (`only`); the others are skipped unread and reported (`Extraction`).
A file and a folder of the same name are refused, as they cannot both be written.

The format is read from the file's first bytes, not from its extension, so a zip named `.rar`
is extracted as a zip (the tests use this: no free tool writes RAR).

- zip: read with `zipfile`; each member is copied by this module to a path it built itself.
- RAR: listed with the `rarfile` package (pure-Python header parser, `errors="strict"` so a
  truncated header is an error), extracted by an external tool. Neither free tool reads every
  RAR flavour (bsdtar fails on RAR3 solid archives, unar on some RAR5 solid ones: see
  tests/data/rar), so `bsdtar` is tried first and `unar` second, and when both fail the error
  reports both.

Reference checked: `rarfile` 4.5 (`RarFile.extractall` / `_extract_one`), the test archives of
its source distribution.

Deliberate departures:
- RAR members are not extracted through `RarFile.extractall`: rarfile 4.5 starts one tool
  process per member, and on a solid archive each of those decompresses from the start again,
  which is quadratic in the member count (CDD holds about 50,000 files). One tool process per
  archive is used instead, with rarfile's listing as the contract it is checked against.
- Links are refused outright rather than created when they point inside the target (rarfile's
  behaviour): no dataset needs them, and refusing is simpler to reason about.
- A zip name holding backslashes is read with `\\` as a separator (as Info-ZIP's unzip does)
  for the safety checks and the destination path.
- `only` on a RAR archive: the tool still writes every entry under `prefix` (naming tens of
  thousands of entries on its command line is not possible), each bounded as above; the
  entries not needed are deleted before the folder is renamed into place, and reported as
  skipped. Entries outside `prefix` are never read.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import tempfile
import zipfile
import zlib
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import rarfile
from tqdm import tqdm

from benchmark.errors import DataError
from benchmark.progress import progress_bar

ArchiveFormat = Literal["zip", "rar"]

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
RAR_MAGIC = (b"Rar!\x1a\x07\x00", b"Rar!\x1a\x07\x01\x00")
RAR_TOOLS = ("bsdtar", "unar")
"""External RAR extractors, in the order they are tried."""

DEFAULT_FIX = "delete it and download it again (`cdbench download <dataset>`)"
SKIPPED_NAMES_LISTED = 1000
"""At most this many skipped entry names are listed by `Extraction.skipped_summary`."""


@dataclass(frozen=True)
class Limits:
    """How much an extraction may write; what an archive asking for more gets refused.

    The defaults fit the datasets with a wide margin: their entries are PNG and JPEG images of
    a few MiB at most that do not compress further (ratio about 1), while a zip of 1 GiB of
    zeros packs at a ratio of about 1000 and bzip2 or LZMA far higher.

    Attributes:
        max_ratio: largest declared size / packed size of an entry, and of all the entries to
            extract together.
        ratio_floor_bytes: entries (and totals) of at most this many bytes are not held to
            `max_ratio` (a small file compresses at any ratio and harms no one).
        max_entry_bytes: largest declared size of one entry.
        free_margin_bytes: free space to leave on the target's disk after the extraction.
    """

    max_ratio: float = 100.0
    ratio_floor_bytes: int = 1 << 20
    max_entry_bytes: int = 256 << 20
    free_margin_bytes: int = 256 << 20


@dataclass(frozen=True)
class Member:
    """One entry of an archive, after its name has been checked.

    Attributes:
        name: the entry's relative POSIX path, without leading `./` or trailing `/`.
        is_dir: whether the entry is a folder.
        size: uncompressed size in bytes as the archive declares it (0 for folders).
        packed: compressed size in bytes as the archive declares it (0 for folders).
    """

    name: str
    is_dir: bool
    size: int
    packed: int = 0


@dataclass(frozen=True)
class Extraction:
    """What `extract_archive` did.

    Attributes:
        extracted: the members now under the target (`name` is the path relative to it).
        skipped: the file entries not extracted (outside `prefix`, or not in `only`).
    """

    extracted: list[Member]
    skipped: list[Member] = field(default_factory=list)

    def skipped_summary(self, listed: int = SKIPPED_NAMES_LISTED) -> dict[str, Any]:
        """For a manifest: how many file entries were skipped, and their names in name order
        (the first `listed`: CDD skips its whole `Model/` part, some 70,000 files)."""
        names = sorted(m.name for m in self.skipped)
        return {"files": len(names), "names": names[:listed]}


def _size_text(n: int) -> str:
    return f"{n} bytes ({n / (1 << 30):.2f} GiB)" if n >= 1 << 30 else f"{n} bytes"


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
        size, packed = (0, 0) if is_dir else (info.file_size, info.compress_size)
        members.append((info, Member(name, is_dir, size, packed)))
    return members


def _rar_infos(archive: Path, fix: str) -> list[rarfile.RarInfo]:
    try:
        with rarfile.RarFile(archive, errors="strict") as rf:
            infos: list[rarfile.RarInfo] = rf.infolist()
            return infos
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
        size, packed = (0, 0) if is_dir else (info.file_size, info.compress_size)
        members.append(Member(name, is_dir, size, packed))
    return members


def _refuse_clashes(archive: Path, members: list[Member], fix: str) -> None:
    """Refuse a file entry listed twice, or a name that is both a file and a folder.

    A file `A/x.png` and an entry `A/x.png/y` (or a folder entry `A/x.png/`) cannot both be
    written; which one wins would depend on the order of the entries.
    """
    seen: set[str] = set()
    files: set[str] = set()
    for member in members:
        if member.name in seen and not member.is_dir:
            raise DataError(f"{archive}: entry {member.name!r} appears more than once")
        seen.add(member.name)
        if not member.is_dir:
            files.add(member.name)
    for member in members:
        parts = member.name.split("/")
        folders = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if member.is_dir:
            folders.append(member.name)
        for folder in folders:
            if folder in files:
                raise DataError(
                    f"{archive}: entry {folder!r} is a file, but entry {member.name!r} needs a "
                    f"folder of that name; an archive cannot hold both, so it is damaged or "
                    f"not the dataset's: {fix}"
                )


def list_members(archive: Path, *, fix: str = DEFAULT_FIX) -> list[Member]:
    """List an archive's entries, refusing the archive if any entry is unsafe.

    Args:
        archive: the zip or RAR file (the format is read from its first bytes).
        fix: what to tell the user to do when the archive is truncated or corrupt.

    Raises:
        DataError: the archive is unreadable, or an entry is absolute, has `..`, is a link,
            a special file, encrypted, appears twice, or is both a file and a folder.
    """
    archive = Path(archive)
    if archive_format(archive, fix=fix) == "zip":
        members = [member for _, member in _zip_members(archive, fix)]
    else:
        members = _rar_members(archive, fix)
    _refuse_clashes(archive, members, fix)
    return members


def _under(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + "/")


def extract_archive(
    archive: Path,
    target: Path,
    *,
    prefix: str = "",
    only: Collection[str] | None = None,
    limits: Limits = Limits(),
    fix: str = DEFAULT_FIX,
) -> Extraction:
    """Extract an archive (or only the entries a caller needs) into a new folder `target`.

    Args:
        archive: the zip or RAR file (the format is read from its first bytes).
        target: folder to create; it must not exist yet.
        prefix: relative folder inside the archive; when given, only entries under it are
            extracted (e.g. `ChangeDetectionDataset/Real/subset` for CDD). Entries elsewhere are
            still checked for safety.
        only: when given, the names of the file entries to extract (the folders holding them
            are created); every other file entry is skipped unread (RAR: see the module's
            departures) and reported in `Extraction.skipped`.
        limits: the bounds on what is written (archive bombs); see `Limits`.
        fix: what to tell the user to do when the archive is truncated, corrupt or refused.

    Returns:
        The members extracted and the file entries skipped.

    Raises:
        DataError: an unsafe entry, an entry or a total over `limits`, too little free disk
            space (nothing is written in all these cases), a truncated or corrupt archive, an
            entry in `only` that the archive lacks, or no tool able to read a RAR archive.
        FileExistsError: `target` already exists.
    """
    archive = Path(archive)
    target = Path(target)
    prefix = prefix.strip("/")
    if target.exists():
        raise FileExistsError(f"{target}: extraction target already exists")
    kind = archive_format(archive, fix=fix)
    infos: dict[str, zipfile.ZipInfo] = {}
    if kind == "zip":
        pairs = _zip_members(archive, fix)
        listing = [m for _, m in pairs]
        infos = {m.name: info for info, m in pairs if not m.is_dir}
        _refuse_clashes(archive, listing, fix)
    else:
        listing = list_members(archive, fix=fix)
    under = [m for m in listing if _under(m.name, prefix)]
    if prefix and not under:
        raise DataError(f"{archive}: holds nothing under {prefix + '/'!r}")
    wanted = under if only is None else _only(archive, under, only, prefix)
    wanted_files = {m.name for m in wanted if not m.is_dir}
    skipped = [m for m in listing if not m.is_dir and m.name not in wanted_files]
    # What is written: the wanted entries; a RAR tool writes everything under the prefix.
    written = wanted if kind == "zip" else under
    target.parent.mkdir(parents=True, exist_ok=True)
    check_bounds(archive, written, target.parent, limits, fix)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.extracting-", dir=target.parent))
    try:
        if kind == "zip":
            _extract_zip(archive, infos, wanted, scratch, fix)
            problem = _tree_problem(archive, scratch, wanted)
            if problem:
                raise DataError(f"{archive}: extraction went wrong ({problem}); {fix}")
        else:
            _extract_rar(archive, under, scratch, prefix, fix)
            for member in under:
                if not member.is_dir and member.name not in wanted_files:
                    (scratch / member.name).unlink()
        scratch.rename(target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return Extraction(wanted, skipped)


def _only(archive: Path, under: list[Member], only: Collection[str], prefix: str) -> list[Member]:
    """The file entries of `under` named in `only`; every name in `only` must be there."""
    wanted = set(only)
    selected = [m for m in under if not m.is_dir and m.name in wanted]
    missing = sorted(wanted - {m.name for m in selected})
    if missing:
        where = f" under {prefix + '/'!r}" if prefix else ""
        raise DataError(
            f"{archive}: has no file entry {missing[0]!r}{where}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + "; the caller asked for it"
        )
    return selected


def _free_bytes(folder: Path) -> int:
    """Free bytes on the disk holding `folder` (a function, so tests can pretend a full disk)."""
    return shutil.disk_usage(folder).free


def check_bounds(
    archive: Path, members: list[Member], folder: Path, limits: Limits, fix: str
) -> None:
    """Refuse, before anything is written, an extraction that would write too much.

    Args:
        archive: the archive (named in the errors).
        members: the entries that would be written.
        folder: where they would be written (its disk's free space is checked).
        limits: the bounds.
        fix: what to tell the user to do with a refused archive.

    Raises:
        DataError: naming the entry, its declared and packed sizes, the ratio and the limit
            (or the total and the free space), and what to do.
    """
    files = [m for m in members if not m.is_dir]
    why = (
        "dataset images do not compress like that, so the archive is damaged, crafted or "
        f"not the dataset's: {fix} (if you trust it, raise the limit: `Limits` in "
        "benchmark/data/extract.py)"
    )
    for member in files:
        ratio = member.size / max(member.packed, 1)
        if member.size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise DataError(
                f"{archive}: entry {member.name!r} declares {_size_text(member.size)} packed "
                f"into {member.packed} bytes, a compression ratio of {ratio:.0f} over the limit "
                f"of {limits.max_ratio:.0f} (an archive bomb); refused, nothing was written: "
                f"{why}"
            )
        if member.size > limits.max_entry_bytes:
            raise DataError(
                f"{archive}: entry {member.name!r} declares {_size_text(member.size)} (packed "
                f"{member.packed} bytes, ratio {ratio:.0f}), over the limit of "
                f"{_size_text(limits.max_entry_bytes)} for one entry; refused, nothing was "
                f"written: {why}"
            )
    total = sum(m.size for m in files)
    packed = sum(m.packed for m in files)
    ratio = total / max(packed, 1)
    if total > limits.ratio_floor_bytes and ratio > limits.max_ratio:
        raise DataError(
            f"{archive}: its {len(files)} entries to extract declare {_size_text(total)} "
            f"packed into {packed} bytes, a compression ratio of {ratio:.0f} over the limit of "
            f"{limits.max_ratio:.0f} (an archive bomb); refused, nothing was written: {why}"
        )
    free = _free_bytes(folder)
    if total + limits.free_margin_bytes > free:
        raise DataError(
            f"{folder}: extracting {archive} needs {_size_text(total)} plus a margin of "
            f"{_size_text(limits.free_margin_bytes)}, but only {_size_text(free)} are free on "
            f"that disk; nothing was written: free some space there, or prepare onto a larger "
            f"disk (`cdbench prepare` extracts beside its --out folder)"
        )


def _extract_zip(
    archive: Path,
    infos: dict[str, zipfile.ZipInfo],
    members: list[Member],
    scratch: Path,
    fix: str,
) -> None:
    with (
        zipfile.ZipFile(archive) as zf,
        progress_bar(total=len(members), desc=f"extract {archive.name}", unit="file") as bar,
    ):
        made: set[Path] = set()  # folders already created (one mkdir each, not one per file)
        for member in members:
            bar.update()
            dest = scratch / member.name
            folder = dest if member.is_dir else dest.parent
            if folder not in made:
                folder.mkdir(parents=True, exist_ok=True)
                made.add(folder)
            if member.is_dir:
                continue
            info = infos[member.name]
            try:
                with zf.open(info) as src, open(dest, "xb") as dst:
                    _copy_at_most(archive, member, src, dst, fix)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise DataError(
                    f"{archive}: entry {info.filename!r} cannot be read ({exc}); the archive "
                    f"is truncated or corrupt: {fix}"
                ) from exc


def _copy_at_most(archive: Path, member: Member, src: IO[bytes], dst: IO[bytes], fix: str) -> None:
    """Copy a member, never writing more than its declared size.

    `zipfile` itself stops at the declared size today; this bound does not depend on that.

    Raises:
        DataError: the member yields more bytes than it declares.
    """
    left = member.size
    while chunk := src.read(min(1 << 20, left + 1)):
        if len(chunk) > left:
            raise DataError(
                f"{archive}: entry {member.name!r} holds more than the {member.size} bytes it "
                f"declares; stopped writing it: the archive is damaged or crafted: {fix}"
            )
        dst.write(chunk)
        left -= len(chunk)


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


def _run_tool(command: list[str], progress: tqdm[Any], max_file_bytes: int) -> tuple[int, str]:
    """Run an extractor, advancing `progress` per line of its verbose output.

    The tool runs under a file-size limit (`RLIMIT_FSIZE` = `max_file_bytes`): a write past it
    fails and the kernel stops the tool with SIGXFSZ, so no file it writes can grow beyond the
    largest size the listing declares, whatever its own parse of the archive says.
    """

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    tail: deque[str] = deque(maxlen=5)
    with subprocess.Popen(
        command,
        preexec_fn=limit_file_size,
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
    max_file_bytes = max((m.size for m in members if not m.is_dir), default=0)
    for tool in RAR_TOOLS:
        executable = shutil.which(tool)
        if executable is None:
            failures.append(f"{tool}: not installed")
            continue
        command = _rar_command(tool, executable, archive, scratch, prefix)
        desc = f"extract {archive.name} ({tool})"
        with progress_bar(total=len(members), desc=desc, unit="file") as bar:
            returncode, output = _run_tool(command, bar, max_file_bytes)
        problem = _tree_problem(archive, scratch, members)
        if returncode == 0 and problem is None:
            return
        failure = f"{tool}: exit status {returncode}"
        if returncode == -signal.SIGXFSZ:
            failure = (
                f"{tool}: stopped by the file-size limit of {max_file_bytes} bytes (the largest "
                f"size the listing declares): it wrote more than an entry declares"
            )
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
