"""Compile once per machine: where the compiled decode path keeps what compiling produced, and when it is reused.

`torch.compile` has on-disk caches of its own (inductor's FX-graph cache and AOTAutograd's, on by default) that
make a later process's first call cheap when they are warm. Measured on the shapes model (`default` mode, one
prompt x 4, 2 CPU cores): the first call took 53 s cold, 5.3 s in a fresh process with those caches warm, and
29 s with torch's portable cache artifacts (`torch.compiler.save_cache_artifacts`) loaded into an empty cache
(the CPU's C++ kernels are built again). So gotr1 keeps those caches themselves, not artifacts: one folder
per (model fingerprint, dtype, device, torch and Python version, mode) under `GOTR1_CACHE` (default
`~/.cache/gotr1`), `compile/<mode>-<key>/`, that inductor writes while gotr1 compiles. Its `entry.json` lists
every file with its SHA-256 and the shapes compiled so far; a folder whose files do not match (damaged, or
left by a compile that never finished) is removed with a warning and built again, never used. Another
model, dtype, device, torch or Python version is another folder. `gotr1 compile` warms one ahead of time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

CACHE_ENV = "GOTR1_CACHE"
WARM_PROMPT = "a red circle to the left of a blue square"  # what warming up samples (`gotr1 compile`, serve)
_SKIPPED = {"locks"}  # inductor's lock files: not part of what it compiled


def cache_root() -> Path:
    """`GOTR1_CACHE`, else `~/.cache/gotr1`: where gotr1 keeps what outlives a process."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "gotr1"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CompileCache:
    """One model's compiled decode steps on disk (see the module's docstring)."""

    def __init__(self, key: dict[str, str], root: Path | None = None):
        self.key = dict(key)
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        self.folder = (root or cache_root()) / "compile" / f"{self.key['mode']}-{digest}"
        self.inductor = self.folder / "inductor"
        self.shapes: dict[str, float] = {}  # each compiled shape's signature: seconds its first compile took
        self._check()

    @classmethod
    def for_bundle(cls, bundle, mode: str, root: Path | None = None) -> CompileCache:
        parameter = next(bundle.model.parameters())
        device = parameter.device
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
        key = {
            "model_fingerprint": bundle.fingerprint(),
            "dtype": str(parameter.dtype).removeprefix("torch."),
            "device": f"{device.type}:{where}",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "mode": mode,
        }
        return cls(key, root)

    # -- what is on disk ------------------------------------------------------------------------
    def _files(self) -> dict[str, str]:
        if not self.inductor.is_dir():
            return {}
        return {
            path.relative_to(self.inductor).as_posix(): _sha256(path)
            for path in sorted(self.inductor.rglob("*"))
            if path.is_file() and path.relative_to(self.inductor).parts[0] not in _SKIPPED
        }

    def _damage(self) -> str | None:
        """Why the folder cannot be used as it is (None: it can)."""
        record_path = self.folder / "entry.json"
        if not record_path.is_file():
            return "files without a record (a compile that did not finish)" if self._files() else None
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            listed, shapes = dict(record["files"]), dict(record["shapes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"its record is unreadable ({exc})"
        if record.get("key") != self.key:
            return "its record is for another model or setup"
        for name, digest in listed.items():
            path = self.inductor / name
            if not path.is_file():
                return f"{name} is missing"
            if _sha256(path) != digest:
                return f"{name} is not what was compiled"
        self.shapes = {str(k): float(v) for k, v in shapes.items()}
        return None

    def _check(self) -> None:
        why = self._damage()
        if why is not None:
            log.warning("compile cache %s: %s; building it again", self.folder, why)
            shutil.rmtree(self.folder, ignore_errors=True)
            self.shapes = {}

    def _write_record(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"key": self.key, "shapes": self.shapes, "files": self._files()}
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".entry-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)
        os.replace(tmp, self.folder / "entry.json")

    # -- compiling into it ----------------------------------------------------------------------
    @contextlib.contextmanager
    def compiling(self) -> Iterator[None]:
        """Inductor's caches in this folder while the block runs (it reads the variable at each use)."""
        previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        self.inductor.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(self.inductor)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous

    def record(self, signature: str, seconds: float) -> None:
        """A shape compiled (or loaded): keep it in the record with the files as they now are."""
        self.shapes.setdefault(signature, round(seconds, 3))
        self._write_record()


def call_signature(name: str, args: tuple[Any, ...]) -> str:
    """What a compiled step's specialisation depends on: its name, each tensor's shape, dtype and device, the
    workspace's shape and every other argument's value."""
    parts = [name]
    for arg in args:
        if isinstance(arg, torch.Tensor):
            parts.append(f"T{tuple(arg.shape)}:{str(arg.dtype).removeprefix('torch.')}:{arg.device.type}")
        elif hasattr(arg, "signature"):
            parts.append(f"W{arg.signature}")
        else:
            parts.append(repr(arg))
    return "|".join(parts)
