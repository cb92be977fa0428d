"""Bad input gets a clear ValueError, not a stack trace from inside torch."""

from functools import partial

import pytest
import tiny
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from specflash import Draft, DraftConfig, SpeculativeGenerator, Target, TreeConfig, autoregressive_generate


@pytest.fixture(scope="module")
def llava():
    return tiny.llava(seed=0)


def test_draft_built_for_another_target(llava) -> None:
    other = Draft.for_target(tiny.llama(seed=0, vocab=32), DraftConfig())
    with pytest.raises(ValueError, match="another target.*vocabulary size.*model family"):
        SpeculativeGenerator(llava, other)


def test_images_not_matching_image_tokens(llava) -> None:
    inputs = tiny.llava_inputs([2])
    inputs["pixel_values"] = inputs["pixel_values"][:1]
    with pytest.raises(ValueError, match="32 image tokens but 1 image"):
        autoregressive_generate(llava, inputs, max_new_tokens=4)


def test_videos_not_matching_video_tokens() -> None:
    target, inputs = tiny.qwen(seed=0), tiny.qwen_inputs(video_frames=8)
    inputs["video_grid_thw"] = torch.tensor([[2, 8, 8]])
    with pytest.raises(ValueError, match="64 video tokens but the 1 video"):
        autoregressive_generate(target, inputs, max_new_tokens=4)


def test_empty_prompt(llava) -> None:
    with pytest.raises(ValueError, match="empty"):
        autoregressive_generate(llava, {"input_ids": torch.zeros(1, 0, dtype=torch.long)}, max_new_tokens=4)
    padded_out = {"input_ids": torch.tensor([[0, 0], [1, 5]]), "attention_mask": torch.tensor([[0, 0], [1, 1]])}
    with pytest.raises(ValueError, match="empty"):
        autoregressive_generate(llava, padded_out, max_new_tokens=4)


@pytest.mark.parametrize("max_new_tokens", [0, -3])
def test_max_new_tokens_must_be_positive(llava, max_new_tokens: int) -> None:
    draft = Draft.for_target(llava, DraftConfig())
    with pytest.raises(ValueError, match="max_new_tokens must be > 0"):
        SpeculativeGenerator(llava, draft).generate(tiny.llava_inputs([0]), max_new_tokens=max_new_tokens)


def test_prompt_plus_new_tokens_past_context(llava) -> None:
    draft = Draft.for_target(llava, DraftConfig())
    with pytest.raises(ValueError, match="exceeds the model's context of 512"):
        SpeculativeGenerator(llava, draft).generate(tiny.llava_inputs([1]), max_new_tokens=500)


def test_a_request_that_fits_the_context_decodes_to_its_last_position() -> None:
    target, inputs = tiny.llama(seed=2), tiny.text_inputs(seed=2)
    context = inputs["input_ids"].shape[1] + 30 - 1  # the 30th token is never fed back
    target.family.text_config.max_position_embeddings = context
    tree = TreeConfig(depth=5, top_k=4, total_tokens=24, adaptive=False)
    generator = SpeculativeGenerator(target, Draft.for_target(target, DraftConfig(k=2), seed=2), tree)
    plain = autoregressive_generate(target, inputs, max_new_tokens=30, stop_token_ids=[])
    result = generator.generate(inputs, max_new_tokens=30, stop_token_ids=[])
    assert result.new_token_ids == plain.new_token_ids and len(plain.new_token_ids[0]) == 30
    assert result.stats.tree_sizes[0] == 24 and result.stats.tree_sizes[-1] == 0  # no tree past the context
    for generate in (generator.generate, partial(autoregressive_generate, target)):
        with pytest.raises(ValueError, match=f"= {context + 1} positions exceeds the model's context of {context}"):
            generate(inputs, max_new_tokens=31)


def test_a_row_that_finished_ahead_does_not_hold_the_others_to_plain_steps() -> None:
    target, ahead, behind = tiny.llama(seed=2), tiny.text_inputs(seed=2), tiny.text_inputs(seed=7)
    draft = tiny.fit_draft(target, ahead, max_new_tokens=120, config=DraftConfig(k=2))  # right on row 0 only
    inputs = {key: torch.cat([ahead[key], behind[key]]) for key in ("input_ids", "attention_mask")}
    target.family.text_config.max_position_embeddings = inputs["input_ids"].shape[1] + 40 - 1
    tree = TreeConfig(depth=5, top_k=4, total_tokens=24, adaptive=False)
    result = SpeculativeGenerator(target, draft, tree).generate(inputs, max_new_tokens=40, stop_token_ids=[])
    assert result.new_token_ids == autoregressive_generate(target, inputs, 40, stop_token_ids=[]).new_token_ids
    row_0_done = len(result.stats.accept_lengths[0]) - 1  # the cycle after which row 0 had all its tokens
    assert row_0_done < 20 and result.stats.tree_sizes[row_0_done] == 24  # row 1 drafts on, though row 0 ran ahead


