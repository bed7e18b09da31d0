"""`gotr1 edit`: a sample folder or an image, edited by a chain, a prompt or a mask; what it writes and how it
refuses what it cannot do (one line, before loading where the cause is known then)."""

import json

import pytest
import torch
from PIL import Image

from gotr1.chain import snap_chain
from gotr1.cli import main
from gotr1.model.edit_masks import plan_edit_mask
from gotr1.models import builtin_model

pytestmark = pytest.mark.skipif(builtin_model() is None, reason="no shipped model")

PROMPT = "a red circle to the left of a blue square"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "g"
    assert main(["generate", "--prompt", PROMPT, "--seed", "3", "--out", str(out)]) == 0
    return next(out.glob("0000_*")) / "sample_00"


def _moved_chain(sample, tmp_path, box="(700,100),(900,300)"):
    record = json.loads((sample / "chain.json").read_text())
    old = "({},{}),({},{})".format(*record["objects"][0]["box"])
    path = tmp_path / "new_chain.txt"
    path.write_text(record["chain"].replace(old, box))
    return path


def test_a_plan_edit_of_a_sample_folder_keeps_the_tokens_outside_the_mask(sample, tmp_path, caplog):
    out = tmp_path / "edit"
    assert main(["edit", str(sample), "--chain", str(_moved_chain(sample, tmp_path)), "--num-images", "2",
                 "--out", str(out)]) == 0  # fmt: skip
    assert {p.name for p in out.iterdir()} >= {"sample_00", "sample_01", "mask.png", "source.png", "edit.json"}
    record = json.loads((out / "edit.json").read_text())
    assert record["snapped"] == [{"typed": [700, 100, 900, 300], "drawn": [703, 94, 906, 297]}]
    assert [c["name"] for c in record["changes"]] == ["small red circle"] and not record["full_rerender"]
    assert "(700,100),(900,300) drawn as (703,94),(906,297)" in caplog.text
    source = torch.tensor(json.loads((sample / "chain.json").read_text())["image_tokens"][0])
    for folder in ("sample_00", "sample_01"):
        edited = json.loads((out / folder / "chain.json").read_text())
        tokens, chain = torch.tensor(edited["image_tokens"][0]), edited["chain"]
        assert "(703,94),(906,297)" in chain
        changed = (tokens != source).nonzero().flatten().tolist()
        assert changed and len(changed) <= record["mask_cells"]  # only inside the mask


def test_a_redrawn_edit_keeps_the_sources_pixels_outside_the_mask_and_can_be_edited_again(sample, tmp_path):
    out = tmp_path / "edit"
    chain = _moved_chain(sample, tmp_path)
    assert main(["edit", str(sample), "--chain", str(chain), "--redraw", "--out", str(out)]) == 0
    record = json.loads((out / "edit.json").read_text())
    edited = json.loads((out / "sample_00" / "chain.json").read_text())
    assert record["redraw"] and edited["redrawn"] and "image_tokens" not in edited  # no grid decodes to it
    source_chain = snap_chain(json.loads((sample / "chain.json").read_text())["chain"], 64)[0]
    mask = plan_edit_mask(source_chain, edited["chain"], 8, record["edit_margin"]).reshape(8, 8)
    source, new = (Image.open(p).convert("RGB") for p in (sample / "image_0.png", out / "sample_00" / "image_0.png"))
    pixels = [(x, y) for x in range(64) for y in range(64)]
    changed = {(y // 8, x // 8) for x, y in pixels if source.getpixel((x, y)) != new.getpixel((x, y))}
    assert changed and all(mask[cell] for cell in changed)  # pixels change inside the mask's cells only
    # a redrawn sample is edited again from its pixels, encoded by the VQ (its record keeps no tokens)
    again = tmp_path / "again"
    assert main(["edit", str(out / "sample_00"), "--prompt", "a green circle to the left of a blue square",
                 "--out", str(again)]) == 0  # fmt: skip
    assert (again / "sample_00" / "image_0.png").is_file()


def test_a_mask_edit_of_an_image_file(sample, tmp_path):
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))  # the left half may change
    mask.save(tmp_path / "mask.png")
    out = tmp_path / "edit"
    args = ["edit", str(sample / "image_0.png"), "--mask", str(tmp_path / "mask.png"), "--source-prompt", PROMPT]
    assert main([*args, "--out", str(out)]) == 0
    record = json.loads((out / "edit.json").read_text())
    assert record["mask_cells"] == 32 and record["chain"] is None


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "say what to edit"),
        (["--chain", "CHAIN", "--mask", "MASK"], "give one of --chain and --mask"),
        (["--chain", "missing.txt"], "--chain missing.txt: no such file"),
        (["--mask", "NOT_AN_IMAGE"], "not an image"),
    ],
)
def test_bad_edit_arguments_are_one_line_errors_before_loading(sample, tmp_path, capsys, extra, message):
    (tmp_path / "chain.txt").write_text("a chain")
    (tmp_path / "not_an_image").write_text("text")
    Image.new("RGBA", (64, 64)).save(tmp_path / "mask.png")
    subs = {"CHAIN": str(tmp_path / "chain.txt"), "MASK": str(tmp_path / "mask.png"),
            "NOT_AN_IMAGE": str(tmp_path / "not_an_image"), "missing.txt": "missing.txt"}  # fmt: skip
    code = main(["edit", str(sample), *[subs.get(a, a) for a in extra], "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


def test_what_an_edit_cannot_do_is_said(sample, tmp_path, capsys, caplog):
    image = str(sample / "image_0.png")
    # an image with no prompt; an image with a plan edit but no source chain
    assert main(["edit", image, "--prompt", "two red circles", "--out", str(tmp_path / "a")]) == 2
    assert "needs --source-chain" in capsys.readouterr().err
    opaque = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    opaque.save(tmp_path / "opaque.png")
    assert main(["edit", str(sample), "--mask", str(tmp_path / "opaque.png"), "--out", str(tmp_path / "b")]) == 2
    assert "nothing to edit" in capsys.readouterr().err
    opaque.resize((32, 32)).save(tmp_path / "small.png")
    assert main(["edit", str(sample), "--mask", str(tmp_path / "small.png"), "--out", str(tmp_path / "c")]) == 2
    assert "the mask is 32x32, the image 64x64" in capsys.readouterr().err
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert main(["edit", str(sample), "--mask", str(tmp_path / "clear.png"), "--out", str(tmp_path / "d")]) == 0
    assert "full re-render" in caplog.text
    record = json.loads((sample / "chain.json").read_text())
    del record["image_tokens"]
    old = tmp_path / "old_sample"
    old.mkdir()
    (old / "chain.json").write_text(json.dumps(record))
    assert main(["edit", str(old), "--prompt", "two red circles", "--out", str(tmp_path / "e")]) == 2
    assert "keeps no image tokens" in capsys.readouterr().err
