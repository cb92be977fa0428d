"""Training checkpoints are safetensors + JSON and a re-run resumes where the last one stopped."""

import json
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from specflash.world.train import TrainConfig, train


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


def test_image_target_resume_is_exact_and_vision_moves_slower(tmp_path):
    """Warm-up, then stage 2 with the vision side at a fraction of the rate; a run stopped after one
    step and resumed ends with the same weights as one that never stopped."""
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


def test_vision_group_gets_the_scaled_rate():
    from specflash.world.build import new_model
    from specflash.world.train import _optimizer

    cfg = TrainConfig(name="world-llava-tiny", out="unused", vision_lr_scale=0.25)
    model = new_model(cfg.name, "tiny", Path(tempfile.mkdtemp()), 0)
    groups = _optimizer(model, "llava", cfg).param_groups
    assert [g["scale"] for g in groups] == [1.0, 0.25]
    vision = {id(p) for p in groups[1]["params"]}
    assert id(model.model.vision_tower.embeddings.patch_embedding.weight) in vision
    assert id(model.model.language_model.embed_tokens.weight) not in vision
