"""The `specflash bench` command."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from specflash.bench.report import plot, print_table, write_report
from specflash.bench.runner import AR, Bench, parse_tasks, tasks_for
from specflash.commands import ADAPTIVE_OPTION, DEPTH_OPTION, TOP_K_OPTION, TOTAL_TOKENS_OPTION, user_errors
from specflash.draft import Draft
from specflash.pipeline import DEFAULT_TARGET, Pipeline, load_target, resolve_draft, shipped_drafts
from specflash.tree import TreeConfig

# Without --draft: the target's shipped eagle and flash drafts; --ablate: each part of FLASH alone and
# together, next to plain decoding.
DEFAULT_DRAFTS = ("eagle", "flash")
ABLATION = ("eagle", "latents", "sar", "flash")


def _named_drafts(named: list[str]) -> dict[str, Path]:
    """--draft NAME=PATH items, checked before the target loads (which can take minutes)."""
    drafts = {}
    for item in named:
        name, sep, where = item.partition("=")
        if not sep or not name or not where:
            raise ValueError(f"--draft takes NAME=PATH (a directory or a shipped draft name), got {item!r}")
        if name == AR or name in drafts:
            raise ValueError(f"--draft name {name!r} is reserved or repeated")
        drafts[name] = resolve_draft(where)
    return drafts


def _shipped_drafts(target_name: str, parts: tuple[str, ...]) -> dict[str, Path]:
    """The target's shipped drafts; looked up once the target has loaded, so a bad --target is reported as
    such rather than as a missing draft."""
    missing = [part for part in parts if f"{target_name}-{part}" not in shipped_drafts()]
    if missing:
        raise ValueError(f"no shipped {', '.join(missing)} draft(s) for target {target_name!r}; pass --draft NAME=PATH")
    return {part: resolve_draft(f"{target_name}-{part}") for part in parts}


def _check_out(out: Path) -> None:
    """--out must be a directory or not exist yet: found now, not when the first results are written."""
    existing = next(path for path in (out, *out.parents) if path.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out} cannot be a directory: {existing} is a file")


def bench(
    target: str = typer.Option(DEFAULT_TARGET, help="Hub id, directory or shipped world target."),
    draft: list[str] = typer.Option(
        [], "--draft", help="NAME=PATH, repeatable; default: the target's shipped eagle and flash drafts."
    ),
    tasks: str = typer.Option(
        None,
        help="Comma-separated: caption, instruct, video, text (default: caption,instruct,video; text for a "
        "text-only target). Any target takes text.",
    ),
    n: int = typer.Option(10, min=1, help="Held-out samples per task."),
    temperature: float = typer.Option(0.0, min=0.0),
    seed: int = typer.Option(0, help="Seed of the held-out samples and of sampling."),
    max_new_tokens: int = typer.Option(128, min=1),
    depth: int = DEPTH_OPTION,
    top_k: int = TOP_K_OPTION,
    total_tokens: int = TOTAL_TOKENS_OPTION,
    adaptive_tree: bool = ADAPTIVE_OPTION,
    ablate: bool = typer.Option(
        False, help="Run AR and the shipped eagle, latents-only, sar-only and flash drafts (not with --draft)."
    ),
    profile: bool = typer.Option(False, help="Time a real-size architecture with random weights instead."),
    shape: str = typer.Option("llava-1.5-7b", help="--profile: llava-1.5-7b or qwen2.5-vl-7b."),
    layers: int = typer.Option(None, min=1, help="--profile: text decoder layers (default: the real depth)."),
    kind: str = typer.Option("image", help="--profile: prompt with an 'image' (576 tokens) or 'video' (8 frames)."),
    dtype: str = typer.Option(None, help="--profile: float32, bfloat16 or float16 (default: bf16 on GPU)."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    out: Path = typer.Option(
        Path("runs/bench"), help="Directory for jsonl, summary.json and plots, rewritten after every sample."
    ),
) -> None:
    """Measure speed-up, tau and acceptance of drafts against plain decoding on held-out world tasks."""
    console = Console()
    with user_errors():
        _check_out(out)
    if profile:
        _profile(console, shape, layers, kind, device, dtype, depth, top_k, total_tokens, out)
        return
    with user_errors():
        if ablate and draft:
            raise ValueError("--ablate runs the target's shipped ablation drafts; leave out --draft, or --ablate")
        tree = TreeConfig(depth=depth, top_k=top_k, total_tokens=total_tokens, adaptive=adaptive_tree)
        asked_tasks = parse_tasks(tasks)
        draft_dirs = _named_drafts(draft)
        loaded = load_target(target, device)
        draft_dirs = draft_dirs or _shipped_drafts(target, ABLATION if ablate else DEFAULT_DRAFTS)
        drafts = {name: Draft.from_pretrained(path) for name, path in draft_dirs.items()}
        for loaded_draft in drafts.values():
            loaded_draft.check_target(loaded)
        pipeline = Pipeline(loaded, next(iter(drafts.values())), tree, target_name=target)
        task_list = tasks_for(pipeline, asked_tasks)
        out.mkdir(parents=True, exist_ok=True)
    runner = Bench(pipeline, drafts, tree, max_new_tokens, temperature, seed)
    settings = {
        "target": target,
        "drafts": {k: str(v) for k, v in draft_dirs.items()},
        "tasks": task_list,
        "n": n,
        "temperature": temperature,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "tree": {"depth": depth, "top_k": top_k, "total_tokens": total_tokens, "adaptive": tree.adaptive},
        "cycle_costs": {},
        "timing": "wall time of the whole call: vision encoding, target and draft prefill, decoding",
    }
    planned = n * len(task_list)
    results: list[dict] = []
    try:
        with Progress(console=console, transient=True) as progress:
            job = progress.add_task("benchmarking", total=planned)
            results = write_report(out, [], settings, planned)  # this run's summary.json from the start
            for records in runner.run(task_list, n, seed):
                settings["cycle_costs"] = runner.cycle_costs()
                results = write_report(out, records, settings, planned)
                progress.advance(job)
    except KeyboardInterrupt:
        done = sum(r["samples"] for r in results if r["method"] == AR)
        if results:
            print_table(results, console)
        console.print(
            f"interrupted after {done} of {planned} samples: {out}/summary.json (marked partial) and *.jsonl "
            "hold the finished ones; plots are drawn for complete runs only"
        )
        raise typer.Exit(130) from None
    plot(out, results)
    print_table(results, console)
    console.print(f"wrote {out}/summary.json, per-sample *.jsonl and plots")


def _profile(
    console: Console,
    shape: str,
    layers: int | None,
    kind: str,
    device: str | None,
    dtype: str | None,
    depth: int,
    top_k: int,
    total_tokens: int,
    out: Path,
) -> None:
    import json

    import torch

    from specflash.bench.profile import profile as run_profile
    from specflash.bench.shapes import build, prompt
    from specflash.devices import resolve_device

    try:
        device = str(resolve_device(device))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    chosen = getattr(torch, dtype or ("bfloat16" if device.startswith("cuda") else "float32"), None)
    if not isinstance(chosen, torch.dtype):
        raise typer.BadParameter(f"unknown dtype {dtype!r}")
    try:
        tree = TreeConfig(depth=depth, top_k=top_k, total_tokens=total_tokens)
        with console.status(f"profiling {shape} ({kind}) on {device}"):
            target = build(shape, layers, chosen, device)
            result = {"shape": shape, "kind": kind, **run_profile(target, prompt(target, kind), tree=tree)}
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(result, indent=2) + "\n")
    console.print(
        f"{shape}, {result['text_layers']} text layers, {result['prompt_tokens']}-token {kind} prompt, "
        f"{result['dtype']} on {result['device']}\n"
        f"plain decoding {result['plain_ms_per_token']:.1f} ms/token; bandwidth floor "
        f"{result['floor_ms_per_token']:.1f} ms/token ({result['decode_weight_gb']:.2f} GB at "
        f"{result['copy_bandwidth_gb_s']:.0f} GB/s)"
    )
    console.print(
        "target forward by tree tokens (ms): "
        + ", ".join(f"{k}: {v:.1f}" for k, v in result["verify_ms_by_tree_tokens"].items())
    )
    for name, entry in result["drafts"].items():
        implied = "; ".join(f"tau {i['tau']}: {i['speedup']:.2f}x" for i in entry["implied"])
        console.print(
            f"{name}: draft prefill {entry['prefill_ms']:.1f} ms ({entry['cache_entries_after_prefill']} cache "
            f"entries), draft {entry['draft_ms_per_cycle']:.1f} ms/cycle; implied {implied}"
        )
    console.print(f"wrote {out}/profile.json")
