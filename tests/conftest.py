import pytest
import torch

from gotr1.model.loading import JanusBundle
from gotr1.model.tiny import build_tiny_janus, build_tiny_tokenizer
from gotr1.model.tokens import SpecialTokenIds


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_tokenizer):
    torch.set_num_threads(2)
    model, tokenizer = build_tiny_janus(tiny_tokenizer, seed=0)
    return JanusBundle(model, tokenizer, SpecialTokenIds.from_tokenizer(tokenizer), source="tiny")
