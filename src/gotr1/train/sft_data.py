"""SFT data on disk: JSON lines of {"prompt", "chain", "image"} with image files beside them.

"image" is a path relative to the jsonl file; its pixels are tokenised by the model's own VQ (resized
to the model's image size). A record may carry "image_tokens" instead (a pre-tokenised cache). Every
problem is one line naming the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from ..chain import BEGIN_OF_IMAGE
from ..model.image_tokens import encode_codes
from ..model.teacher_forcing import SFTRecord
from ..model.tokens import encode_prompt


class DataError(ValueError):
    pass


def load_sft_records(path: str | Path, bundle, *, batch_size: int = 32) -> list[SFTRecord]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    rows, images, image_rows = [], [], []
    n_tokens, size = bundle.num_image_tokens, bundle.image_size
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file (JSON lines, UTF-8)") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object")
        for key in ("prompt", "chain"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataError(f"{where}: missing or empty {key!r}")
        if "image_tokens" in row:
            tokens = row["image_tokens"]
            if not (isinstance(tokens, list) and len(tokens) == n_tokens and all(isinstance(t, int) for t in tokens)):
                raise DataError(f"{where}: image_tokens must be {n_tokens} integers for this model")
        elif isinstance(row.get("image"), str):
            image_path = path.parent / row["image"]
            if not image_path.is_file():
                raise DataError(f"{where}: image {row['image']!r} not found")
            try:
                image = Image.open(image_path).convert("RGB")
            except OSError as exc:
                raise DataError(f"{where}: cannot read image {row['image']!r} ({exc})") from None
            images.append(image.resize((size, size), Image.BICUBIC) if image.size != (size, size) else image)
            image_rows.append(len(rows))
        else:
            raise DataError(f"{where}: needs 'image' (a file path) or 'image_tokens'")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no records")
    vq = bundle.model.model.vqmodel
    codes = encode_codes(vq, images, batch_size=batch_size) if images else None
    for i, r in enumerate(image_rows):
        rows[r]["image_tokens"] = codes[i].tolist()
    tok, ids = bundle.tokenizer, bundle.ids
    return [
        SFTRecord(
            encode_prompt(tok, row["prompt"], ids.bos),
            tok.encode(row["chain"].removesuffix(BEGIN_OF_IMAGE), add_special_tokens=False) + [ids.begin_of_image],
            row["image_tokens"],
        )
        for row in rows
    ]
