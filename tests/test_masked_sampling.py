"""Masked image sampling (`TwoPhaseSampler.generate(source_image_ids=..., edit_masks=...)`): only the masked
tokens are sampled, every other one is the source's, on every decode path; a run of forced tokens costs one
forward; batched edits get what each gets alone."""

import numpy as np
import pytest
import torch

from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler

PROMPTS = ["a red circle", "two small blue squares above a large yellow star, and a green heart"]


@pytest.fixture(scope="module")
def sources(tiny_bundle):
    """Each prompt's first sample: its chain and image tokens (the sources the edits start from)."""
    return TwoPhaseSampler(tiny_bundle).generate(PROMPTS, SamplingConfig(max_reasoning_tokens=40), seed=11)


def _box_mask(bundle, rows: slice, cols: slice) -> torch.Tensor:
    side = int(bundle.num_image_tokens**0.5)
    mask = torch.zeros(side, side, dtype=torch.bool)
    mask[rows, cols] = True
    return mask.reshape(-1)


def _edit(bundle, sources, masks, *, compile="none", G=1, seeds=None, **call):
    sampler = TwoPhaseSampler(bundle)
    return sampler.generate(
        [s.prompt for s in sources],
        SamplingConfig(max_reasoning_tokens=40, compile=compile),
        chains=[[s.chain] * G for s in sources],
        num_generations=G,
        seeds=seeds or [5 + i for i in range(len(sources))],
        source_image_ids=[s.image_ids[0] for s in sources],
        edit_masks=masks,
        **call,
    )


@pytest.mark.parametrize("path", ["none", "static", "default", "reduce-overhead", "frozen"])
def test_every_token_outside_the_mask_is_the_sources_on_every_decode_path(tiny_bundle, sources, path):
    masks = [_box_mask(tiny_bundle, slice(1, 3), slice(0, 2)), _box_mask(tiny_bundle, slice(0, 4), slice(2, 4))]
    edits = _edit(tiny_bundle, sources, masks, compile=path, G=2)
    for edit in edits:
        source, mask = sources[edit.prompt_index].image_ids[0], masks[edit.prompt_index]
        assert torch.equal(edit.image_ids[0][~mask], source[~mask])
        assert torch.equal(edit.edit_mask, mask)
        assert bool((edit.image_logprobs[0][~mask] == 0).all())  # forced: not sampled
        assert bool((edit.image_logprobs[0][mask] < 0).all())  # sampled: a real log-prob
    if path != "none":  # the compiled paths feed forced tokens one step at a time; the eager one in runs
        eager = _edit(tiny_bundle, sources, masks, G=2)
        assert all(torch.equal(a.image_ids, b.image_ids) for a, b in zip(eager, edits))


def test_a_mask_of_every_cell_is_plain_teacher_forced_sampling(tiny_bundle, sources):
    everything = [torch.ones(tiny_bundle.num_image_tokens, dtype=torch.bool)] * len(sources)
    edits = _edit(tiny_bundle, sources, everything)
    plain = TwoPhaseSampler(tiny_bundle).generate(
        PROMPTS, SamplingConfig(max_reasoning_tokens=40), chains=[[s.chain] for s in sources], seeds=[5, 6]
    )
    for a, b in zip(edits, plain):
        assert torch.equal(a.image_ids, b.image_ids) and torch.equal(a.image_logprobs, b.image_logprobs)


