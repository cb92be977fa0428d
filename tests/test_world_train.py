"""Training checkpoints are safetensors + JSON and a re-run resumes where the last one stopped."""

import json

import torch

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
