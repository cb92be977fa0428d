"""`specflash dump` and `specflash train`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from specflash.commands import user_errors
from specflash.pipeline import load_target as load_named_target
from specflash.targets import Target
from specflash.train.config import load_config
from specflash.train.dump import dump as dump_features
from specflash.train.sources import open_source
from specflash.train.trainer import Trainer

console = Console()
TARGET_HELP = "Hub id, model directory or shipped world name (world-llava-tiny, world-qwen-tiny, world-text-tiny)."


def load_target(name: str, device: str | None = None) -> Target:
    with console.status(f"loading {name}"):
        return load_named_target(name, device)


def dump(
    target: str = typer.Option(..., help=TARGET_HELP),
    data: str = typer.Option(
        ...,
        help="world:TASKS[:N[:SEED]] (e.g. world:caption,instruct,video:200) or a "
        "LLaVA-Instruct / ShareGPT .json file.",
    ),
    out: Path = typer.Option(..., help="Output directory (index.json + shards); rerun to resume."),
    self_distill: bool = typer.Option(False, help="Regenerate every assistant turn with the target first."),
    max_new_tokens: int = typer.Option(256, help="Longest self-distilled answer."),
    temperature: float = typer.Option(0.0, help="Self-distillation sampling temperature (0 = greedy)."),
    seed: int = typer.Option(0, help="Self-distillation sampling seed."),
    image_root: Path = typer.Option(None, help="Directory JSON image paths are relative to (default: the file's)."),
    samples_per_shard: int = typer.Option(256, help="Conversations per shard file."),
    dtype: str = typer.Option("bfloat16", help="Storage dtype of features: bfloat16, float16 or float32."),
    device: str = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
) -> None:
    """Run a target over conversations and store the features draft training needs."""
    with user_errors():
        source = open_source(data, image_root)
        model = load_target(target, device)
        columns = (TextColumn("[bold]dump[/]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("dump", total=len(source))
            index = dump_features(
                model,
                source,
                out,
                {"data": data, "target": target},
                self_distilled=self_distill,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=seed,
                samples_per_shard=samples_per_shard,
                dtype=dtype,
                progress=lambda n: progress.advance(task, n),
            )
    tokens = sum(s["tokens"] for s in index["shards"])
    assistant = sum(s["assistant_tokens"] for s in index["shards"])
    console.print(
        f"{len(source)} conversations, {tokens} tokens ({assistant} assistant) in {len(index['shards'])} "
        f"shard(s) under {out}"
    )


def train(
    target: str = typer.Option(..., help=TARGET_HELP),
    data: Path = typer.Option(..., help="A `specflash dump` output directory."),
    out: Path = typer.Option(..., help="Output directory: the draft, checkpoints/, metrics.jsonl, eval.jsonl."),
    config: Path = typer.Option(None, help="TOML file with \\[draft] and \\[train] sections (see docs/training.md)."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in --out, exactly."),
) -> None:
    """Train a FLASH draft for a target on dumped features."""
    from accelerate import PartialState

    with user_errors():
        run_config = load_config(config) if config is not None or not resume else None
        model = load_target(target, str(PartialState().device))
        trainer = Trainer(model, data, out, run_config, resume)
        result = trainer.run(show_progress=True)
    if trainer.accelerator.is_main_process:
        accuracy = ", ".join(f"{a:.3f}" for a in result.eval.get("accuracy", []))
        console.print(
            f"draft written to {result.out} after {result.steps} steps"
            + (f"; held-out top-1 per slot: {accuracy}" if accuracy else "")
        )