@pytest.fixture
def forwards(monkeypatch):
    """How many forwards of the language model the sampler runs (each call appends one)."""
    calls = []
    forward = TwoPhaseSampler._forward
    monkeypatch.setattr(TwoPhaseSampler, "_forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    return calls


def _count(forwards, run) -> int:
    before = len(forwards)
    run()
    return len(forwards) - before


def test_an_empty_mask_returns_the_source_with_no_image_forward(tiny_bundle, sources, forwards):
    n = tiny_bundle.num_image_tokens
    nothing = [torch.zeros(n, dtype=torch.bool)]
    edits = []
    empty = _count(forwards, lambda: edits.extend(_edit(tiny_bundle, sources[:1], nothing)))
    assert torch.equal(edits[0].image_ids, sources[0].image_ids)
    assert edits[0].images[0].tobytes() == sources[0].images[0].tobytes()
    # the whole image costs one forward per token but the last on top of what the empty edit ran (its prefills)
    everything = [torch.ones(n, dtype=torch.bool)]
    assert _count(forwards, lambda: _edit(tiny_bundle, sources[:1], everything)) - empty == n - 1


def test_an_edits_cost_grows_with_the_tokens_it_samples(tiny_bundle, sources, forwards):
    """One forward per sampled token and one per run of forced tokens, never one per image token."""
    nothing = [torch.zeros(tiny_bundle.num_image_tokens, dtype=torch.bool)]
    prefills = _count(forwards, lambda: _edit(tiny_bundle, sources[:1], nothing))
    mask = _box_mask(tiny_bundle, slice(2, 3), slice(1, 3))  # 2 cells
    image_forwards = _count(forwards, lambda: _edit(tiny_bundle, sources[:1], [mask])) - prefills
    assert image_forwards <= 2 * int(mask.sum()) + 1 < tiny_bundle.num_image_tokens - 1


def test_batched_edits_give_each_edit_what_it_gets_alone(tiny_bundle, sources):
    masks = [_box_mask(tiny_bundle, slice(0, 2), slice(0, 2)), _box_mask(tiny_bundle, slice(2, 4), slice(1, 4))]
    together = _edit(tiny_bundle, sources, masks, G=2)
    alone = _edit(tiny_bundle, sources[:1], masks[:1], G=2) + _edit(tiny_bundle, sources[1:], masks[1:], G=2, seeds=[6])
    for a, b in zip(together, alone, strict=True):
        assert torch.equal(a.image_ids, b.image_ids)
        torch.testing.assert_close(a.image_logprobs, b.image_logprobs, rtol=1e-4, atol=1e-4)


def test_a_redrawn_edit_samples_every_token_and_keeps_only_the_sources_pixels_outside_the_mask(tiny_bundle, sources):
    """redraw: the tokens of a full re-render with the same seed; its decoding inside the mask, the source's
    outside; in one batch with a region edit, each gets what it gets alone."""
    masks = [_box_mask(tiny_bundle, slice(0, 2), slice(0, 2)), _box_mask(tiny_bundle, slice(2, 4), slice(1, 4))]
    mixed = _edit(tiny_bundle, sources, masks, redraw=[True, False])
    full = TwoPhaseSampler(tiny_bundle).generate(
        PROMPTS[:1], SamplingConfig(max_reasoning_tokens=40), chains=[[sources[0].chain]], seeds=[5]
    )[0]
    redrawn, region = mixed
    assert redrawn.redrawn and not region.redrawn
    assert torch.equal(redrawn.image_ids, full.image_ids) and torch.equal(redrawn.edit_mask, masks[0])
    assert bool((redrawn.image_logprobs < 0).all())  # every token sampled
    side, pixels = int(len(masks[0]) ** 0.5), full.images[0].size[0] // int(len(masks[0]) ** 0.5)
    inside = masks[0].reshape(side, side).repeat_interleave(pixels, 0).repeat_interleave(pixels, 1).numpy()
    new, drawn, source = (np.asarray(image) for image in (redrawn.images[0], full.images[0], sources[0].images[0]))
    assert (new[inside] == drawn[inside]).all() and (new[~inside] == source[~inside]).all()
    assert (new != source).any()
    alone = _edit(tiny_bundle, sources[1:], masks[1:], seeds=[6])[0]
    assert torch.equal(region.image_ids, alone.image_ids)


def test_an_edit_with_sampled_chains(tiny_bundle, sources):
    """A mask edit keeps the source's tokens outside the mask whatever chain the model writes."""
    mask = _box_mask(tiny_bundle, slice(0, 2), slice(0, 4))
    edits = TwoPhaseSampler(tiny_bundle).generate(
        PROMPTS[:1],
        SamplingConfig(max_reasoning_tokens=40),
        num_generations=3,
        seed=2,
        source_image_ids=[sources[0].image_ids[0]],
        edit_masks=[mask],
    )
    assert all(torch.equal(e.image_ids[0][~mask], sources[0].image_ids[0][~mask]) for e in edits)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda n: dict(edit_masks=None), "needs both"),
        (lambda n: dict(edit_masks=[torch.ones(3, dtype=torch.bool)]), "3 mask cells"),
        (lambda n: dict(edit_masks=[torch.ones(n, dtype=torch.long)]), "must be boolean"),
        (lambda n: dict(source_image_ids=[torch.full((n,), 10**6)]), "VQ codes from 0"),
        (lambda n: dict(edit_masks=[torch.ones(n, dtype=torch.bool)] * 2), "one source and one mask per prompt"),
        (lambda n: dict(redraw=[True, False]), "one flag per prompt"),
        (lambda n: dict(source_image_ids=None, edit_masks=None, redraw=True), "for an edit"),
    ],
)
def test_bad_edits_are_refused(tiny_bundle, sources, change, message):
    n = tiny_bundle.num_image_tokens
    call = dict(source_image_ids=[sources[0].image_ids[0]], edit_masks=[torch.ones(n, dtype=torch.bool)])
    with pytest.raises(ValueError, match=message):
        TwoPhaseSampler(tiny_bundle).generate(
            PROMPTS[:1], SamplingConfig(max_reasoning_tokens=10), **(call | change(n))
        )
