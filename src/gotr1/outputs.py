"""What an existing output folder means, decided the same way by every command that writes one.

A command's folder is new or empty (use it), holds this command's earlier output (refuse, naming
``--overwrite`` — and ``--resume`` where a run can continue — or replace it when asked), or holds anything
else (refuse always: gotr1 never deletes files it did not write). The check runs before a model loads, and
also proves the folder writable, so a typo or a read-only disk costs seconds, not a sampling run.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


class OutputConflict(ValueError):
    """An output folder that cannot be used as asked: one line naming it and the way out."""


def prepare_output(
    path: str | Path,
    *,
    owned: Sequence[str],
    what: str,
    overwrite: bool,
    resume_flag: str | None = None,
    remove: bool = True,
) -> Path:
    """Make ``path`` ready for a new output of ``what``.

    owned: name patterns (fnmatch) of what this command writes inside ``path``; with ``overwrite`` those are
    removed, and only when nothing else is there (by this process only when ``remove``: under several
    processes every one checks, one clears).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputConflict(f"{path}: exists and is not a folder")
    if path.is_dir():
        entries = list(path.iterdir())
        if entries:
            ours = [p for p in entries if any(fnmatch.fnmatchcase(p.name, pattern) for pattern in owned)]
            foreign = sorted(p.name for p in entries if p not in ours)
            if foreign:
                raise OutputConflict(
                    f"{path}: holds files that are not {what} output ({', '.join(foreign[:3])}"
                    f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new folder"
                )
            if not overwrite:
                way = f"pass {resume_flag} to continue it, " if resume_flag else ""
                raise OutputConflict(
                    f"{path}: holds an earlier {what}; {way}pass --overwrite to replace it, or choose another folder"
                )
            for entry in ours if remove else []:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    check_writable(path)
    return path


def new_run_folder(parent: str | Path) -> Path:
    """A fresh, timestamped folder under ``parent`` (for commands whose default output must never meet an
    earlier run)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = Path(parent) / stamp, 1
    while candidate.exists():
        n += 1
        candidate = Path(parent) / f"{stamp}-{n}"
    return candidate


def check_writable(path: Path) -> None:
    """Create the folder and prove a file can be written in it (a one-line OutputConflict otherwise)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputConflict(f"{path}: cannot write there ({exc.strerror or exc})") from None
