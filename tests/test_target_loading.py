"""Targets load from checkpoint directories through the stock HF classes."""

import pytest
import tiny
import torch

from specflash import Target, autoregressive_generate


@pytest.mark.parametrize(("make", "family"), [(tiny.llava, "llava"), (tiny.qwen, "qwen2_5_vl"), (tiny.llama, "text")])
def test_from_pretrained_picks_the_adapter(tmp_path, make, family: str) -> None:
    built = make(seed=1)
    built.model.save_pretrained(tmp_path)
    loaded = Target.from_pretrained(tmp_path, device="cpu")
    assert loaded.family_name == family and loaded.dtype == torch.float32
    inputs = tiny.text_inputs(seed=1)
    before = autoregressive_generate(built, inputs, max_new_tokens=8).new_token_ids
    assert autoregressive_generate(loaded, inputs, max_new_tokens=8).new_token_ids == before


def test_from_pretrained_refuses_unsupported_types(tmp_path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'gpt2' is not supported"):
        Target.from_pretrained(tmp_path)
