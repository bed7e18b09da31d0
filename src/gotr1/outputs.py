"""One output policy for every command that writes a folder: gotr1 never deletes a file it did not write.

- **Validation first.** A command calls :func:`prepare_output` before it loads a model, and the call touches
  nothing that exists: it only decides where this run writes. A typo in ``--model`` or a bad recipe found
  later still leaves every earlier file as it was.
- **A manifest of gotr1's own files.** Each output folder holds ``.gotr1-output.json``: the command that
  wrote it and the list of files it wrote. Everything else in the folder is the user's and is never
  replaced, moved or deleted. A folder without a manifest is not gotr1's output.
- **Replacements beside, swapped in.** ``--overwrite`` writes the new output into a staging folder beside
  the old one (``.<name>.gotr1-new``); only when the command succeeds are the old run's files (by its
  manifest) swapped for the new ones. A failure or a kill leaves the earlier output whole.
- **Never an input.** An output folder that is, or contains, one of the command's inputs (``gotr1 convert
  s s``) is refused.

A killed run leaves its manifest marked incomplete, with the files that were there before it started; the
next command counts as the killed run's only the new files whose top-level name is one this command
writes (``owned``), so a file the user added after the kill stays theirs.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST = ".gotr1-output.json"
STAGING_SUFFIX = ".gotr1-new"
_TRASH = ".gotr1-replaced"
_SWAP = ".gotr1-swap.json"


class OutputConflict(ValueError):
    """An output folder that cannot be used as asked: one line naming it and the way out."""


def _files(root: Path) -> set[str]:
    """Every file (and symlink) under root, relative, POSIX-style; gotr1's bookkeeping left out."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not (base == root and d == _TRASH)]
        for name in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            relative = (base / name).relative_to(root).as_posix()
            if not _is_bookkeeping(relative):
                found.add(relative)
    return found


def _is_bookkeeping(relative: str) -> bool:
    """gotr1's own files about a folder (its manifest, a swap journal, their temporary copies, the probe of
    `check_writable`), never counted as output, the user's or gotr1's."""
    return relative in (MANIFEST, _SWAP) or relative.startswith((f".{MANIFEST}.", f".{_SWAP}.", ".write-test-"))


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, or None where there is none; an unreadable one is an error naming it."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
            raise ValueError("no file list")
    except (ValueError, UnicodeDecodeError) as exc:
        raise OutputConflict(f"{path}: unreadable ({exc}); gotr1 cannot tell its files from yours there") from None
    return manifest


def owned_files(folder: Path, owned: Sequence[str] = ()) -> set[str]:
    """The files in ``folder`` that gotr1 wrote: its manifest's list, and, after a killed run, the new files
    whose top-level name matches ``owned``."""
    manifest = read_manifest(folder)
    if manifest is None:
        return set()
    present = _files(folder)
    ours = set(manifest["files"]) & present
    if not manifest.get("complete", True):
        before = set(manifest.get("foreign", []))
        for relative in present - ours - before:
            if any(fnmatch.fnmatchcase(relative.split("/")[0], pattern) for pattern in owned):
                ours.add(relative)
    return ours


def _write_manifest(folder: Path, what: str, files: Iterable[str], *, foreign: Iterable[str] = (), done: bool) -> None:
    body = {"written_by": what, "complete": done, "files": sorted(files)}
    if not done:
        body["foreign"] = sorted(foreign)
    write_json_atomic(folder / MANIFEST, body, indent=1)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: a killed run leaves no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: object, *, indent: int = 2) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=indent) + "\n").encode())


def _is_within(inner: Path, outer: Path) -> bool:
    try:
        inner.relative_to(outer)
        return True
    except ValueError:
        return False


def check_not_an_input(path: Path, inputs: Iterable[str | Path | None]) -> None:
    """Refuse an output folder that is, or contains, one of the command's inputs."""
    out = path.resolve()
    for item in inputs:
        if item is None or not Path(item).exists():
            continue
        source = Path(item).resolve()
        if source == out or _is_within(source, out):
            relation = "is" if source == out else "contains"
            raise OutputConflict(f"{path}: {relation} this command's input {item}; choose another folder")