def test_right_padding_is_refused(llava) -> None:
    inputs = {"input_ids": torch.tensor([[1, 5, 0]]), "attention_mask": torch.tensor([[1, 1, 0]])}
    with pytest.raises(ValueError, match="left-padded"):
        autoregressive_generate(llava, inputs, max_new_tokens=4)


def test_unsupported_model_names_the_supported_ones() -> None:
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20))
    with pytest.raises(ValueError, match="'gpt2' is not supported; supported model types: llava, .*llama"):
        Target(model)


def test_attention_kernel_without_tree_masks() -> None:
    target = tiny.llama(seed=0)
    target.model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="ignores tree masks"):
        Target(target.model)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1.0}, "temperature must be >= 0"),
        ({"temperature": 1.0, "top_p": 0.0}, "top_p must be in"),
        ({"temperature": 1.0, "top_k": -2}, "top_k must be >= 0"),
    ],
)
def test_bad_sampling_settings(llava, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        autoregressive_generate(llava, tiny.llava_inputs([0]), max_new_tokens=4, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 0}, "depth must be an integer >= 1"),
        ({"depth": 2.5}, "depth must be an integer >= 1, got 2.5"),
        ({"adaptive": "no"}, "adaptive must be True or False, got 'no'"),
        ({"depth": 2, "top_k": 2, "total_tokens": 10}, "exceeds the 6 nodes"),
        ({"paths": ()}, "at least one path"),
        ({"paths": ((0, -1),)}, "ranks >= 0"),
    ],
)
def test_bad_tree_configs(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TreeConfig(**kwargs)


def test_tree_wider_than_vocabulary() -> None:
    target = tiny.llama(seed=0, vocab=6)
    with pytest.raises(ValueError, match="8 children per node but the vocabulary has 6"):
        SpeculativeGenerator(target, Draft.for_target(target, DraftConfig()), TreeConfig(top_k=8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be an integer >= 1"),
        ({"k": 2.5}, "k must be an integer >= 1, got 2.5"),
        ({"layers": 0}, "layers must be an integer >= 1"),
        ({"latents": -1}, ">= 0"),
        ({"latents": True}, "latents must be an integer >= 0, got True"),
        ({"heads": 2.0}, "heads must be an integer >= 1, got 2.0"),
        ({"kv_heads": 0}, "kv_heads must be an integer >= 1, got 0"),
    ],
)
def test_bad_draft_configs(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DraftConfig(**kwargs)


def test_missing_draft_directory(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a draft directory: config.json is missing"):
        Draft.from_pretrained(tmp_path)


def test_sliding_window_models_are_refused() -> None:
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(**{**tiny.TEXT, "sliding_window": 8}, attn_implementation="sdpa")
    with pytest.raises(ValueError, match="sliding-window attention"):
        Target(MistralForCausalLM(config))


@pytest.mark.parametrize(
    "rope", [{"rope_type": "dynamic", "factor": 2.0}, {"rope_type": "linear", "factor": 2.0}, {"rope_type": "default"}]
)
def test_rope_that_follows_the_positions_in_a_forward_is_refused(rope: dict) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(**tiny.TEXT, rope_scaling=rope, attn_implementation="sdpa"))
    if rope["rope_type"] == "dynamic":  # a tree's deeper nodes would rescale its root's frequencies
        with pytest.raises(ValueError, match="dynamic rotary embeddings"):
            Target(model)
    else:
        assert Target(model).family_name == "text"


def test_plain_lists_and_one_dimensional_inputs_are_accepted(llava) -> None:
    as_tensors = autoregressive_generate(llava, {"input_ids": torch.tensor([[1, 5, 6, 7]])}, max_new_tokens=4)
    as_lists = autoregressive_generate(
        llava, {"input_ids": [1, 5, 6, 7], "attention_mask": torch.ones(4, dtype=torch.long)}, max_new_tokens=4
    )
    assert as_lists.new_token_ids == as_tensors.new_token_ids


def test_mask_of_another_shape_is_refused(llava) -> None:
    inputs = {"input_ids": torch.tensor([[1, 5, 6]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with pytest.raises(ValueError, match="does not match input_ids"):
        autoregressive_generate(llava, inputs, max_new_tokens=4)


def test_nan_temperature_and_flat_static_paths_are_refused(llava) -> None:
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        autoregressive_generate(llava, tiny.llava_inputs([0]), max_new_tokens=4, temperature=float("nan"))
    with pytest.raises(ValueError, match="list of child ranks"):
        TreeConfig(paths=[0, 1])


def test_device_names_are_checked_before_any_transfer() -> None:
    from specflash.devices import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'banana'"):
        resolve_device("banana")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda:0' is not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(ValueError, match="GPU\\(s\\) visible"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
