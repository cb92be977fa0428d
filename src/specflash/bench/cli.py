"""The `specflash bench` command."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from specflash.bench.report import plot, print_table, summarize, write_summary
from specflash.bench.runner import AR, Bench, tasks_for
from specflash.draft import Draft
from specflash.pipeline import DEFAULT_TARGET, Pipeline, load_target, resolve_draft
from specflash.tree import TreeConfig

# The ablation: each part of FLASH alone and together, next to plain decoding, as shipped drafts.
ABLATION = ("eagle", "latents", "sar", "flash")


def _drafts(target_name: str, named: list[str], ablate: bool) -> dict[str, Path]:
    if ablate:
        return {part: resolve_draft(f"{target_name}-{part}") for part in ABLATION}
    if not named:
        named = [f"{part}={target_name}-{part}" for part in ("eagle", "flash")]
    drafts = {}
    for item in named:
        name, sep, where = item.partition("=")
        if not sep or not name or not where:
            raise ValueError(f"--draft takes NAME=PATH (a directory or a shipped draft name), got {item!r}")
        if name == AR or name in drafts:
            raise ValueError(f"--draft name {name!r} is reserved or repeated")
        drafts[name] = resolve_draft(where)
    return drafts


def bench(
    target: str = typer.Option(DEFAULT_TARGET, help="Hub id, directory or shipped world target."),
    draft: list[str] = typer.Option(
        [], "--draft", help="NAME=PATH, repeatable; default: the target's shipped eagle and flash drafts."
    ),
    tasks: str = typer.Option("caption,instruct,video", help="Comma-separated: caption, instruct, video, text."),
    n: int = typer.Option(10, min=1, help="Held-out samples per task."),
    temperature: float = typer.Option(0.0, min=0.0),
    seed: int = typer.Option(0, help="Seed of the held-out samples and of sampling."),
    max_new_tokens: int = typer.Option(128, min=1),
    depth: int = typer.Option(6, min=1, help="Tree depth."),
    top_k: int = typer.Option(8, min=1, help="Tree expansion per level."),
    total_tokens: int = typer.Option(60, min=1, help="Draft tokens verified per cycle."),
    ablate: bool = typer.Option(False, help="Run AR, eagle, latents-only, sar-only and flash drafts."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    out: Path = typer.Option(Path("runs/bench"), help="Directory for jsonl, summary.json and plots."),
) -> None:
    """Measure speed-up, tau and acceptance of drafts against plain decoding on held-out world tasks."""
    console = Console()
    try:
        tree = TreeConfig(depth=depth, top_k=top_k, total_tokens=total_tokens)
        draft_dirs = _drafts(target, draft, ablate)
        loaded = load_target(target, device)
        drafts = {name: Draft.from_pretrained(path) for name, path in draft_dirs.items()}
        for loaded_draft in drafts.values():
            loaded_draft.check_target(loaded)
        pipeline = Pipeline(loaded, next(iter(drafts.values())), tree, target_name=target)
        task_list = tasks_for(pipeline, [t.strip() for t in tasks.split(",") if t.strip()])
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    runner = Bench(pipeline, drafts, tree, max_new_tokens, temperature, seed)
    with Progress(console=console, transient=True) as progress:
        job = progress.add_task("benchmarking", total=n * len(task_list))
        records = runner.run(task_list, n, seed, out, progress=lambda: progress.advance(job))
    results = summarize(records, depth, temperature)
    settings = {
        "target": target, "drafts": {k: str(v) for k, v in draft_dirs.items()}, "tasks": task_list, "n": n,
        "temperature": temperature, "seed": seed, "max_new_tokens": max_new_tokens,
        "tree": {"depth": depth, "top_k": top_k, "total_tokens": total_tokens},
        "timing": "wall time of the whole call: vision encoding, target and draft prefill, decoding",
    }
    write_summary(out, results, settings)
    plot(out, results)
    print_table(results, console)
    console.print(f"wrote {out}/summary.json, per-sample *.jsonl and plots")