class Output:
    """Where one run of a command writes (``work``) and how it lands in the folder the user named (``path``).

    ``work`` is ``path`` itself for a new folder or a resumed run, or a staging folder beside it when the
    run replaces an earlier one. Use it as a context manager: on success the run is committed (the manifest
    completed, a replacement swapped in); on failure nothing earlier is touched, and a folder or staging
    area the run created but left empty is removed."""

    def __init__(self, path: Path, work: Path, what: str, owned: Sequence[str], *, writer: bool, created: bool):
        self.path, self.work, self.what, self.owned = path, work, what, tuple(owned)
        self.writer, self.created = writer, created
        self.replacing = work != path
        self._ours = set() if self.replacing else owned_files(path, owned)
        self._foreign = set() if self.replacing else _files(path) - self._ours
        if writer:
            _write_manifest(work, what, self._ours, foreign=self._foreign, done=False)

    def __enter__(self) -> Output:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.abandon()

    def commit(self) -> None:
        """Record what this run wrote; a replacement swaps the earlier run's files for the new ones."""
        if not self.writer:
            return
        new = _files(self.work) - self._foreign
        if not self.replacing:
            _write_manifest(self.path, self.what, new, done=True)
            return
        old = owned_files(self.path, self.owned)
        clash = sorted(p for p in new if p not in old and os.path.lexists(self.path / p))
        if clash:
            raise OutputConflict(
                f"{self.path}: the new output would replace {clash[0]}, which gotr1 did not write; move it away "
                f"and run again (the new output is kept in {self.work})"
            )
        journal = {"written_by": self.what, "staging": self.work.name, "old": sorted(old), "new": sorted(new)}
        write_json_atomic(self.path / _SWAP, journal, indent=1)
        finish_swap(self.path)
        log.info(
            "replaced the earlier %s in %s (%d of its files; nothing else touched)", self.what, self.path, len(old)
        )

    def abandon(self) -> None:
        """After a failure: record exactly what this run wrote (partial output is kept, and stays gotr1's);
        remove a folder or staging area the run created and left empty."""
        if not self.writer:
            return
        written = _files(self.work) - self._foreign
        if written:
            _write_manifest(self.work, self.what, written, done=True)
            if self.replacing:
                log.warning("the unfinished replacement is kept in %s; %s is unchanged", self.work, self.path)
            return
        (self.work / MANIFEST).unlink(missing_ok=True)
        if self.replacing or self.created:
            _prune_empty_folders(self.work)


def finish_swap(path: Path) -> None:
    """Swap a replacement in by its journal (``.gotr1-swap.json``, written before the first move): the earlier
    run's files move aside, the new ones in, the manifest is rewritten, then the journal and the earlier files
    go. Called again on a folder whose swap a kill interrupted, it completes it: an earlier file whose new
    counterpart has already moved in is left alone, every other step is repeated or skipped as done."""
    journal_path = path / _SWAP
    if not journal_path.is_file():
        shutil.rmtree(path / _TRASH, ignore_errors=True)  # a swap killed after its last step
        return
    journal = json.loads(journal_path.read_text(encoding="utf-8"))
    staging, trash, new = path.parent / journal["staging"], path / _TRASH, set(journal["new"])
    for relative in journal["old"]:
        if relative not in new or os.path.lexists(staging / relative):
            _move(path / relative, trash / relative)
    for relative in sorted(new):
        _move(staging / relative, path / relative)
    _write_manifest(path, journal["written_by"], new, done=True)
    journal_path.unlink()
    shutil.rmtree(trash, ignore_errors=True)
    _remove_empty_dirs(path, {str(Path(p).parent) for p in journal["old"]})
    _discard_staging(staging)


def _move(source: Path, target: Path) -> None:
    if not os.path.lexists(source):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


