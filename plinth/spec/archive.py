"""Package archives: deterministic tar.gz creation and safe extraction.

Creation is byte-for-byte reproducible (sorted entries, zeroed mtimes and owners, fixed gzip
header) so an unchanged package has an unchanged sha256, which is what makes re-pushing cheap.
Extraction checks every member before writing anything and extracts into a temporary sibling
directory renamed into place, so a rejected archive leaves nothing behind.
"""

from __future__ import annotations

import gzip
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pathspec

from plinth.exceptions import ArchiveError
from plinth.hashing import file_sha256

IGNORE_FILENAMES = (".truss_ignore", ".plinthignore")
DEFAULT_IGNORE_PATTERNS = (
    ".git/",
    "__pycache__/",
    "*.pyc",
    ".venv/",
    ".DS_Store",
)
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ArchiveInfo:
    """A created archive: where it is, its content hash, size in bytes, files inside."""

    path: Path
    sha256: str
    size: int
    file_count: int


def load_ignore_spec(package_dir: Path) -> pathspec.PathSpec:
    """Default ignores plus the package's `.truss_ignore` / `.plinthignore` (gitignore syntax)."""
    patterns = list(DEFAULT_IGNORE_PATTERNS)
    for name in IGNORE_FILENAMES:
        ignore_file = package_dir / name
        if ignore_file.is_file():
            patterns.extend(ignore_file.read_text(encoding="utf-8").splitlines())
    return pathspec.GitIgnoreSpec.from_lines(patterns)


def list_package_files(package_dir: Path | str) -> list[str]:
    """Relative POSIX paths (files, symlinks and directories, dirs ending in '/') that an
    archive of `package_dir` contains, sorted."""
    root = Path(package_dir)
    spec = load_ignore_spec(root)
    entries: list[str] = []
    for current, dir_names, file_names in os.walk(root):
        rel_dir = Path(current).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else f"{rel_dir}/"
        kept_dirs = []
        for dir_name in sorted(dir_names):
            rel = f"{prefix}{dir_name}/"
            if spec.match_file(rel):
                continue
            entries.append(rel)
            # os.walk does not descend into symlinked dirs; they are archived as links.
            kept_dirs.append(dir_name)
        dir_names[:] = kept_dirs
        entries.extend(
            f"{prefix}{name}" for name in file_names if not spec.match_file(f"{prefix}{name}")
        )
    return sorted(entries)


def _tar_info(root: Path, rel: str) -> tuple[tarfile.TarInfo, Path | None]:
    """A normalized header for one entry and, for regular files, the file to read."""
    source = root / rel.rstrip("/")
    info = tarfile.TarInfo(rel.rstrip("/"))
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    status = source.lstat()
    if stat.S_ISLNK(status.st_mode):
        target = os.readlink(source)
        if not _link_stays_inside(rel.rstrip("/"), target):
            raise ArchiveError(
                f"symlink '{rel.rstrip('/')}' points outside the package ({target})", member=rel
            )
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        return info, None
    if stat.S_ISDIR(status.st_mode):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        return info, None
    if not stat.S_ISREG(status.st_mode):
        raise ArchiveError(f"'{rel}' is not a regular file, directory or symlink", member=rel)
    info.type = tarfile.REGTYPE
    info.size = status.st_size
    info.mode = 0o755 if status.st_mode & stat.S_IXUSR else 0o644
    return info, source


def create_archive(package_dir: Path | str, dest_path: Path | str) -> ArchiveInfo:
    """Write a deterministic tar.gz of `package_dir` to `dest_path` (atomically)."""
    root = Path(package_dir)
    dest = Path(dest_path)
    if not root.is_dir():
        raise ArchiveError(f"package directory {root} does not exist")
    entries = list_package_files(root)
    resolved_dest = dest.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    file_count = 0
    try:
        with (
            os.fdopen(handle, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for rel in entries:
                if (root / rel).resolve() == resolved_dest or rel == Path(temp_name).name:
                    continue  # the archive being written inside the package itself
                info, source = _tar_info(root, rel)
                if source is None:
                    tar.addfile(info)
                else:
                    with source.open("rb") as content:
                        tar.addfile(info, content)
                if info.type != tarfile.DIRTYPE:
                    file_count += 1
        os.replace(temp_name, dest)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return ArchiveInfo(
        path=dest, sha256=file_sha256(dest), size=dest.stat().st_size, file_count=file_count
    )


def _link_stays_inside(member_name: str, link_target: str) -> bool:
    """Whether a symlink at `member_name` pointing at `link_target` stays within the tree."""
    if link_target.startswith("/") or not link_target:
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(member_name), link_target))
    return joined != ".." and not joined.startswith("../")


def _normalized_name(name: str) -> str:
    return posixpath.normpath(name) if name not in ("", ".") else "."


def check_member(member: tarfile.TarInfo) -> None:
    """Raise `ArchiveError` naming `member` when extracting it could escape the destination."""
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"archive member '{name}' has an absolute path", member=name)
    if ".." in name.replace("\\", "/").split("/"):
        raise ArchiveError(f"archive member '{name}' contains a '..' component", member=name)
    if member.issym():
        if not _link_stays_inside(_normalized_name(name), member.linkname):
            raise ArchiveError(
                f"archive member '{name}' is a symlink pointing outside the archive "
                f"({member.linkname})",
                member=name,
            )
    elif member.islnk():
        target = member.linkname
        if target.startswith("/") or ".." in target.split("/"):
            raise ArchiveError(
                f"archive member '{name}' is a hard link pointing outside the archive ({target})",
                member=name,
            )
    elif not (member.isfile() or member.isdir()):
        raise ArchiveError(
            f"archive member '{name}' is a device, fifo or other special file", member=name
        )


def extract_archive(archive_path: Path | str, dest_dir: Path | str) -> Path:
    """Safely extract a package archive into `dest_dir` (absent or empty); returns `dest_dir`.

    Any unsafe member (absolute path, '..', link out of the tree, device file) raises
    `ArchiveError` naming it, and `dest_dir` is left as it was.
    """
    dest = Path(dest_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ArchiveError(f"extraction target {dest} exists and is not an empty directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        _extract_checked(Path(archive_path), staging)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _filter_reason(error: tarfile.FilterError) -> str:
    if isinstance(error, tarfile.LinkOutsideDestinationError):
        return "it is a link that resolves outside the archive"
    if isinstance(error, tarfile.OutsideDestinationError):
        return "its path resolves outside the archive"
    return type(error).__name__


def _extract_checked(archive_path: Path, staging: Path) -> None:
    try:
        with tarfile.open(archive_path, mode="r:*") as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member)
            for member in members:
                try:
                    # The stdlib "data" filter re-checks each path after symlinks resolve,
                    # which catches link chains a purely lexical check cannot see.
                    tar.extract(member, staging, filter="data")
                except tarfile.FilterError as exc:
                    # The stdlib message holds host paths; name the member and the rule only.
                    raise ArchiveError(
                        f"archive member '{member.name}' is unsafe: {_filter_reason(exc)}",
                        member=member.name,
                    ) from exc
    except (tarfile.TarError, EOFError, OSError, KeyError, gzip.BadGzipFile) as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"cannot read archive {archive_path.name}: {exc}") from exc
