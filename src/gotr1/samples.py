"""One writer for a sample's files, whatever folder layout holds them (`gotr1 generate`'s sample folders, an
eval run's official layout).

A sample is written as: its chain as plain text (where the layout has one), the plan drawn over each image,
its record (the chain, its objects and format problems, each image's tokens, and what the caller adds), and its
images last, every
file atomically. An image on disk therefore always has its plan and record beside it: a killed run leaves
whole samples and nothing half-written.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .outputs import write_bytes_atomic, write_json_atomic


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_fingerprint(data: bytes) -> dict[str, Any]:
    """What a sample record says about its official image, so a later run can tell it is intact."""
    return {"image_sha256": hashlib.sha256(data).hexdigest(), "image_bytes": len(data)}


@dataclass
class SampleFiles:
    """Where one sample's files go."""

    record: Path  # the sample's record (JSON)
    images: Sequence[Path]  # one per image of the sample
    plans: Sequence[Path]  # the plan drawn over each image
    text: Path | None = None  # the chain as plain text
    extra: dict[str, Any] = field(default_factory=dict)  # added to the record (the layout's own keys)
    fingerprint: bool = False  # the record holds the (one) image's sha256 and size: a later run can check it


def write_sample(gen, files: SampleFiles) -> list[bytes]:
    """Write one `Generation`'s files; returns each image's PNG bytes (what an official layout fingerprints)."""
    from .layout import plan_overlay

    if len(files.images) != len(gen.images) or len(files.plans) != len(gen.images):
        raise ValueError(f"{files.record}: {len(gen.images)} image(s), paths for {len(files.images)}")
    if files.fingerprint and len(gen.images) != 1:
        raise ValueError(f"{files.record}: a fingerprinted record describes one image, got {len(gen.images)}")
    pngs = [png_bytes(image) for image in gen.images]
    if files.text is not None:
        write_bytes_atomic(files.text, (gen.chain + "\n").encode())
    for image, plan in zip(gen.images, files.plans):
        write_bytes_atomic(plan, png_bytes(plan_overlay(image, gen.objects)))
    record = gen.record() | files.extra | (image_fingerprint(pngs[0]) if files.fingerprint else {})
    if gen.redrawn:  # its pixels outside the edit are the source's: no token grid decodes to this image
        record["redrawn"] = True
    else:  # each image's VQ codes, row-major: an edit of this sample starts from them, with no re-encoding loss
        record["image_tokens"] = gen.image_ids.tolist()
    write_json_atomic(files.record, record)
    for png, path in zip(pngs, files.images):
        write_bytes_atomic(path, png)  # last: an image on disk has its plan and record
    return pngs


def sample_folder_files(gen, folder: Path) -> SampleFiles:
    """`gotr1 generate`'s layout: chain.txt, chain.json, image_<i>.png and plan_<i>.png in one folder."""
    images = [folder / f"image_{i}.png" for i in range(len(gen.images))]
    plans = [folder / f"plan_{i}.png" for i in range(len(gen.images))]
    listed = [{"image": image.name, "plan": plan.name} for image, plan in zip(images, plans)]
    return SampleFiles(folder / "chain.json", images, plans, text=folder / "chain.txt", extra={"images": listed})


def write_sample_folder(gen, folder: Path) -> list[Path]:
    """One sample in `gotr1 generate`'s layout; returns the files written."""
    files = sample_folder_files(gen, folder)
    write_sample(gen, files)
    return [files.text, files.record, *[p for pair in zip(files.images, files.plans) for p in pair]]