def _prune_empty_folders(root: Path) -> None:
    """Remove every empty folder under ``root``, deepest first, then ``root`` if it is empty (for folders this
    run created: a new output folder or a staging folder)."""
    for dirpath, _, _ in sorted(os.walk(root), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _remove_empty_dirs(root: Path, starts: Iterable[str]) -> None:
    """Remove the folders at ``starts`` (relative to root) and their parents, below root, while they are
    empty (the folders an earlier output's files left)."""
    for start in sorted(starts, key=len, reverse=True):
        folder = (root / start).resolve()
        while folder != root.resolve() and _is_within(folder, root.resolve()) and folder.is_dir():
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent


def staging_folder(path: Path) -> Path:
    return path.with_name(f".{path.name}{STAGING_SUFFIX}")


def prepare_output(
    path: str | Path,
    *,
    owned: Sequence[str],
    what: str,
    overwrite: bool,
    resume: bool = False,
    resume_flag: str | None = None,
    inputs: Iterable[str | Path | None] = (),
    writer: bool = True,
    continue_staging: Callable[[Path], bool] | None = None,
) -> Output:
    """Decide where a new run of ``what`` writes, touching nothing that exists.

    owned: name patterns (fnmatch) of the top-level entries this command writes (used only to recognise a
    killed run's files). resume: continue the gotr1 output already in ``path``. overwrite: replace it (in a
    staging folder, swapped in on success). inputs: paths the command reads; ``path`` may not be or contain
    one. writer: False on every process but one when several share the run (they only check).
    continue_staging: says whether an unfinished replacement left in the staging folder is the same run as
    this one (then it continues there instead of starting again).
    """
    path = Path(path)
    check_not_an_input(path, inputs)
    if writer and path.is_dir():
        finish_swap(path)  # a replacement a kill interrupted while it was being swapped in
    if path.exists() and not path.is_dir():
        raise OutputConflict(f"{path}: exists and is not a folder")
    created = not path.exists()
    if path.is_dir() and _files(path):
        manifest = read_manifest(path)
        if manifest is None and resume:  # a run written before manifests: continued, its files left as the user's
            return Output(path, path, what, owned, writer=writer, created=False)
        if manifest is None:
            names = sorted(p.name for p in path.iterdir())
            raise OutputConflict(
                f"{path}: holds files that are not {what} output ({', '.join(names[:3])}"
                f"{', ...' if len(names) > 3 else ''}); choose an empty or new folder"
            )
        if manifest.get("written_by") != what:
            raise OutputConflict(
                f"{path}: holds the output of {manifest.get('written_by')!r}, not {what}; choose another folder"
            )
        if owned_files(path, owned) and not resume:
            if not overwrite:
                way = f"pass {resume_flag} to continue it, " if resume_flag else ""
                raise OutputConflict(
                    f"{path}: holds an earlier {what}; {way}pass --overwrite to replace it, or choose another folder"
                )
            staging = staging_folder(path)
            check_writable(path)
            if writer and not (staging.is_dir() and continue_staging is not None and continue_staging(staging)):
                _clear_staging(staging)
            if writer:
                check_writable(staging)
            return Output(path, staging, what, owned, writer=writer, created=False)
    if writer:
        check_writable(path)
    return Output(path, path, what, owned, writer=writer, created=created)


def _clear_staging(staging: Path) -> None:
    """A staging folder left by an unfinished replacement holds gotr1's files: start it afresh."""
    if staging.is_dir():
        if read_manifest(staging) is None and _files(staging):
            raise OutputConflict(f"{staging}: holds files gotr1 did not write; move them away")
        log.info("starting again the unfinished replacement in %s", staging)
        _discard_staging(staging)


def _discard_staging(staging: Path) -> None:
    """Remove a staging folder's own files (by its manifest: after a kill, every new file in this private
    folder is the run's), then its empty folders; anything else stays, and is reported."""
    if not staging.is_dir():
        return
    for relative in owned_files(staging, ("*",)):
        (staging / relative).unlink(missing_ok=True)
    (staging / MANIFEST).unlink(missing_ok=True)
    _prune_empty_folders(staging)
    if staging.exists():
        raise OutputConflict(f"{staging}: holds files gotr1 did not write; move them away")


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
