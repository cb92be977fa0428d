"""Training checkpoints are safetensors + JSON and a re-run resumes where the last one stopped."""

import json

import pytest
import torch
from safetensors.torch import load_file

from specflash.world.build import new_model
from specflash.world.train import TrainConfig, _optimizer, set_rates, train


def test_training_resumes_from_its_checkpoint(tmp_path):
    torch.set_num_threads(1)
    cfg = TrainConfig(name="world-text-tiny", out=str(tmp_path), steps=2, batch=2, save_every=1)
    train(cfg)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and state["next_index"] == 4
    assert (tmp_path / "checkpoint" / "optimizer.safetensors").exists()
    cfg.steps = 3
    final = train(cfg)
    assert final["step"] == 3 and final["next_index"] == 6
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "tokenizer.json").exists()


def test_image_target_resume_is_exact(tmp_path):
    """Warm-up, then stage 2; a run stopped after one step and resumed ends with the same weights as one
    that never stopped (optimizer moments, both parameter groups and the data position restored)."""
    torch.set_num_threads(1)
    common = {"name": "world-llava-tiny", "batch": 2, "save_every": 1, "vision_steps": 2}
    whole = TrainConfig(out=str(tmp_path / "whole"), steps=2, **common)
    train(whole)
    stopped = TrainConfig(out=str(tmp_path / "stopped"), steps=1, **common)
    train(stopped)
    stopped.steps = 2
    state = train(stopped)
    assert state["step"] == 2 and "vision_loss" in state
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "stopped" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_vision_side_gets_the_scaled_rate(tmp_path):
    cfg = TrainConfig(name="world-llava-tiny", out=str(tmp_path), vision_lr_scale=0.25)
    model = new_model(cfg.name, "tiny", tmp_path, 0)
    optimizer = _optimizer(model, "llava", cfg)
    vision = {id(p) for p in optimizer.param_groups[1]["params"]}
    assert id(model.model.vision_tower.embeddings.patch_embedding.weight) in vision
    assert id(model.model.language_model.embed_tokens.weight) not in vision
    set_rates(optimizer, cfg, step=500)
    language_lr, vision_lr = (g["lr"] for g in optimizer.param_groups)
    assert 0 < language_lr < cfg.lr and vision_lr == pytest.approx(0.25 * language_lr)


def test_vision_steps_are_ignored_for_the_text_target(tmp_path):
    torch.set_num_threads(1)
    state = train(TrainConfig(name="world-text-tiny", out=str(tmp_path), steps=1, batch=2, vision_steps=2))
    assert state["step"] == 1 and "vision_loss" not in state
