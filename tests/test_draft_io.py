"""Draft checkpoints: safetensors + JSON, only the draft's own weights, checked against the target."""

import json

import pytest
import tiny
from safetensors import safe_open

from specflash import Draft, DraftConfig, SpeculativeGenerator, TreeConfig


def test_save_and_load_round_trip(tmp_path) -> None:
    target, inputs = tiny.llava(seed=2), tiny.llava_inputs([1], seed=2)
    draft = tiny.fit_draft(target, inputs, max_new_tokens=24, steps=30)
    draft.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["hidden_size"] == target.hidden_size and config["target_family"] == "llava"
    with safe_open(tmp_path / "model.safetensors", "pt") as weights:
        names = set(weights.keys())
    # The target's embedding and LM head are shared, never copied into the draft.
    assert not any("embed" in name or "lm_head" in name for name in names)
    assert "fc.weight" in names
    loaded = Draft.from_pretrained(tmp_path)
    fixed = TreeConfig(adaptive=False)  # the same trees for both, whatever two cost measurements would say
    before = SpeculativeGenerator(target, draft, fixed).generate(inputs, max_new_tokens=24)
    after = SpeculativeGenerator(target, loaded, fixed).generate(inputs, max_new_tokens=24)
    assert before.new_token_ids == after.new_token_ids
    assert before.stats.accept_lengths == after.stats.accept_lengths


def test_loaded_draft_is_checked_against_its_target(tmp_path) -> None:
    Draft.for_target(tiny.llama(seed=0), DraftConfig()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model family: draft text, target llava"):
        SpeculativeGenerator(tiny.llava(seed=0), Draft.from_pretrained(tmp_path))


def test_unknown_config_keys_are_refused(tmp_path) -> None:
    Draft.for_target(tiny.llama(seed=0), DraftConfig()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "heads_typo": 3}))
    with pytest.raises(ValueError, match="unknown draft config keys"):
        Draft.from_pretrained(tmp_path)


def test_qwen2_vl_draft_is_refused_by_a_qwen2_5_vl_target(tmp_path) -> None:
    # One family serves both architectures; the recorded model type tells their drafts apart.
    Draft.for_target(tiny.qwen2_vl(seed=0), DraftConfig()).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["target_model_type"] == "qwen2_vl"
    with pytest.raises(ValueError, match="model type: draft qwen2_vl, target qwen2_5_vl"):
        SpeculativeGenerator(tiny.qwen(seed=0), Draft.from_pretrained(tmp_path))


def test_drafts_saved_before_model_types_were_recorded_still_load(tmp_path) -> None:
    target = tiny.llava(seed=0)
    Draft.for_target(target, DraftConfig()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["target_model_type"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    SpeculativeGenerator(target, Draft.from_pretrained(tmp_path))  # no ValueError
    config["target_family"] = "text"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model family"):
        SpeculativeGenerator(target, Draft.from_pretrained(tmp_path))
