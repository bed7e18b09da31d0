"""TransformersJudge on a tiny random Qwen2.5-VL built offline, saved and loaded back like a checkpoint."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)
from transformers.utils import is_torchvision_available
from transformers.video_processing_utils import VideoProcessorMixin

from gotr1.rewards.judge import Judge, JudgeRequest
from gotr1.rewards.local_judge import TransformersJudge

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
CORPUS = [
    "system user assistant You are a strict judge. Is the red circle left of the blue square? "
    "Answer yes or no. Rate the image from 0 to 10: 0 1 2 3 4 5 6 7 8 9 10 (12,34),(56,78)"
]
# Qwen style: images as vision_start / image_pad / vision_end, each turn between im_start and im_end.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
POISON = "POISON"


class _ImageOnlyVideoProcessor(VideoProcessorMixin):
    """Stands in for Qwen2VLVideoProcessor, which transformers builds only with torchvision."""

    model_input_names = ["pixel_values_videos", "video_grid_thw"]
    merge_size = 2
    temporal_patch_size = 2

    def __call__(self, *args, **kwargs):
        raise NotImplementedError("no videos without torchvision")


@pytest.fixture(scope="module")
def _processor_without_torchvision():
    """transformers 5 will neither build nor load Qwen2.5-VL's processor without torchvision (its
    video processor needs it); where torchvision is missing, let the stand-in through both paths."""
    if is_torchvision_available():
        yield
        return
    from transformers import processing_utils
    from transformers.models.auto.video_processing_auto import AutoVideoProcessor

    with pytest.MonkeyPatch.context() as mp:
        # The class check looks the base class up by name on processing_utils' own handle on the
        # transformers module (not always the object `import transformers` gives).
        mp.setattr(processing_utils.transformers_module, "VideoProcessorMixin", VideoProcessorMixin, raising=False)
        mp.setattr(
            AutoVideoProcessor, "from_pretrained", classmethod(lambda cls, *args, **kwargs: _ImageOnlyVideoProcessor())
        )
        yield


def _tiny_processor() -> Qwen2_5_VLProcessor:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=4096
    )
    if is_torchvision_available():
        from transformers import Qwen2VLImageProcessor as ImageProcessor
        from transformers import Qwen2VLVideoProcessor as VideoProcessor
    else:
        from transformers import Qwen2VLImageProcessorPil as ImageProcessor

        VideoProcessor = _ImageOnlyVideoProcessor
    # Small bounds: a 56x56 image is 4x4 patches (4 image tokens after the 2x2 merge).
    image_processor = ImageProcessor(min_pixels=28 * 28, max_pixels=112 * 112)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=VideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def _tiny_model(tokenizer) -> Qwen2_5_VLForConditionalGeneration:
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=512,
            # head_dim 16: the three M-RoPE sections (time, height, width) must add up to 16 / 2.
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=1,
            hidden_size=32,
            intermediate_size=32,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=32,
            window_size=56,
            fullatt_block_indexes=[0],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, _processor_without_torchvision):
    torch.set_num_threads(2)
    processor = _tiny_processor()
    path = tmp_path_factory.mktemp("tiny_qwen25vl")
    _tiny_model(processor.tokenizer).save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def judge(checkpoint):
    return TransformersJudge.from_pretrained(str(checkpoint), device="cpu", batch_size=4)


def _fresh(judge, **kwargs) -> TransformersJudge:
    """A judge sharing the loaded model but with its own stats."""
    return TransformersJudge(judge.model, judge.processor, model_id=judge.model_id, **kwargs)


def _image(width, height, color):
    return Image.new("RGB", (width, height), color)


def _mixed_requests() -> list[JudgeRequest]:
    return [
        JudgeRequest("Answer yes or no.", max_tokens=6),
        JudgeRequest("Is the red circle left of the blue square?", images=(_image(56, 56, "red"),), max_tokens=9),
        JudgeRequest(
            "Rate the image from 0 to 10:",
            images=(_image(84, 112, "blue"),),
            system="You are a strict judge.",
            max_tokens=3,
        ),
        JudgeRequest("Rate 0 1 2", images=(_image(112, 84, "green"), _image(56, 56, "white")), max_tokens=7),
        JudgeRequest("(12,34),(56,78)", system="You are a strict judge.", max_tokens=5),
    ]


def test_loads_through_auto_classes(judge, checkpoint):
    assert isinstance(judge, Judge)
    assert isinstance(judge.model, Qwen2_5_VLForConditionalGeneration)
    assert isinstance(judge.processor, Qwen2_5_VLProcessor)
    assert judge.model_id == str(checkpoint)
    assert judge.model.dtype == torch.float32 and judge.device.type == "cpu"
    assert not judge.model.training


def test_from_pretrained_takes_a_dtype_by_name(checkpoint):
    judge = TransformersJudge.from_pretrained(str(checkpoint), device="cpu", dtype="bfloat16", model_id="tiny")
    assert judge.model.dtype == torch.bfloat16 and judge.model_id == "tiny"
    (answer,) = judge.ask([JudgeRequest("Is the red circle?", images=(_image(56, 56, "red"),), max_tokens=2)])
    assert answer.ok  # pixel values were cast to the model's dtype
    with pytest.raises(ValueError, match="not a torch dtype"):
        TransformersJudge.from_pretrained(str(checkpoint), device="cpu", dtype="bfloat17")


def test_mixed_batch_answers_equal_one_at_a_time(judge):
    requests = _mixed_requests()
    batched = judge.ask(requests)  # batch_size 4: one batch of 4 (text, 1 and 2 images), one of 1
    alone = [judge.ask([request])[0] for request in requests]
    assert len(batched) == len(requests)
    assert all(answer.ok and answer.attempts == 1 for answer in batched + alone)
    # Left padding and masking are right only if padding a prompt changes none of its tokens.
    assert [a.text for a in batched] == [a.text for a in alone]
    assert len({a.text for a in alone}) > 1, "a model answering every prompt the same proves nothing"


def test_max_tokens_caps_each_request(judge, monkeypatch):
    generate_calls, decoded_rows = [], []
    generate, decode = judge.model.generate, judge.tokenizer.decode

    def spy_generate(**kwargs):
        output = generate(**kwargs)
        generate_calls.append((kwargs["max_new_tokens"], output.shape[1] - kwargs["input_ids"].shape[1]))
        return output

    def spy_decode(ids, **kwargs):
        decoded_rows.append(list(ids))
        return decode(ids, **kwargs)

    monkeypatch.setattr(judge.model, "generate", spy_generate)
    monkeypatch.setattr(judge.tokenizer, "decode", spy_decode)
    requests = [
        JudgeRequest("Answer yes or no.", max_tokens=2),
        JudgeRequest("Is the red circle?", images=(_image(56, 56, "red"),), max_tokens=8),
        JudgeRequest("Rate 0 1 2", max_tokens=1),
    ]
    answers = judge.ask(requests)
    assert all(a.ok for a in answers)
    ((max_new_tokens, generated),) = generate_calls
    assert max_new_tokens == 8
    assert generated > 2, "the batch ran longer than the short requests allow, so they had to be cut"
    assert [len(row) <= r.max_tokens for row, r in zip(decoded_rows, requests, strict=True)] == [True] * 3


def test_failing_request_is_an_error_answer_and_the_rest_still_answer(judge, monkeypatch):
    requests = [
        JudgeRequest("Answer yes or no.", max_tokens=4),
        JudgeRequest(f"{POISON} answer", images=(_image(56, 56, "red"),), max_tokens=4),
        JudgeRequest("Rate the image:", images=(_image(84, 112, "blue"),), max_tokens=4),
    ]
    expected = [judge.ask([request])[0].text for request in requests]
    generate = judge.model.generate

    def poisoned_generate(**kwargs):
        if any(POISON in text for text in judge.tokenizer.batch_decode(kwargs["input_ids"])):
            raise RuntimeError("CUDA out of memory (pretend)")
        return generate(**kwargs)

    monkeypatch.setattr(judge.model, "generate", poisoned_generate)
    fresh = _fresh(judge, batch_size=8)
    answers = fresh.ask(requests)
    assert [a.ok for a in answers] == [True, False, True]
    assert answers[1].text is None
    assert answers[1].error == "local_error: RuntimeError: CUDA out of memory (pretend)"
    assert [answers[0].text, answers[2].text] == [expected[0], expected[2]]
    assert [a.attempts for a in answers] == [2, 2, 2]  # the failed batch, then each alone

    alone = fresh.ask([requests[1]])  # a batch of one is not retried
    assert alone[0].error.startswith("local_error: RuntimeError") and alone[0].attempts == 1

    stats = fresh.stats
    assert (stats.requests, stats.answered, stats.failed, stats.retries) == (4, 2, 2, 3)
    assert stats.errors == {"local_error": 2}


def test_an_image_the_processor_rejects_fails_only_its_request(judge):
    # Qwen's resize refuses aspect ratios over 200: the batch fails in the processor, not the model.
    requests = [
        JudgeRequest("Answer yes or no.", max_tokens=3),
        JudgeRequest("Is the red circle?", images=(_image(2, 500, "red"),), max_tokens=3),
    ]
    answers = _fresh(judge).ask(requests)
    assert answers[0].ok and answers[0].text == judge.ask([requests[0]])[0].text
    assert not answers[1].ok and answers[1].error.startswith("local_error: ValueError:")


def test_empty_and_sampling(judge):
    fresh = _fresh(judge, temperature=0.8)
    assert fresh.ask([]) == [] and fresh.stats.requests == 0
    torch.manual_seed(1)
    answers = fresh.ask(_mixed_requests()[:3])
    assert all(a.ok for a in answers) and fresh.stats.answered == 3


def test_rejects_bad_settings(judge):
    with pytest.raises(ValueError):
        _fresh(judge, batch_size=0)
    with pytest.raises(ValueError):
        _fresh(judge, temperature=-1.0)
