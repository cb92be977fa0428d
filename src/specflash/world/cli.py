"""`specflash world`: write world data, train world targets, measure their quality."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.table import Table

from ..devices import resolve_device
from .recipes import FAMILIES, SIZES
from .tasks import DRILLS, SPLITS, TASKS, make_samples

app = typer.Typer(help="The synthetic multimodal world: data, tiny target training, target quality.")
console = Console()


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """An option callback that refuses a value outside `choices` while the options are parsed."""

    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def _positive_finite(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be positive and finite, got {value}")
    return value


def _check_writable(path: Path, option: str) -> None:
    """Refuse an output file that could not be written, before the work whose result it is to hold."""
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a directory", param_hint=option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise typer.BadParameter(f"cannot write {path}: {path.parent} is a file", param_hint=option) from None
    except OSError as error:
        raise typer.BadParameter(f"cannot write {path}: {error.strerror}", param_hint=option) from None
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise typer.BadParameter(f"cannot write {path}: permission denied", param_hint=option)


@app.command()
def build(
    out: Path = typer.Option(..., help="Directory to write samples into (PNG frames + samples.jsonl)."),
    task: str = typer.Option(
        "caption",
        callback=_one_of((*TASKS, *DRILLS)),
        help=f"One of {', '.join(TASKS)}, or with --split train a drill: {', '.join(DRILLS)}.",
    ),
    split: str = typer.Option("eval", callback=_one_of(SPLITS), help=f"One of {', '.join(SPLITS)}."),
    n: int = typer.Option(16, min=1, help="Number of samples."),
    seed: int = typer.Option(0, help="Stream seed."),
) -> None:
    """Write n samples of a task: images and video frames as PNG, messages and facts as JSON lines."""
    if task in DRILLS and split != "train":
        raise typer.BadParameter(f"{task!r} is a training-only task: add --split train", param_hint="--task")
    out.mkdir(parents=True, exist_ok=True)
    with (out / "samples.jsonl").open("w") as f:
        for i, s in enumerate(make_samples(task, split, n, seed)):
            files = []
            for j, im in enumerate([*s.images, *(s.video or [])]):
                files.append(f"{i:05d}_{j:02d}.png")
                im.save(out / files[-1])
            turns = [{"qtype": t.qtype, "value": repr(t.value)} for t in s.turns]
            f.write(
                json.dumps({"key": s.key, "task": s.task, "files": files, "messages": s.messages, "turns": turns})
                + "\n"
            )
    console.print(f"wrote {n} {task} samples to {out}")


def _parse_mix(target: str, text: str) -> dict[str, float]:
    from .tasks import DRILLS
    from .train import task_mix

    known = (*TASKS, *DRILLS)
    mix = {}
    for part in text.split(","):
        task, _, share = part.partition("=")
        task = task.strip()
        if task not in known:
            raise typer.BadParameter(f"unknown task {task!r}; known: {', '.join(known)}", param_hint="--mix")
        if task in mix:
            raise typer.BadParameter(f"{task!r} is given twice", param_hint="--mix")
        try:
            mix[task] = float(share)
        except ValueError:
            raise typer.BadParameter(f"{part!r} is not task=share", param_hint="--mix") from None
    try:
        return task_mix(target, mix)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--mix") from None


@app.command()
def train(
    target: str = typer.Option(..., help=f"One of {', '.join(FAMILIES)}."),
    out: Path = typer.Option(None, help="Output directory (default: world-models/<target>)."),
    size: str = typer.Option("tiny", callback=_one_of(tuple(SIZES)), help=f"Recipe size: {', '.join(SIZES)}."),
    steps: int | None = typer.Option(
        None,
        min=0,
        help="Stage-2 optimizer steps (default: the recipe's, or a resumed run's own). 0 stops after the vision"
        " warm-up; a later run in the same --out goes on from there with any stage-2 options (--steps, --lr,"
        " --mix, loss weights, --batch, --vision-lr-scale, --freeze-vision-tower).",
    ),
    vision_steps: int = typer.Option(
        None, min=0, help="Vision warm-up steps for image targets (default: the recipe's)."
    ),
    batch: int = typer.Option(16, min=1, help="Sequences per step."),
    lr: float | None = typer.Option(
        None,
        callback=_positive_finite,
        help="Stage 2's peak learning rate (default: the recipe's, or a resumed run's own).",
    ),
    vision_lr_scale: float | None = typer.Option(
        None,
        min=0.0,
        help="Vision side's rate after the warm-up, as a fraction of --lr; 0 freezes it (faster, less "
        "accurate: docs/world.md). Default: 0.1, or a resumed run's own.",
    ),
    freeze_vision_tower: bool | None = typer.Option(
        None,
        "--freeze-vision-tower/--no-freeze-vision-tower",
        help="Image targets: after the warm-up train only the vision side's projector (at the vision rate) and "
        "freeze its tower, whose backward pass is then skipped (faster: docs/world.md). Default: the recipe's "
        "(on for world-qwen-tiny), or a resumed run's own.",
    ),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Seed for weights and the training data stream."),
    save_every: int = typer.Option(250, min=1, help="Checkpoint every N steps."),
    resume: bool = typer.Option(True, help="Resume from out/checkpoint when present."),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch, in each process."),
    processes: int = typer.Option(
        1,
        help="Processes that train together on the CPU, each on its share of every batch (data parallel). "
        "On a 2-core CPU --processes 2 --threads 1 is the fastest (docs/world.md).",
    ),
    device: str = typer.Option("cpu", help="Device to train on (cpu, cuda, cuda:1, ...)."),
    mix: str = typer.Option(
        None,
        help="Task shares of the training samples, e.g. caption=0.3,instruct=0.3,drill=0.4 "
        "(default: the recipe's). Training-only tasks: drill, text-drill (5-7 questions about one scene), "
        "pair-drill (5-7 comparisons of two scenes).",
    ),
    change_loss_weight: float = typer.Option(
        0.0, min=0.0, help="Video target: weight of the change loss (docs/world.md); 0, the default, is off."
    ),
    lookup_loss_weight: float | None = typer.Option(
        None,
        min=0.0,
        help="Image targets: weight of the lookup loss (docs/world.md); 0 is off. Default: the recipe's "
        "(1 for the image targets when the mix has instruct or a drill of images, else 0), or a resumed run's own.",
    ),
    ship: bool = typer.Option(False, help="Copy the result into the package's shipped models."),
) -> None:
    """Train a world target from scratch (resumable)."""
    from .models import ship as ship_model
    from .train import (
        ResumeMismatch,
        TrainConfig,
        check_losses,
        check_processes,
        check_vision_lr_scale,
    )
    from .train import train as run_training

    if target not in FAMILIES:
        raise typer.BadParameter(f"unknown world model {target!r}; known: {', '.join(FAMILIES)}", param_hint="--target")
    if ship and steps == 0:
        raise typer.BadParameter(
            "--steps 0 stops after the vision warm-up: there is nothing to ship", param_hint="--ship"
        )
    torch.set_num_threads(threads)
    try:
        device = str(resolve_device(device))
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--device") from None
    try:
        check_processes(processes, batch, device)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--processes") from None
    try:
        check_vision_lr_scale(vision_lr_scale)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--vision-lr-scale") from None
    shares = _parse_mix(target, mix) if mix else None
    try:
        check_losses(target, change_loss_weight, lookup_loss_weight, shares)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--change-loss-weight / --lookup-loss-weight") from None
    out = out or Path("world-models") / target
    cfg = TrainConfig(
        mix=shares,
        change_loss_weight=change_loss_weight,
        lookup_loss_weight=lookup_loss_weight,
        name=target,
        out=str(out),
        size=size,
        steps=steps,
        batch=batch,
        lr=lr,
        seed=seed,
        save_every=save_every,
        vision_lr_scale=vision_lr_scale,
        freeze_vision_tower=freeze_vision_tower,
        device=device,
        vision_steps=vision_steps,
    )
    try:
        state = run_training(cfg, resume=resume, processes=processes)
    except ResumeMismatch as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    loss = "-" if state["loss"] is None else f"{state['loss']:.3f}"
    console.print(f"trained {target}: {state['step']} steps, loss {loss}, {state['elapsed_s'] / 60:.1f} min")
    if ship:
        console.print(f"shipped to {ship_model(out, target)}")


@app.command("eval")
def evaluate_cmd(
    target: str = typer.Option("world-llava-tiny", help="Shipped name or model directory."),
    n: int = typer.Option(100, min=1, help="Samples per task."),
    seed: int = typer.Option(0, help="Eval stream seed (split 'eval', never trained on)."),
    json_path: Path = typer.Option(None, "--json", help="Write the metrics here."),
    batch: int = typer.Option(16, min=1, help="Generation batch size."),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch."),
) -> None:
    """Measure a world target on held-out samples."""
    from .evaluate import check_target, evaluate

    try:
        check_target(target)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--target") from None
    if json_path:
        _check_writable(json_path, "--json")
    torch.set_num_threads(threads)
    result = evaluate(target, n=n, seed=seed, batch=batch)
    table = Table(title=f"{target} (split eval, seed {seed}, n {n})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.3f}")
    console.print(table)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2))
