"""A judge that runs a chat VLM (above all Qwen2.5-VL-7B-Instruct) in this process with transformers.

For training on one machine without a vLLM fleet: the judge model sits on the trainer's GPU and
answers the reward's questions in padded batches. Any image-text-to-text model whose processor has
a chat template works; images reach the processor exactly as the caller built them (see
:func:`.judge.judge_view`).

Qwen2.5-VL's processor has a video processor, which transformers 5 builds only when torchvision is
installed, so loading a Qwen-VL judge needs torchvision even though the judge never sees a video.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .judge import JudgeAnswer, JudgeRequest, JudgeStats

__all__ = ["TransformersJudge"]

_MAX_ERROR_CHARS = 500


class TransformersJudge:
    """A :class:`.judge.Judge` answering with a local transformers model and its processor.

    Requests are answered in batches of ``batch_size``, in order. Greedy decoding when
    ``temperature`` is 0 (the default: a judge's score should not be a coin toss), else pure
    temperature sampling. A batch that fails (out of memory, a bad image) is retried one request at
    a time, so one bad request costs only its own answer.
    """

    def __init__(
        self, model: Any, processor: Any, *, model_id: str | None = None, batch_size: int = 8, temperature: float = 0.0
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        # Generation appends to the right end of every row, so prompts must end there: pad on the left.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model_id = model_id or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.batch_size = batch_size
        self.temperature = float(temperature)
        self.stats = JudgeStats()

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        batch_size: int = 8,
        temperature: float = 0.0,
        model_id: str | None = None,
    ) -> TransformersJudge:
        """Load model and processor with the Auto classes (no remote code: only architectures that
        transformers itself implements). Defaults: CUDA in bfloat16 when there is a GPU, else CPU in
        float32; ``dtype`` may be named ("bfloat16"), as configs do."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if dtype is None:
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        elif isinstance(dtype, str):
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise ValueError(f"dtype {dtype!r} is not a torch dtype (e.g. bfloat16, float16, float32)")
            dtype = getattr(torch, dtype)
        processor = AutoProcessor.from_pretrained(path_or_hub_id)
        model = AutoModelForImageTextToText.from_pretrained(path_or_hub_id, dtype=dtype, device_map={"": str(device)})
        return cls(
            model, processor, model_id=model_id or str(path_or_hub_id), batch_size=batch_size, temperature=temperature
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def ask(self, requests: Sequence[JudgeRequest]) -> list[JudgeAnswer]:
        """One answer per request, in order; failures come back as error answers, never raised."""
        requests = list(requests)
        answers: list[JudgeAnswer] = []
        for start in range(0, len(requests), self.batch_size):
            answers.extend(self._ask_batch(requests[start : start + self.batch_size]))
        self.stats.add_answers(answers)
        return answers

    def _ask_batch(self, batch: list[JudgeRequest]) -> list[JudgeAnswer]:
        try:
            return [JudgeAnswer(text=text, server="local") for text in self._generate(batch)]
        except Exception as batch_error:  # noqa: BLE001 - any failure: fall back to one at a time
            if len(batch) == 1:
                return [self._error_answer(batch_error, attempts=1)]
            self._free_memory()
        answers = []
        for request in batch:  # retried alone: the batch was one attempt, this is the second
            try:
                answers.append(JudgeAnswer(text=self._generate([request])[0], attempts=2, server="local"))
            except Exception as error:  # noqa: BLE001
                self._free_memory()
                answers.append(self._error_answer(error, attempts=2))
        return answers

    @staticmethod
    def _error_answer(error: BaseException, attempts: int) -> JudgeAnswer:
        message = f"local_error: {type(error).__name__}: {error}"
        return JudgeAnswer(text=None, error=message[:_MAX_ERROR_CHARS], attempts=attempts, server="local")

    def _free_memory(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @staticmethod
    def _messages(request: JudgeRequest) -> list[dict]:
        messages = []
        if request.system is not None:
            messages.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
        content = [{"type": "image"} for _ in request.images]
        content.append({"type": "text", "text": request.prompt})
        messages.append({"role": "user", "content": content})
        return messages

    def _inputs(self, batch: list[JudgeRequest]) -> dict[str, torch.Tensor]:
        """The batch as model inputs: chat template to text, then the processor on texts and images
        (so image placeholder tokens are expanded to the image's patch count), left padded."""
        texts = [
            self.processor.apply_chat_template(self._messages(r), tokenize=False, add_generation_prompt=True)
            for r in batch
        ]
        images = [image for request in batch for image in request.images]
        encoded = self.processor(
            text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt"
        )
        dtype = getattr(self.model, "dtype", torch.float32)
        device = self.device
        return {
            key: (value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device))
            for key, value in encoded.items()
            if isinstance(value, torch.Tensor)
        }

    def _generation_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens}
        if self.temperature == 0:
            # The neutral values, so a checkpoint's sampling defaults (Qwen ships temperature/top_k)
            # neither apply nor make generate warn that they are ignored.
            kwargs.update(do_sample=False, temperature=1.0, top_p=1.0, top_k=50)
        else:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=1.0, top_k=0)
        if getattr(self.model.generation_config, "pad_token_id", None) is None:
            kwargs["pad_token_id"] = self.tokenizer.pad_token_id
        return kwargs

    def _stop_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return set()
        return {int(i) for i in (eos if isinstance(eos, (list, tuple)) else [eos])}

    def _generate(self, batch: list[JudgeRequest]) -> list[str]:
        """Texts for a batch. The batch decodes to its longest request's ``max_tokens``; each row is
        then cut to its own request's budget (for greedy decoding the same text as asking alone)."""
        inputs = self._inputs(batch)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **self._generation_kwargs(max(r.max_tokens for r in batch)))
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        new_tokens = sequences[:, inputs["input_ids"].shape[1] :].tolist()
        stop_ids = self._stop_ids()
        texts = []
        for request, row in zip(batch, new_tokens, strict=True):
            row = row[: request.max_tokens]
            for i, token in enumerate(row):
                if token in stop_ids:
                    row = row[:i]
                    break
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True))
        return texts
