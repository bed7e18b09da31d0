"""The two-phase GoT-R1 sampler: a reasoning chain with `lm_head`, then image tokens with CFG.

Phase 1 (text): every prompt is prefilled once and its KV cache is shared by its G samples. All
B x G rows then decode together; a row that has written `<begin_of_image>` keeps stepping with a
masked pad so the batch stays rectangular, and positions come from the attention mask, so a row's
numbers are those it would get alone.

Phase 2 (image): the conditional rows continue from the text cache (no re-prefill of prompt and
chain). The unconditional rows, as in the published inference code, are the same sequence with
every token but the first and the final `<begin_of_image>` replaced by pad; they are prefilled once,
left-padded to the conditional cache's length, and joined to it, so each image step is one forward
over 2 x rows. `logits = uncond + w * (cond - uncond)`; CFG is off for w <= 1, as in the release.

Randomness is per row (see `sampling`), so a sample depends only on (prompt, seed, sample index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..chain import BEGIN_OF_IMAGE, ParsedChain, PlannedObject, parse_chain
from ..config import check_choice, check_range
from .attention import decoding_attention
from .compat import cache_kwargs
from .compile_cache import CompileCache
from .kv_cache import PreallocatedCache, shared_prefix_cache
from .loading import JanusBundle
from .sampling import row_keys, select_tokens
from .static_decode import COMPILE_MODES, SegmentShape, StaticDecoder, TokenRule, bucketed, length_bucket
from .teacher_forcing import unconditional_ids
from .tokens import encode_prompt

_TEXT_STREAM, _IMAGE_STREAM = 1, 2
# Bounds of the settings (the CLI's types mirror them): seeds are int64 keys; a CFG weight or temperature
# beyond 100 does nothing but overflow the logits.
MAX_SEED = 2**63 - 1
MAX_CFG_WEIGHT = 100.0
MAX_TEMPERATURE = 100.0
# The compiled text phase asks whether any chain is still open every this many steps (a host sync).
_CHECK_EVERY = 16


SAMPLE_SETTINGS = (
    "cfg_weight",
    "text_temperature",
    "image_temperature",
    "text_top_k",
    "text_top_p",
    "image_top_k",
    "image_top_p",
    "max_reasoning_tokens",
)


@dataclass
class SamplingConfig:
    """How to sample: temperatures, CFG, top-k / top-p, the reasoning cap and the decode path. One type for every
    caller (generate, eval, GRPO and its held-out evaluation, the server); how many samples, their seeds and
    what to keep are arguments of the call (`TwoPhaseSampler.generate`). Defaults follow the GoT-R1 release
    (temperature 1, the checkpoint's CFG weight or 5, 600 reasoning tokens)."""

    cfg_weight: float | None = None  # classifier-free guidance (<= 1: off); None: the checkpoint's own, else 5
    text_temperature: float = 1.0  # of the reasoning chain; 0 = greedy
    image_temperature: float = 1.0  # of the image tokens; 0 = greedy
    text_top_k: int | None = None  # keep the k likeliest chain tokens (None: all)
    text_top_p: float | None = None  # keep the chain tokens of this nucleus (None: all)
    image_top_k: int | None = None
    image_top_p: float | None = None
    max_reasoning_tokens: int = 600  # cap on a chain; <begin_of_image> is appended when reached
    # Decode path: "none" = transformers' forward over a growing cache (eager); "static" = fixed-shape
    # steps, not compiled; "default" / "reduce-overhead" = those steps under torch.compile (`static_decode`);
    # "frozen" = torch.compile with the weights as constants (inference only).
    compile: str = "none"

    def __post_init__(self):
        """Every value checked against its meaning when the settings are made (a recipe's error names the field)."""
        check_choice("compile", self.compile, COMPILE_MODES)
        for name in ("text_temperature", "image_temperature"):
            check_range(name, getattr(self, name), low=0, high=MAX_TEMPERATURE)
        check_range("cfg_weight", self.cfg_weight, low=0, high=MAX_CFG_WEIGHT)
        for name in ("text_top_k", "image_top_k"):
            check_range(name, getattr(self, name), low=1)
        for name in ("text_top_p", "image_top_p"):
            check_range(name, getattr(self, name), low=0, high=1, low_open=True)
        check_range("max_reasoning_tokens", self.max_reasoning_tokens, low=0)

    def sample_settings(self) -> dict:
        """The settings a sample depends on besides its prompt, seed and index (what its records keep)."""
        return {key: getattr(self, key) for key in SAMPLE_SETTINGS}

    def for_model(self, bundle) -> SamplingConfig:
        """These settings with every default that depends on the model made concrete: the one place the
        checkpoint's preferred CFG weight is applied."""
        if self.cfg_weight is not None:
            return self
        return replace(self, cfg_weight=bundle.preferred_cfg_weight())


@dataclass
class _Request(SamplingConfig):
    """One `generate` call's settings: how to sample, and the shape of the call (the sampler's internals)."""

    num_generations: int = 1
    images_per_chain: int = 1
    decode_images: bool = True
    decode_batch_size: int = 8
    show_progress: bool = False
    record_logits: bool = False
    # An edit (`generate`'s source_image_ids / edit_masks) per image row: the source's codes and where to sample.
    forced_ids: torch.Tensor | None = None  # [rows * images_per_chain, N]
    free: torch.Tensor | None = None  # [rows * images_per_chain, N] bool: True = sample, False = the source's
    edited: torch.Tensor | None = None  # [rows * images_per_chain, N] bool: the cells whose pixels the edit draws
    #   (= free, or for a redrawn row, where every token is sampled, its edit mask)
    redrawn: torch.Tensor | None = None  # [rows * images_per_chain] bool


@dataclass
class Generation:
    """One reasoning chain and the image(s) drawn from it, with what GRPO needs to score and train."""

    prompt: str
    prompt_index: int
    sample_index: int
    seed: int
    prompt_ids: torch.Tensor  # [Lp], starts with BOS
    text_ids: torch.Tensor  # [Lt], the chain's tokens ending with <begin_of_image>
    text_logprobs: torch.Tensor  # [Lt], log-prob of each token under the distribution it was drawn from
    #   (for teacher-forced chains: under the model at the text temperature)
    chain: str  # decoded chain text, without <begin_of_image>
    parsed: ParsedChain
    hit_token_cap: bool  # <begin_of_image> was appended because the chain reached max_reasoning_tokens
    image_ids: torch.Tensor  # [P, N] VQ codes
    image_logprobs: torch.Tensor  # [P, N], under the CFG-combined, tempered distribution
    images: list[Image.Image] = field(default_factory=list)
    text_logits: torch.Tensor | None = None  # [Lt, V] when record_logits
    image_logits: torch.Tensor | None = None  # [P, N, K] CFG-combined, when record_logits
    # An edit's mask, [N] bool: the token cells it re-drew; the image keeps the source's pixels elsewhere, and its
    # tokens there (log-prob 0: forced) unless `redrawn`. None for a whole image sampled.
    edit_mask: torch.Tensor | None = None
    redrawn: bool = False  # every image token was sampled from the chain; only the source's pixels were kept

    @property
    def objects(self) -> list[PlannedObject]:
        return self.parsed.objects

    def record(self) -> dict:
        """The sample as JSON-ready data: prompt, seed, chain, its plain text, objects with boxes on the
        0..1000 grid, format problems and whether the token cap closed the chain."""
        return {
            "prompt": self.prompt,
            "seed": self.seed,
            "sample_index": self.sample_index,
            "chain": self.chain,
            "text": self.parsed.text,
            "objects": [
                {"name": o.name, "box": None if o.box is None else [o.box.x1, o.box.y1, o.box.x2, o.box.y2]}
                for o in self.objects
            ],
            "problems": [
                {"kind": str(getattr(p.kind, "value", p.kind)), "message": p.message} for p in self.parsed.problems
            ],
            "hit_token_cap": self.hit_token_cap,
            "num_text_tokens": int(len(self.text_ids)),
        }


@dataclass
class _Rows:
    """State of the conditional rows once their chains are complete.

    The cache either holds each row whole, or (`shared` set) each row's own part while `shared` holds
    what every `group_size` consecutive rows have in common (their prompt, or a whole fixed chain) once.
    """

    cache: PreallocatedCache | None
    mask: torch.Tensor  # [N, T] 1 where a real token sits in the cache
    next_pos: torch.Tensor  # [N] position of the first image token
    boi_hidden: torch.Tensor  # [N, D] hidden state at <begin_of_image>
    first_token: torch.Tensor  # [N] the sequence's first token (kept in the unconditional row)
    text_ids: list[torch.Tensor]
    text_logprobs: list[torch.Tensor]
    text_logits: list[torch.Tensor] | None
    hit_cap: list[bool]
    shared: PreallocatedCache | None = None  # [N / group_size, heads, S, head_dim]
    shared_mask: torch.Tensor | None = None  # [N / group_size, S]
    group_size: int = 1


def _left_pad(
    seqs: Sequence[Sequence[int]], pad: int, device, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs) if width is None else width
    ids = torch.full((len(seqs), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(seqs), width), dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s) :] = torch.as_tensor(list(s), dtype=torch.long, device=device)
            mask[i, width - len(s) :] = 1
    return ids, mask


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def tokens_to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """[-1, 1] floats [B, H, W, C] -> uint8, truncating like the published inference code."""
    return np.clip((pixels.float().cpu().numpy() + 1) / 2 * 255, 0, 255).astype(np.uint8)


