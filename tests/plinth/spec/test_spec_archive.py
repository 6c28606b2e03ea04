"""Archives: deterministic creation, ignore files, and tar-slip variants refused."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from plinth.exceptions import ArchiveError
from plinth.spec import create_archive, extract_archive, file_sha256


def make_package(root: Path) -> Path:
    package = root / "pkg"
    (package / "model").mkdir(parents=True)
    (package / "config.yaml").write_text("model_name: m\n", encoding="utf-8")
    (package / "model" / "model.py").write_text("class Model: ...\n", encoding="utf-8")
    (package / "data").mkdir()
    (package / "data" / "weights.bin").write_bytes(os.urandom(4096))
    return package


def archive_names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def test_archive_is_deterministic(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    first = create_archive(package, tmp_path / "a.tar.gz")
    # Touch every file (new mtimes) and rewrite the same content: the hash must not move.
    later = time.time() + 1000
    for path in package.rglob("*"):
        os.utime(path, (later, later))
    second = create_archive(package, tmp_path / "b.tar.gz")
    assert first.sha256 == second.sha256 == file_sha256(second.path)
    assert first.size == second.size == second.path.stat().st_size
    assert first.file_count == 3
    assert archive_names(first.path) == sorted(archive_names(first.path))
    with tarfile.open(first.path) as tar:
        for member in tar.getmembers():
            assert (member.mtime, member.uid, member.gid, member.uname) == (0, 0, 0, "")


def test_content_change_changes_hash(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    before = create_archive(package, tmp_path / "a.tar.gz")
    (package / "model" / "model.py").write_text("class Model: pass\n", encoding="utf-8")
    after = create_archive(package, tmp_path / "b.tar.gz")
    assert before.sha256 != after.sha256


def test_default_and_custom_ignores(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    (package / ".git").mkdir()
    (package / ".git" / "HEAD").write_text("ref\n", encoding="utf-8")
    (package / "model" / "__pycache__").mkdir()
    (package / "model" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"x")
    (package / "stray.pyc").write_bytes(b"x")
    (package / ".venv" / "lib").mkdir(parents=True)
    (package / ".venv" / "lib" / "x.py").write_text("", encoding="utf-8")
    (package / "notes").mkdir()
    (package / "notes" / "a.md").write_text("", encoding="utf-8")
    (package / "big.ckpt").write_bytes(b"x")
    (package / ".truss_ignore").write_text("notes/\n*.ckpt\n", encoding="utf-8")
    (package / ".plinthignore").write_text("data/weights.bin\n", encoding="utf-8")
    info = create_archive(package, tmp_path / "a.tar.gz")
    assert archive_names(info.path) == [
        ".plinthignore",
        ".truss_ignore",
        "config.yaml",
        "data",
        "model",
        "model/model.py",
    ]


def test_archive_inside_package_is_not_included(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    info = create_archive(package, package / "out.tar.gz")
    again = create_archive(package, package / "out.tar.gz")
    assert "out.tar.gz" not in archive_names(again.path)
    assert info.sha256 == again.sha256


def test_symlink_out_of_package_refused_on_create(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    (package / "escape").symlink_to("/etc/passwd")
    with pytest.raises(ArchiveError, match="escape"):
        create_archive(package, tmp_path / "a.tar.gz")
    assert not (tmp_path / "a.tar.gz").exists()


def test_round_trip_extracts_same_files(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    (package / "model" / "link.py").symlink_to("model.py")
    info = create_archive(package, tmp_path / "a.tar.gz")
    dest = extract_archive(info.path, tmp_path / "out")
    assert (dest / "config.yaml").read_text(encoding="utf-8") == "model_name: m\n"
    assert (dest / "data" / "weights.bin").read_bytes() == (
        package / "data" / "weights.bin"
    ).read_bytes()
    assert (dest / "model" / "link.py").is_symlink()
    assert (dest / "model" / "link.py").read_text(encoding="utf-8") == "class Model: ...\n"


def test_extract_into_existing_empty_dir(tmp_path: Path) -> None:
    info = create_archive(make_package(tmp_path), tmp_path / "a.tar.gz")
    (tmp_path / "out").mkdir()
    extract_archive(info.path, tmp_path / "out")
    assert (tmp_path / "out" / "config.yaml").is_file()


def test_extract_refuses_non_empty_dest(tmp_path: Path) -> None:
    info = create_archive(make_package(tmp_path), tmp_path / "a.tar.gz")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x", encoding="utf-8")
    with pytest.raises(ArchiveError, match="not an empty directory"):
        extract_archive(info.path, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep"]


Member = tuple[str, bytes | None, bytes, str]


def build_tar(path: Path, members: list[Member]) -> Path:
    """members: (name, tar type, file content, link target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, content, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind if kind is not None else tarfile.REGTYPE
            info.linkname = link
            if info.type == tarfile.REGTYPE:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return path


SAFE: Member = ("config.yaml", None, b"model_name: m\n", "")

MALICIOUS: dict[str, list[Member]] = {
    "absolute": [SAFE, ("/tmp/plinth-evil.txt", None, b"x", "")],
    "dotdot": [SAFE, ("model/../../evil.txt", None, b"x", "")],
    "dotdot-leading": [SAFE, ("../evil.txt", None, b"x", "")],
    "symlink-absolute": [SAFE, ("evil", tarfile.SYMTYPE, b"", "/etc")],
    "symlink-out": [SAFE, ("model/evil", tarfile.SYMTYPE, b"", "../../outside")],
    "symlink-chain": [
        SAFE,
        ("here", tarfile.SYMTYPE, b"", "."),
        # Lexically inside ("here/.." is "."), but "here" is itself a link: resolves outside.
        ("up", tarfile.SYMTYPE, b"", "here/.."),
    ],
    "hardlink-out": [SAFE, ("evil", tarfile.LNKTYPE, b"", "../outside.txt")],
    "hardlink-absolute": [SAFE, ("evil", tarfile.LNKTYPE, b"", "/etc/passwd")],
    "device": [SAFE, ("dev", tarfile.CHRTYPE, b"", "")],
    "fifo": [SAFE, ("pipe", tarfile.FIFOTYPE, b"", "")],
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_tar_slip_variants_refused(tmp_path: Path, case: str) -> None:
    archive = build_tar(tmp_path / "evil.tar.gz", MALICIOUS[case])
    (tmp_path / "outside.txt").write_text("secret", encoding="utf-8")
    dest = tmp_path / "work" / "dest"
    with pytest.raises(ArchiveError) as caught:
        extract_archive(archive, dest)
    offending = MALICIOUS[case][-1][0]
    assert offending in str(caught.value)
    assert caught.value.member == offending
    assert not dest.exists()
    # No staging directory or stray file is left next to the destination or above it.
    assert list((tmp_path / "work").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz", "outside.txt", "work"]
    assert not Path("/tmp/plinth-evil.txt").exists()


def test_corrupt_archive(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tarball at all")
    with pytest.raises(ArchiveError, match="cannot read archive"):
        extract_archive(bad, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_hardlink_to_missing_member_is_an_archive_error(tmp_path: Path) -> None:
    archive = build_tar(tmp_path / "a.tar.gz", [SAFE, ("alias", tarfile.LNKTYPE, b"", "ghost")])
    with pytest.raises(ArchiveError):
        extract_archive(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]
