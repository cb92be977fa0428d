"""Data-parallel training: processes that each take a share of a batch add up to the one-process
gradient of the whole batch, and a run in several processes resumes exactly."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from specflash.cli import app
from specflash.world.build import init_model, write_model_files
from specflash.world.data_parallel import SINGLE, Group, run_parallel
from specflash.world.lookup_attention import use_lookup_attention
from specflash.world.processing import load_processor
from specflash.world.train import TrainConfig, _loss, _task_for, check_processes
from specflash.world.vision_warmup import warmup_vision

# instruct samples for the lookup loss, videos for the change loss
MIX = {"instruct": 0.5, "video": 0.5}


def _stage_2_gradients(group: Group, cfg: TrainConfig, start: int, path: str) -> None:
    model = init_model(cfg.name, "tiny", Path(cfg.out), cfg.seed)
    model.train()
    use_lookup_attention(model)
    loss = _loss(model, load_processor(cfg.out), cfg, start, group)
    loss.backward()
    parameters = list(model.parameters())
    total = group.sum_gradients(parameters, loss)
    if group.main:
        grads = {name: p.grad.contiguous() for name, p in model.named_parameters()}
        save_file({**grads, "loss": torch.tensor([total])}, path)


def _warm_up_loss(group: Group, out: str, path: str) -> None:
    model = init_model("world-qwen-tiny", "tiny", Path(out), 0)
    # a rate of 0 keeps the weights, so the second step's loss (frame pairs) is also the first weights'
    result = warmup_vision(
        model, "qwen", load_processor(out).image_processor, 0, 2, batch=4, lr=0.0, eval_scenes=2, group=group
    )
    if group.main:
        Path(path).write_text(json.dumps(result))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max()))


def test_two_processes_add_up_to_the_gradient_of_the_whole_batch(tmp_path):
    write_model_files("world-qwen-tiny", tmp_path)
    cfg = TrainConfig(
        name="world-qwen-tiny", out=str(tmp_path), batch=4, mix=MIX, change_loss_weight=1.0, lookup_loss_weight=1.0
    )
    # a batch where each process has a video and a question about an image
    start = next(
        s for s in range(100) if [_task_for(MIX, 0, s + i) for i in range(4)] == [*["instruct"] * 2, *["video"] * 2]
    )
    _stage_2_gradients(SINGLE, cfg, start, str(tmp_path / "one.safetensors"))
    run_parallel(_stage_2_gradients, 2, 1, cfg, start, str(tmp_path / "two.safetensors"))
    one, two = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    assert one.keys() == two.keys()
    assert [k for k in one if not _close(one[k], two[k])] == []
    assert one["loss"].item() == pytest.approx(two["loss"].item(), rel=1e-5)


def test_a_warm_up_in_two_processes_has_the_loss_of_one(tmp_path):
    write_model_files("world-qwen-tiny", tmp_path)
    _warm_up_loss(SINGLE, str(tmp_path), str(tmp_path / "one.json"))
    run_parallel(_warm_up_loss, 2, 1, str(tmp_path), str(tmp_path / "two.json"))
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert two["token_kind_accuracy"] == one["token_kind_accuracy"]


def test_a_run_in_two_processes_resumes_exactly(tmp_path):
    args = ["world", "train", "--target", "world-llava-tiny", "--vision-steps", "2", "--batch", "2"]
    args += ["--save-every", "1", "--processes", "2"]
    for out, steps in (("whole", "2"), ("stopped", "1"), ("stopped", "2")):
        result = CliRunner().invoke(app, [*args, "--steps", steps, "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    state = json.loads((tmp_path / "stopped" / "training_state.json").read_text())
    assert state["step"] == 2 and state["next_index"] == 4 and "vision_loss" in state
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "stopped" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("processes", "batch", "device", "message"),
    [(0, 16, "cpu", "between 1 and the batch size"), (3, 2, "cpu", "between 1"), (2, 16, "cuda", "CPU only")],
)
def test_process_counts_that_cannot_work_are_refused(processes, batch, device, message):
    with pytest.raises(ValueError, match=message):
        check_processes(processes, batch, device)


def test_world_train_refuses_more_processes_than_samples(tmp_path):
    args = ["world", "train", "--target", "world-text-tiny", "--batch", "2", "--processes", "3", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "between 1 and the batch size" in " ".join(result.output.replace("│", " ").split())
