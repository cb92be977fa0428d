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
from specflash.world.packing import use_packed_attention
from specflash.world.processing import load_processor
from specflash.world.train import TrainConfig, _loss, _task_for, check_processes
from specflash.world.vision_warmup import CHANGE_CLASS_WEIGHTS, CHANGES, _change_loss, warmup_vision

# instruct samples for the lookup loss, videos for the change loss
MIX = {"instruct": 0.5, "video": 0.5}


def _stage_2_gradients(group: Group, cfg: TrainConfig, start: int, path: str) -> None:
    model = init_model(cfg.name, "tiny", Path(cfg.out), cfg.seed)
    model.train()
    use_packed_attention(model)
    loss = _loss(model, load_processor(cfg.out), cfg, start, group)
    loss.backward()
    parameters = list(model.parameters())
    total = group.sum_gradients(parameters, loss)
    if group.main:
        grads = {name: p.grad.contiguous() for name, p in model.named_parameters()}
        save_file({**grads, "loss": torch.tensor([total])}, path)


def _warm_up_losses(group: Group, out: str, path: str) -> None:
    model = init_model("world-qwen-tiny", "tiny", Path(out), 0)
    losses = []
    processor = load_processor(out).image_processor
    # stills, frame pairs, stills, pairs: the change head has no gradient at the steps on stills
    warmup_vision(
        model, "qwen", processor, 0, 4, batch=4, eval_scenes=2, on_step=lambda _, loss: losses.append(loss), group=group
    )
    if group.main:
        Path(path).write_text(json.dumps(losses))


def _change_loss_of_share(group: Group, path: str) -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 6, len(CHANGES))
    # rows 0 and 2 (the first process's) all changed, rows 1 and 3 unchanged: shares unequal in weight
    changes = torch.tensor([[CHANGES.index("appear")] * 6, [0] * 6] * 2)
    rows = list(group.share(range(4)))
    loss = group.total(_change_loss(logits[rows], changes[rows], CHANGE_CLASS_WEIGHTS, group).detach())
    if group.main:
        Path(path).write_text(json.dumps(loss.item()))


def _sum_gradients(group: Group, path: str) -> None:
    used, unused, used_by_one = (torch.nn.Parameter(torch.ones(2)) for _ in range(3))
    loss = used.sum() * (group.rank + 1) + (used_by_one.sum() if group.main else 0)
    loss.backward()
    total = group.sum_gradients([used, unused, used_by_one], loss)
    if group.main:
        grads = [None if p.grad is None else p.grad.tolist() for p in (used, unused, used_by_one)]
        Path(path).write_text(json.dumps({"grads": grads, "loss": total}))


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


def test_a_warm_up_in_two_processes_trains_as_one_does(tmp_path):
    write_model_files("world-qwen-tiny", tmp_path)
    _warm_up_losses(SINGLE, str(tmp_path), str(tmp_path / "one.json"))
    run_parallel(_warm_up_losses, 2, 1, str(tmp_path), str(tmp_path / "two.json"))
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert len(one) == len(two) == 4
    assert two == pytest.approx(one, rel=1e-4)


def test_the_weighted_change_loss_of_two_processes_adds_up_to_the_whole_batchs(tmp_path):
    _change_loss_of_share(SINGLE, str(tmp_path / "one.json"))
    run_parallel(_change_loss_of_share, 2, 1, str(tmp_path / "two.json"))
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert two == pytest.approx(one, rel=1e-5)


def test_gradients_are_summed_and_a_parameter_no_process_used_keeps_none(tmp_path):
    run_parallel(_sum_gradients, 2, 1, str(tmp_path / "sums.json"))
    sums = json.loads((tmp_path / "sums.json").read_text())
    assert sums["grads"] == [[3.0, 3.0], None, [1.0, 1.0]]
    assert sums["loss"] == 2.0 + 4.0 + 2.0


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
    [
        (0, 16, "cpu", "between 1 and the batch size"),
        (3, 2, "cpu", "between 1"),
        (33, 64, "cpu", "the vision warm-up's"),
        (2, 16, "cuda", "CPU only"),
    ],
)
def test_process_counts_that_cannot_work_are_refused(processes, batch, device, message):
    with pytest.raises(ValueError, match=message):
        check_processes(processes, batch, device)


def test_world_train_refuses_more_processes_than_samples(tmp_path):
    args = ["world", "train", "--target", "world-text-tiny", "--batch", "2", "--processes", "3", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "between 1 and the batch size" in " ".join(result.output.replace("│", " ").split())