class TwoPhaseSampler:
    """Batched GoT-R1 sampling over prompts x G with a shared prompt prefix and one KV cache."""

    def __init__(self, bundle: JanusBundle):
        self.bundle = bundle
        self.model = bundle.model
        self.ids = bundle.ids
        self.lm = self.model.model.language_model
        self.embed = self.lm.get_input_embeddings()
        # With SDPA a ready [rows, 1, 1, keys] boolean mask skips transformers' per-step mask building
        # (a single query attends to every unmasked key, so no causal part is needed).
        self._ready_decode_masks = self.lm.config._attn_implementation == "sdpa"
        self._static: StaticDecoder | None = None

    def release_workspaces(self) -> None:
        """Free the compiled path's KV-cache workspaces (kept between calls otherwise), e.g. before training."""
        if self._static is not None:
            self._static.release()

    def static_decoder(self, mode: str) -> StaticDecoder:
        """The compiled decode path for `mode`, kept (with its compilations and workspaces) between calls."""
        if self._static is None or self._static.mode != mode:
            cache = None if mode == "static" else CompileCache.for_bundle(self.bundle, mode)
            self._static = StaticDecoder(self.model, mode, cache)
        return self._static

    # -- public -------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        sampling: SamplingConfig | None = None,
        *,
        num_generations: int = 1,
        images_per_chain: int = 1,
        seed: int = 0,
        seeds: Sequence[int] | None = None,
        chains: Sequence[Sequence[str]] | None = None,
        sample_indices: Sequence[int] | None = None,
        decode_images: bool = True,
        decode_batch_size: int = 8,
        show_progress: bool = False,
        record_logits: bool = False,
        source_image_ids: Sequence[torch.Tensor] | None = None,
        edit_masks: Sequence[torch.Tensor] | None = None,
        redraw: Sequence[bool] | bool = False,
        chains_only: bool = False,
    ) -> list[Generation]:
        """Sample `num_generations` chains (each with `images_per_chain` images) per prompt, as `sampling` says.

        seeds: one per prompt (default `seed + prompt index`); a sample depends only on its prompt, its seed
            and its index within the group.
        chains: optional fixed reasoning chains, `chains[i][g]` for prompt i, sample g; the text phase
            is then teacher-forced (edit a plan and re-render it) and only images are sampled.
        sample_indices: with one generation per prompt, the index each row has in its own group: rows of
            different requests (a server's batch) then share one call and keep the random draws of
            sample k of seed s (float rounding, which batch shape can change, may rarely flip a token).
        decode_images: False keeps the VQ codes only; decode_batch_size: images per VQ decode.
        record_logits: keep every step's logits (parity checks; memory heavy; eager path only).
        source_image_ids, edit_masks: an edit of each prompt's image (see `edit_rows`): `[N]` VQ codes and an
            `[N]` bool mask (True: sample this token); every other token is the source's, teacher-forced, so
            it comes back unchanged and the sampled ones see it. A run of forced tokens is fed in one forward.
            The images keep the source's decoded pixels outside the mask.
        redraw: per prompt (or for all): sample every image token of that edit from its chain, a full image's
            cost, and keep only the source's pixels outside the mask: for a VQ whose tokens carry the scene's
            colours across the grid (the shapes world's), where kept tokens would decode the edit in the old ones.
        chains_only: write the reasoning chains and stop (no image tokens, no images).
        Returns generations ordered prompt-major: [p0 s0, p0 s1, ..., p1 s0, ...].
        """
        prompts = list(prompts)
        sampling = self._request(
            sampling,
            len(prompts),
            num_generations=num_generations,
            images_per_chain=images_per_chain,
            seed=seed,
            decode_images=decode_images,
            decode_batch_size=decode_batch_size,
            show_progress=show_progress,
            record_logits=record_logits,
            source_image_ids=source_image_ids,
            edit_masks=edit_masks,
            redraw=redraw,
        )
        if not prompts:
            return []
        seeds = list(seeds) if seeds is not None else [seed + i for i in range(len(prompts))]
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
        wide = [s for s in seeds if not -(2**63) <= s <= MAX_SEED]
        if wide:
            raise ValueError(f"seeds must fit in 64 bits (at most {MAX_SEED}), got {wide[0]}")
        tok = self.bundle.tokenizer
        prompt_ids = [encode_prompt(tok, p, self.ids.bos) for p in prompts]
        G = sampling.num_generations
        row_seed = torch.tensor(seeds, dtype=torch.int64).repeat_interleave(G)
        if sample_indices is None:
            row_sample = torch.arange(G, dtype=torch.int64).repeat(len(prompts))
        elif G != 1 or len(sample_indices) != len(prompts):
            raise ValueError("sample_indices needs num_generations 1 and one index per prompt")
        else:
            row_sample = torch.tensor(list(sample_indices), dtype=torch.int64)
        static = None if sampling.compile == "none" else self.static_decoder(sampling.compile)
        with decoding_attention(self.lm, self.bundle.device):
            if chains is not None:
                rows = self._force_chains(prompt_ids, chains, sampling)
            elif static is None:
                rows = self._sample_chains(prompt_ids, sampling, row_seed, row_sample)
            else:
                rows = self._sample_chains_static(prompt_ids, sampling, row_seed, row_sample, static)
            if chains_only:  # the plans alone (e.g. candidates for a prompt edit): no image phase
                image_ids = image_lps = torch.zeros((len(rows.text_ids) * images_per_chain, 0))
                image_logits = None
            elif static is None:
                image_ids, image_lps, image_logits = self._sample_images(rows, sampling, row_seed, row_sample)
            else:
                image_ids, image_lps = self._sample_images_static(rows, sampling, row_seed, row_sample, static)
                image_logits = None
        images = self._decode(image_ids, sampling) if sampling.decode_images and not chains_only else []
        if images and sampling.forced_ids is not None:
            images = self._keep_source_pixels(images, sampling, G * images_per_chain)
        images = images or []
        return [
            self._generation(
                r, prompts, seeds, prompt_ids, rows, row_sample, (image_ids, image_lps, image_logits, images), sampling
            )
            for r in range(len(prompts) * G)
        ]

    def _request(
        self, sampling, n_prompts: int, *, seed: int, source_image_ids, edit_masks, redraw, **call
    ) -> _Request:
        """`generate`'s settings checked and joined with the call's shape (and edit) into one `_Request`."""
        settings = (sampling or SamplingConfig()).for_model(self.bundle)
        G, P = call["num_generations"], call["images_per_chain"]
        if G < 1 or P < 1 or call["decode_batch_size"] < 1:
            raise ValueError("num_generations, images_per_chain and decode_batch_size must be >= 1")
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be from 0 to {MAX_SEED} (an int64 key)")
        if settings.compile != "none" and call["record_logits"]:
            raise ValueError("record_logits needs compile 'none' (the compiled path keeps no logits)")
        if (source_image_ids is None) != (edit_masks is None):
            raise ValueError("an edit needs both source_image_ids and edit_masks")
        if edit_masks is not None and call["record_logits"]:
            raise ValueError("record_logits is not kept for edits (forced runs compute no logits)")
        redraw = [redraw] * n_prompts if isinstance(redraw, bool) else list(redraw)
        if len(redraw) != n_prompts or (any(redraw) and edit_masks is None):
            raise ValueError(f"redraw: one flag per prompt ({n_prompts}), for an edit (source_image_ids, edit_masks)")
        edit = {}
        if edit_masks is not None:
            forced_ids, edited = self.edit_rows(source_image_ids, edit_masks, n_prompts, G * P)
            redrawn = torch.tensor(redraw, device=edited.device).repeat_interleave(G * P)
            free = edited | redrawn[:, None]
            edit = {"forced_ids": forced_ids, "free": free, "edited": edited, "redrawn": redrawn}
        return _Request(**vars(settings), **call, **edit)

    def _generation(self, r: int, prompts, seeds, prompt_ids, rows: _Rows, row_sample, drawn, sampling) -> Generation:
        """Row r's sample: its chain decoded and parsed, with its images (drawn: ids, log-probs, logits, images)."""
        image_ids, image_lps, image_logits, images = drawn
        G, P = sampling.num_generations, sampling.images_per_chain
        b = r // G
        text_ids = rows.text_ids[r]
        body = text_ids[:-1] if len(text_ids) and int(text_ids[-1]) == self.ids.begin_of_image else text_ids
        chain = self.bundle.tokenizer.decode(body.tolist(), skip_special_tokens=False)
        part = slice(r * P, (r + 1) * P)
        return Generation(
            prompt=prompts[b],
            prompt_index=b,
            sample_index=int(row_sample[r]),
            seed=int(seeds[b]),
            prompt_ids=torch.tensor(prompt_ids[b]),
            text_ids=text_ids,
            text_logprobs=rows.text_logprobs[r],
            chain=chain,
            parsed=parse_chain(chain + BEGIN_OF_IMAGE),
            hit_token_cap=rows.hit_cap[r],
            image_ids=image_ids[part],
            image_logprobs=image_lps[part],
            images=images[part],
            text_logits=rows.text_logits[r] if rows.text_logits is not None else None,
            image_logits=image_logits[part] if image_logits is not None else None,
            edit_mask=sampling.edited[r * P].cpu() if sampling.edited is not None else None,
            redrawn=sampling.redrawn is not None and bool(sampling.redrawn[r * P]),
        )

    def edit_rows(self, source_image_ids, edit_masks, n_prompts: int, repeats: int):
        """Each prompt's source codes and mask, checked, as one row per image sampled ([rows, N] each)."""
        n_tokens, codebook = self.bundle.num_image_tokens, self.model.config.vq_config.num_embeddings
        if len(source_image_ids) != n_prompts or len(edit_masks) != n_prompts:
            raise ValueError(f"an edit needs one source and one mask per prompt ({n_prompts})")
        sources = [torch.as_tensor(ids, dtype=torch.long).reshape(-1) for ids in source_image_ids]
        masks = [torch.as_tensor(mask).reshape(-1) for mask in edit_masks]
        for i, (ids, mask) in enumerate(zip(sources, masks)):
            if ids.numel() != n_tokens or mask.numel() != n_tokens:
                raise ValueError(
                    f"edit {i}: {ids.numel()} source tokens and {mask.numel()} mask cells, the model draws {n_tokens}"
                )
            if mask.dtype != torch.bool:
                raise ValueError(f"edit {i}: the mask must be boolean (True: sample the token), got {mask.dtype}")
            if int(ids.min()) < 0 or int(ids.max()) >= codebook:
                raise ValueError(f"edit {i}: source tokens must be VQ codes from 0 to {codebook - 1}")
        device = self.bundle.device
        forced = torch.stack(sources).repeat_interleave(repeats, 0).to(device)
        free = torch.stack(masks).repeat_interleave(repeats, 0).to(device)
        return forced, free

    # -- phase 1 --------------------------------------------------------------------------------
    def _forward(self, embeds, mask, positions, cache, *, all_positions: bool = False) -> torch.Tensor:
        out = self.lm(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **cache_kwargs(self.lm, cache),
        )
        return out.last_hidden_state if all_positions else out.last_hidden_state[:, -1]

    def _prefill(self, seqs: Sequence[Sequence[int]], extra_steps: int, *, all_positions: bool = False):
        """Left-padded prefill into a cache sized for `extra_steps` more tokens."""
        device = self.bundle.device
        ids, mask = _left_pad(seqs, self.ids.pad, device)
        cache = PreallocatedCache(self.model.config.text_config.num_hidden_layers, ids.shape[1] + extra_steps)
        hidden = self._forward(self.embed(ids), mask, _positions(mask), cache, all_positions=all_positions)
        return cache, mask, hidden

    def _sample_chains(self, prompt_ids, sampling: _Request, row_seed, row_sample) -> _Rows:
        device = self.bundle.device
        G, boi, pad = sampling.num_generations, self.ids.begin_of_image, self.ids.pad
        cache, mask, hidden = self._prefill(
            prompt_ids, sampling.max_reasoning_tokens + 1 + self.bundle.num_image_tokens
        )
        logits = self.model.lm_head(hidden).repeat_interleave(G, 0)  # one prefill, shared by G samples
        cache.batch_repeat_interleave(G)
        width = mask.shape[1]
        n = mask.shape[0] * G
        # Mask columns for every possible step, filled as rows write (a view is passed each step).
        mask = torch.cat([mask.repeat_interleave(G, 0), mask.new_zeros((n, sampling.max_reasoning_tokens + 1))], dim=1)
        step_mask = mask.bool()[:, None, None, :] if self._ready_decode_masks else mask
        next_pos = torch.tensor([len(p) for p in prompt_ids], device=device).repeat_interleave(G)
        keys = row_keys(row_seed, row_sample, _TEXT_STREAM).to(device)
        boi_hidden = torch.zeros((n, hidden.shape[-1]), dtype=hidden.dtype, device=device)
        pending = torch.ones(n, dtype=torch.bool, device=device)
        written, tokens, logprobs, logit_steps = [], [], [], []
        step = 0
        while bool(pending.any()):
            rows = pending.nonzero().squeeze(1)
            if step < sampling.max_reasoning_tokens:
                picked, lp = select_tokens(
                    logits,
                    temperature=sampling.text_temperature,
                    keys=keys[rows],
                    step=step,
                    top_k=sampling.text_top_k,
                    top_p=sampling.text_top_p,
                )
            else:  # cap reached: close the chain as the release does
                picked = torch.full((len(rows),), boi, dtype=torch.long, device=device)
                temp = sampling.text_temperature if sampling.text_temperature > 0 else 1.0
                lp = torch.log_softmax(logits.float() / temp, -1)[:, boi]
            step_tokens = torch.full((n,), pad, dtype=torch.long, device=device)
            step_tokens[rows] = picked
            step_lp = torch.zeros(n, dtype=torch.float32, device=device)
            step_lp[rows] = lp
            written.append(pending.clone())
            tokens.append(step_tokens)
            logprobs.append(step_lp)
            if sampling.record_logits:
                full = torch.full((n, logits.shape[-1]), float("nan"), device=device)
                full[rows] = logits.float()
                logit_steps.append(full)
            mask[:, width + step] = pending
            if step_mask is not mask:
                step_mask[:, 0, 0, width + step] = pending
            hidden = self._forward(
                self.embed(step_tokens[:, None]), step_mask[..., : width + step + 1], next_pos[:, None], cache
            )
            next_pos = next_pos + pending.long()
            closed = pending & (step_tokens == boi)
            boi_hidden[closed] = hidden[closed]
            pending = pending & ~closed
            if bool(pending.any()):
                logits = self.model.lm_head(hidden[pending])
            step += 1
        mask = mask[:, : width + step]
        return self._chain_rows(
            prompt_ids, sampling, (written, tokens, logprobs, logit_steps), cache, mask, next_pos, boi_hidden
        )

    def _chain_rows(
        self, prompt_ids, sampling: _Request, steps, cache, mask, next_pos, boi_hidden, shared=(None, None)
    ) -> _Rows:
        """Per-step records (which rows wrote, tokens, log-probs, logits) -> each row's chain."""
        written, tokens, logprobs, logit_steps = steps
        n = len(written[0])
        written_t = torch.stack(written, 1).cpu()
        tokens_t = torch.stack(tokens, 1).cpu()
        lps_t = torch.stack(logprobs, 1).cpu()
        text_ids = [tokens_t[r][written_t[r]] for r in range(n)]
        text_lps = [lps_t[r][written_t[r]] for r in range(n)]
        text_logits = None
        if sampling.record_logits:
            stacked = torch.stack(logit_steps, 1).cpu()
            text_logits = [stacked[r][written_t[r]] for r in range(n)]
        G = sampling.num_generations
        firsts = torch.tensor([p[0] for p in prompt_ids], device=self.bundle.device).repeat_interleave(G)
        hit_cap = [len(t) > sampling.max_reasoning_tokens for t in text_ids]
        rows = _Rows(cache, mask, next_pos, boi_hidden, firsts, text_ids, text_lps, text_logits, hit_cap)
        if shared[0] is not None:
            rows.shared, rows.shared_mask, rows.group_size = shared[0], shared[1], G
        return rows

    def _sample_chains_static(self, prompt_ids, sampling: _Request, row_seed, row_sample, decoder) -> _Rows:
        """`_sample_chains` as fixed-shape steps of `decoder` (see `static_decode`): every row steps every
        time, and the loop asks whether a chain is still open only every `_CHECK_EVERY` steps."""
        device, G = self.bundle.device, sampling.num_generations
        steps = sampling.max_reasoning_tokens + 1
        prompts, prompt_mask, hidden = self._prefill(prompt_ids, 0)
        n = len(prompt_ids) * G
        kv_dtype = prompts.layers[0]._keys.dtype  # under autocast: the projections' dtype, not the hidden state's
        # Each prompt's prefill is held once and read once per step by its G rows; the chains fill the step segment.
        shared = (SegmentShape(len(prompt_ids), G, 0, length_bucket(prompt_mask.shape[1])),)
        space = decoder.workspace("text", n, shared, bucketed(steps), kv_dtype, device)
        space.segments[0].load(prompts.layers, prompt_mask)
        space.step.mask.zero_()
        hidden = hidden.repeat_interleave(G, 0)
        next_pos = torch.tensor([len(p) for p in prompt_ids], device=device).repeat_interleave(G)
        keys = row_keys(row_seed, row_sample, _TEXT_STREAM).to(device)
        pending = torch.ones(n, dtype=torch.bool, device=device)
        boi_hidden = torch.zeros_like(hidden)
        rule = TokenRule(
            sampling.text_temperature, sampling.text_top_k, sampling.text_top_p, cap=sampling.max_reasoning_tokens
        )
        step_ids = torch.arange(steps, device=device)
        written, tokens, logprobs = [], [], []
        for step in range(steps):
            if step and step % _CHECK_EVERY == 0 and not bool(pending.any()):
                break
            written.append(pending)
            picked, lp, hidden, pending, next_pos, boi_hidden = decoder.call(
                "text", decoder.text_step, space, hidden, pending, next_pos, boi_hidden, keys,
                step_ids[step], space.column(step), rule, self.ids,
            )  # fmt: skip
            tokens.append(picked)
            logprobs.append(lp)
        filled = len(tokens)
        chains = PreallocatedCache.adopting(space.step.keys, space.step.values, filled)
        mask = space.step.mask[:, 0, :filled].long()
        records = (written, tokens, logprobs, [])
        return self._chain_rows(
            prompt_ids, sampling, records, chains, mask, next_pos, boi_hidden, shared=(prompts, prompt_mask)
        )

    def _force_chains(self, prompt_ids, chains, sampling: _Request) -> _Rows:
        """Teacher-force given chains: one prefill of prompt + chain + <begin_of_image> per sample, or per
        prompt when its G chains are all the same (one edited plan drawn G times).

        Their text log-probs are the model's (at the text temperature) for the given tokens.
        """
        G = sampling.num_generations
        if len(chains) != len(prompt_ids) or any(len(c) != G for c in chains):
            raise ValueError(f"chains must hold {G} chain(s) for each of the {len(prompt_ids)} prompts")
        same = G > 1 and all(len(set(group)) == 1 for group in chains)
        tok, boi = self.bundle.tokenizer, self.ids.begin_of_image
        seqs, text_ids = [], []
        for p, group in zip(prompt_ids, chains):
            for chain in group[:1] if same else group:
                body = tok.encode(chain.removesuffix(BEGIN_OF_IMAGE), add_special_tokens=False, verbose=False)
                text_ids.append(torch.tensor([*body, boi]))
                seqs.append([*p, *body, boi])
        # The compiled path copies the cache into its own workspace: no room for image tokens needed here.
        room = self.bundle.num_image_tokens if sampling.compile == "none" else 0
        cache, mask, hidden = self._prefill(seqs, room, all_positions=True)
        device, width = self.bundle.device, mask.shape[1]
        temperature = sampling.text_temperature if sampling.text_temperature > 0 else 1.0
        text_lps = []
        for r, ids in enumerate(text_ids):
            # Chain token j sits at column width - len + j and is predicted from the column before it.
            before = hidden[r, width - len(ids) - 1 : width - 1]
            logprobs = torch.log_softmax(self.model.lm_head(before).float() / temperature, -1)
            text_lps.append(logprobs.gather(-1, ids.to(device)[:, None]).squeeze(-1).cpu())
        next_pos = torch.tensor([len(s) for s in seqs], device=device)
        firsts = torch.tensor([s[0] for s in seqs], device=device)
        if not same:  # whole rows; a prompt's G rows still share one unconditional prefix (group_size)
            rows = _Rows(cache, mask, next_pos, hidden[:, -1], firsts, text_ids, text_lps, None, [False] * len(seqs))
            rows.group_size = G
            return rows
        n, repeat = len(seqs) * G, lambda items: [x for x in items for _ in range(G)]
        rows = _Rows(
            cache, mask, next_pos.repeat_interleave(G), hidden[:, -1].repeat_interleave(G, 0),
            firsts.repeat_interleave(G), repeat(text_ids), repeat(text_lps), None, [False] * n,
        )  # fmt: skip
        if sampling.compile == "none":  # the eager path reads whole rows
            cache.batch_repeat_interleave(G)
            rows.mask = mask.repeat_interleave(G, 0)
        else:  # the compiled path reads each prompt's sequence once for its G rows
            rows.cache, rows.mask = None, mask.new_zeros((n, 0))
            rows.shared, rows.shared_mask, rows.group_size = cache, mask, G
        return rows

    # -- phase 2 --------------------------------------------------------------------------------
    def _sample_images(self, rows: _Rows, sampling: _Request, row_seed, row_sample):
        device = self.bundle.device
        P = sampling.images_per_chain
        use_cfg = sampling.cfg_weight > 1
        cache, mask = rows.cache, rows.mask.repeat_interleave(P, 0)
        if P > 1:
            cache.batch_repeat_interleave(P)
        hidden = rows.boi_hidden.repeat_interleave(P, 0)
        positions = rows.next_pos.repeat_interleave(P, 0)
        m = hidden.shape[0]
        if use_cfg:
            ucache, umask, uhidden = self._unconditional_prefix(rows, P, self.bundle.num_image_tokens)
            cache = PreallocatedCache.join_batches(cache, ucache)
            mask = torch.cat([mask, umask])
            hidden = torch.cat([hidden, uhidden])
            positions = torch.cat([positions, positions])
        keys = self._image_keys(row_seed, row_sample, P)
        n_tokens = self.bundle.num_image_tokens
        image_ids = torch.zeros((m, n_tokens), dtype=torch.long, device=device)
        image_lps = torch.zeros((m, n_tokens), dtype=torch.float32, device=device)
        image_logits = [] if sampling.record_logits else None
        gen_head = self.model.model.generation_head
        # The whole mask is allocated once; each step passes a view one column longer.
        width = mask.shape[1]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], n_tokens))], dim=1)
        runs_mask = mask  # 2-D: a run of forced tokens gets transformers' causal mask over it
        if self._ready_decode_masks:
            mask = mask.bool()[:, None, None, :]
        forced, free = sampling.forced_ids, sampling.free
        bar = tqdm(total=n_tokens, desc="image tokens", disable=not sampling.show_progress, leave=False)
        k = 0
        while k < n_tokens:
            if free is not None and not bool(free[:, k].any()):  # every row takes the source's tokens here
                sampled_later = free[:, k:].any(0).nonzero()
                end = k + int(sampled_later[0]) if len(sampled_later) else n_tokens
                image_ids[:, k:end] = forced[:, k:end]
                bar.update(end - k)
                if end == n_tokens:
                    break
                embeds = self.model.prepare_embeddings_for_image_generation(forced[:, k:end])
                if use_cfg:
                    embeds = torch.cat([embeds, embeds])
                steps = positions[:, None] + torch.arange(k, end, device=device)[None]
                hidden = self._forward(embeds, runs_mask[:, : width + end], steps, cache)
                k = end
                continue
            logits = gen_head(hidden).float()
            if use_cfg:
                cond, uncond = logits[:m], logits[m:]
                logits = uncond + sampling.cfg_weight * (cond - uncond)
            if image_logits is not None:
                image_logits.append(logits.cpu())
            picked, lp = select_tokens(
                logits,
                temperature=sampling.image_temperature,
                keys=keys,
                step=k,
                top_k=sampling.image_top_k,
                top_p=sampling.image_top_p,
            )
            if free is not None:  # rows whose token here is the source's take it (log-prob 0: not sampled)
                picked = torch.where(free[:, k], picked, forced[:, k])
                lp = torch.where(free[:, k], lp, torch.zeros_like(lp))
            image_ids[:, k] = picked
            image_lps[:, k] = lp
            bar.update(1)
            if k == n_tokens - 1:
                break
            embeds = self.model.prepare_embeddings_for_image_generation(picked[:, None])
            if use_cfg:  # both halves read the same token
                embeds = torch.cat([embeds, embeds])
            hidden = self._forward(embeds, mask[..., : width + k + 1], (positions + k)[:, None], cache)
            k += 1
        bar.close()
        logits_out = torch.stack(image_logits, 1) if image_logits is not None else None
        return image_ids.cpu(), image_lps.cpu(), logits_out

    def _image_keys(self, row_seed, row_sample, P: int) -> torch.Tensor:
        image_index = torch.arange(P, dtype=torch.int64).repeat(len(row_seed))
        keys = row_keys(row_seed.repeat_interleave(P), row_sample.repeat_interleave(P), image_index, _IMAGE_STREAM)
        return keys.to(self.bundle.device)

    def _sample_images_static(self, rows: _Rows, sampling: _Request, row_seed, row_sample, decoder):
        """`_sample_images` as fixed-shape steps of `decoder`: conditional rows, then unconditional ones.

        Segments: what each group of conditional rows shares (`rows.shared`), each conditional row's own
        columns, the unconditional prefix [first, pad, ...] once per prompt, and the step segment (column 0:
        the unconditional rows' <begin_of_image>; then one column per image token)."""
        device = self.bundle.device
        P, use_cfg = sampling.images_per_chain, sampling.cfg_weight > 1
        hidden = rows.boi_hidden.repeat_interleave(P, 0)
        positions = rows.next_pos.repeat_interleave(P, 0)
        m, n_tokens, own = hidden.shape[0], self.bundle.num_image_tokens, rows.mask.shape[1]
        groups, size = m // (rows.group_size * P), rows.group_size * P
        kv_dtype = (rows.shared if rows.shared is not None else rows.cache).layers[0]._keys.dtype
        shapes, sources = [], []
        if rows.shared is not None:
            shapes.append(SegmentShape(groups, size, 0, length_bucket(rows.shared_mask.shape[1])))
            sources.append((rows.shared.layers, rows.shared_mask, 1))
        if own:  # a chain's P images: its rows are copied P times
            shapes.append(SegmentShape(m, 1, 0, length_bucket(own)))
            sources.append((rows.cache.layers, rows.mask, P))
        if use_cfg:
            width = int(rows.next_pos.max())
            unconditional = self._unconditional_steps(rows)
            shapes.append(SegmentShape(groups, size, m, length_bucket(width - 1)))
        steps = bucketed(n_tokens + use_cfg)
        space = decoder.workspace("image", 2 * m if use_cfg else m, tuple(shapes), steps, kv_dtype, device)
        for segment, (layers, mask, repeats) in zip(space.segments, sources):
            segment.load(layers, mask, repeats=repeats)
        space.step.mask.zero_()
        if use_cfg:
            self._load_unconditional(space.segments[len(sources)], space.step, unconditional, rows, P)
            hidden = torch.cat([hidden, unconditional[3].repeat_interleave(P, 0)])
            positions = torch.cat([positions, positions])
        keys = self._image_keys(row_seed, row_sample, P)
        rule = TokenRule(sampling.image_temperature, sampling.image_top_k, sampling.image_top_p)
        step_ids = torch.arange(n_tokens, device=device)
        codes, logprobs = [], []
        edit = sampling.forced_ids is not None
        for k in tqdm(range(n_tokens), desc="image tokens", disable=not sampling.show_progress, leave=False):
            forced = (sampling.forced_ids[:, k], sampling.free[:, k]) if edit else ()  # an edit: per step
            picked, lp, hidden = decoder.call(
                "image", decoder.image_step, space, hidden, positions, keys, step_ids[k], space.column(k + use_cfg),
                rule, sampling.cfg_weight, *forced,
            )  # fmt: skip
            codes.append(picked)
            logprobs.append(lp)
        return torch.stack(codes, 1).cpu(), torch.stack(logprobs, 1).cpu()

    @staticmethod
    def _load_unconditional(prefix, step, unconditional, rows: _Rows, P: int) -> None:
        """Put `_unconditional_steps`' prefixes and steps into segments: [first, pad, ...] once per group of rows
        (as long as its longest row reads) in `prefix`, each row's <begin_of_image> in column 0 of `step`."""
        prefixes, step_keys, step_values, _ = unconditional
        lengths, size = rows.next_pos, rows.group_size
        for group in range(len(lengths) // size):
            n = int(lengths[group * size : (group + 1) * size].max()) - 1  # positions 0 .. n-1 of the prefix
            shared = prefixes[int(rows.first_token[group * size])]
            for layer, keys, values in zip(shared.layers, prefix.keys, prefix.values):
                keys[group, :, :n] = layer.prefix_keys[0, :, :n]
                values[group, :, :n] = layer.prefix_values[0, :, :n]
        columns = torch.arange(prefix.mask.shape[-1], device=lengths.device)
        reads = (columns[None] < (lengths - 1)[:, None]).repeat_interleave(P, 0)
        prefix.mask.copy_(reads.view(prefix.mask.shape))
        m = len(lengths) * P
        for row_keys_, row_values, keys, values in zip(step_keys, step_values, step.keys, step.values):
            keys[m:, :, 0] = row_keys_.repeat_interleave(P, 0)
            values[m:, :, 0] = row_values.repeat_interleave(P, 0)
        step.mask[m:, :, 0] = True

    def _unconditional_steps(self, rows: _Rows):
        """The compiled path's unconditional rows (`unconditional_ids`: first token, pads, <begin_of_image>)
        without a per-row cache: one prefill of [first, pad, ...] per distinct first token, kept once, and one
        batched step of each row's <begin_of_image> at its own position, reading that prefix broadcast
        (`SharedPrefixLayer`). Returns (the prefix caches by first token, per layer the rows' step keys and
        values [R, heads, head_dim], the rows' hidden states at <begin_of_image> [R, D])."""
        device = self.bundle.device
        lengths = rows.next_pos  # [R] tokens in each row's unconditional sequence, <begin_of_image> included
        prefixes, parts = {}, []
        for first in rows.first_token.unique().tolist():
            members = (rows.first_token == first).nonzero().squeeze(1)
            n = int(lengths[members].max()) - 1
            row = unconditional_ids(first, n + 1, self.ids.pad, self.ids.begin_of_image)
            prefill, _, _ = self._prefill([row[:-1]], 0)
            cache = prefixes[first] = shared_prefix_cache(prefill, n)
            reads = torch.arange(n + 1, device=device)[None] < (lengths[members] - 1)[:, None]
            reads[:, n] = True  # the step itself
            boi = torch.full((len(members), 1), self.ids.begin_of_image, dtype=torch.long, device=device)
            out = self._forward(self.embed(boi), reads.long(), (lengths[members] - 1)[:, None], cache)
            steps = [(layer.step_keys[:, :, 0], layer.step_values[:, :, 0]) for layer in cache.layers]
            parts.append((members, out, steps))
        order = torch.cat([members for members, _, _ in parts]).argsort()  # back to row order
        hidden = torch.cat([out for _, out, _ in parts])[order]
        step_keys = [torch.cat([steps[i][0] for _, _, steps in parts])[order] for i in range(len(parts[0][2]))]
        step_values = [torch.cat([steps[i][1] for _, _, steps in parts])[order] for i in range(len(parts[0][2]))]
        return prefixes, step_keys, step_values, hidden

    def _unconditional_prefix(self, rows: _Rows, P: int, room: int):
        """Each row's unconditional sequence (`unconditional_ids`), left-padded to its conditional row's width.

        The rows differ only in length (and, across prompts, maybe in first token), and attention is
        causal: a row's first token and pads are a prefix of the longest such row. So one prefill of
        [first, pad, ...] per distinct first token serves every row, and one batched step adds each row's
        closing <begin_of_image> at its own position. (Prefilling every row whole cost as much as
        a prompt-and-chain prefill per sample.) `room`: cache columns to leave free after them. The eager
        path's: the compiled one keeps the prefix once (`_unconditional_steps`).
        """
        device = self.bundle.device
        width = rows.mask.shape[1]
        lengths = rows.next_pos  # [R] tokens in each row's unconditional sequence, <begin_of_image> included
        # Column c of row r holds prefix position c - (width - length_r); columns left of a row's start get
        # position 0's keys and values, finite and masked out.
        source = (torch.arange(width - 1, device=device)[None] - (width - lengths)[:, None]).clamp(min=0)
        capacity = width + room
        layers = self.model.config.text_config.num_hidden_layers
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        for first in rows.first_token.unique().tolist():
            members = (rows.first_token == first).nonzero().squeeze(1)
            longest = int(lengths[members].max())
            row = unconditional_ids(first, longest, self.ids.pad, self.ids.begin_of_image)
            prefix, _, _ = self._prefill([row[:-1]], 0)  # all but the closing <begin_of_image>
            where = source[members]
            for i, layer in enumerate(prefix.layers):
                for store, buffer in ((keys, layer._keys), (values, layer._values)):
                    if len(store) < layers:
                        store.append(buffer.new_zeros((len(lengths), buffer.shape[1], capacity, buffer.shape[3])))
                    store[i][members, :, : width - 1] = buffer[0][:, where].transpose(0, 1)
        cache = PreallocatedCache.adopting(keys, values, width - 1)
        mask = (torch.arange(width, device=device)[None] >= (width - lengths)[:, None]).long()
        boi = torch.full((len(lengths), 1), self.ids.begin_of_image, dtype=torch.long, device=device)
        hidden = self._forward(self.embed(boi), mask, (lengths - 1)[:, None], cache)
        if P > 1:
            cache.batch_repeat_interleave(P)
        return cache, mask.repeat_interleave(P, 0), hidden.repeat_interleave(P, 0)

    def _keep_source_pixels(self, images: list[Image.Image], sampling: _Request, per_prompt: int) -> list[Image.Image]:
        """An edit's images with the source's own pixels outside the re-sampled cells. The tokens there are the
        source's already, but the VQ decoder's convolutions spread a changed cell's influence over its
        neighbours' pixels (in the shapes world ~5-10% of an untouched object's pixels); the source's decoding
        is pasted back there, so only the cells the edit names change."""
        sources = self._decode(sampling.forced_ids[::per_prompt].cpu(), sampling)
        side = int(sampling.edited.shape[1] ** 0.5)
        out = []
        for row, image in enumerate(images):
            cells = sampling.edited[row].reshape(side, side).cpu().numpy().astype(np.uint8) * 255
            mask = Image.fromarray(cells, mode="L").resize(image.size, resample=Image.Resampling.NEAREST)
            out.append(Image.composite(image, sources[row // per_prompt], mask))
        return out

    def _decode(self, image_ids: torch.Tensor, sampling: _Request) -> list[Image.Image]:
        device = self.bundle.device
        images = []
        for chunk in image_ids.split(sampling.decode_batch_size):
            pixels = self.model.decode_image_tokens(chunk.to(device))
            images.extend(Image.fromarray(a) for a in tokens_to_uint8(pixels))
        return images
