"""Prompt sources for GRPO: deterministic per-epoch shuffles, prompt files and directories."""

import pytest

from gotr1.train.prompts import read_prompt_files, shuffled_source


def test_every_epoch_visits_each_prompt_once_in_a_fresh_order():
    items = [f"p{i}" for i in range(10)]
    source = shuffled_source(items, 5)
    epoch0 = source(0) + source(1)
    epoch1 = source(2) + source(3)
    assert sorted(epoch0) == sorted(items) == sorted(epoch1)
    assert epoch0 != epoch1
    assert source(1) == shuffled_source(items, 5)(1)  # a step's prompts depend on the step alone
    straddling = shuffled_source(items, 4)  # 4 does not divide 10: steps straddle epochs
    seen = [p for step in range(5) for p in straddling(step)]
    assert sorted(seen[:10]) == sorted(items) and sorted(seen[10:20]) == sorted(items)
    with pytest.raises(ValueError, match="no prompts"):
        shuffled_source([], 2)


def test_read_prompt_files_from_a_file_or_a_directory(tmp_path):
    (tmp_path / "a_train.txt").write_text("a red apple\n\n  a blue car  \n")
    (tmp_path / "b_train.txt").write_text("a blue car\na green bottle")
    (tmp_path / "notes.md").write_text("not prompts")
    assert read_prompt_files(tmp_path / "a_train.txt") == ["a red apple", "a blue car"]
    assert read_prompt_files(tmp_path) == ["a red apple", "a blue car", "a green bottle"]
    with pytest.raises(ValueError, match="no such file"):
        read_prompt_files(tmp_path / "missing.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .txt prompt files"):
        read_prompt_files(empty)


def test_prompt_files_lose_a_byte_order_mark_and_name_their_problem(tmp_path):
    """A BOM (Windows editors write one) is not part of the first prompt; an empty or non-UTF-8 file says so."""
    (tmp_path / "bom.txt").write_bytes("\ufeffa red apple\na blue car\n".encode())
    assert read_prompt_files(tmp_path / "bom.txt") == ["a red apple", "a blue car"]
    (tmp_path / "blank.txt").write_text("\n   \n")
    with pytest.raises(ValueError, match=r"blank\.txt: the file is empty \(no prompts\)"):
        read_prompt_files(tmp_path / "blank.txt")
    (tmp_path / "latin1.txt").write_bytes("une pomme rouge \xe9t\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt: not a text file \(one prompt per line, UTF-8\)"):
        read_prompt_files(tmp_path / "latin1.txt")


def test_the_shipped_t2i_compbench_training_prompts():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "data" / "t2i_compbench"
    prompts = read_prompt_files(root)
    assert len(prompts) > 4000  # six 700-prompt train splits, a few duplicates across them
    assert (root / "LICENSE").is_file()
    val = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "t2i_compbench" / "color_val.txt"
    if val.is_file():  # never train on the evaluation split
        assert not set(prompts) & {line.strip() for line in val.read_text().splitlines() if line.strip()}
