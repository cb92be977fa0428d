"""`specflash generate` and `specflash serve`: the pipeline and the server on the command line.

User mistakes (missing files, undecodable media, unknown names, prompts too long) end with a one-line
message and exit code 2, never a stack trace.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from specflash.media import DEFAULT_MAX_FRAMES, DEFAULT_VIDEO_FPS, load_image, load_video
from specflash.pipeline import DEFAULT_TARGET, ChatResult, Pipeline, UntrainedDraftWarning, load
from specflash.tree import TreeConfig

console = Console()
errors = Console(stderr=True)

TARGET_HELP = f"Hub id, model directory or shipped world name (default {DEFAULT_TARGET})."
DRAFT_HELP = "Draft directory or shipped draft name (default: the target's shipped FLASH draft, if any)."
# The draft tree, shared by generate, serve and bench: which size pays depends on the machine (docs/results.md).
DEFAULT_TREE = TreeConfig()
DEPTH_OPTION = typer.Option(DEFAULT_TREE.depth, min=1, help="Tree depth: most draft tokens along one path.")
TOP_K_OPTION = typer.Option(DEFAULT_TREE.top_k, min=1, help="Tree expansion per level.")
TOTAL_TOKENS_OPTION = typer.Option(
    DEFAULT_TREE.total_tokens, min=1, help="Most draft tokens the target verifies per cycle (the tree's size)."
)
ADAPTIVE_OPTION = typer.Option(
    DEFAULT_TREE.adaptive,
    "--adaptive-tree/--fixed-tree",
    help="Verify as many of the best --total-tokens as pay for themselves on this machine (measured at the "
    "first request), or all of them every cycle.",
)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can cause into a message and exit code 2."""
    try:
        yield
    except (ValueError, OSError) as error:
        errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(2) from None


def load_pipeline(target: str | None, draft: str | None, device: str | None, tree: TreeConfig) -> Pipeline:
    with console.status("loading the target and draft"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedDraftWarning)  # said below, once, in plain words
        pipe = load(target=target, draft=draft, tree=tree, device=device)
    draft_label = pipe.draft_name if pipe.draft_trained else "[yellow]untrained[/]"
    console.print(f"target [bold]{pipe.target_name}[/] ({pipe.target.family_name}), draft {draft_label}")
    if not pipe.draft_trained:
        console.print(
            "[yellow]note:[/] no trained draft for this target, so drafting uses random weights: the output is "
            "still exactly the target's, but expect no speed-up. Train one with `specflash train`."
        )
    return pipe


def _stats_table(runs: dict[str, ChatResult]) -> Table:
    table = Table(show_header=True, header_style="bold")
    table.add_column("")
    for name in runs:
        table.add_column(name, justify="right")
    measured = any(r.stats.sizing_time for r in runs.values())  # an adaptive tree's first request
    rows = {
        "new tokens": lambda r: str(r.stats.new_tokens),
        "wall time (s)": lambda r: f"{r.stats.wall_time:.3f}",
        **({"  of it, measuring the tree's cost": lambda r: f"{r.stats.sizing_time:.3f}"} if measured else {}),
        "tokens/s": lambda r: f"{r.tokens_per_second:.1f}",
        "tau (tokens per target forward)": lambda r: f"{r.stats.tau:.2f}",
        "target forwards": lambda r: str(r.stats.cycles),
        "draft forwards": lambda r: str(r.stats.draft_forwards),
        "draft tokens verified per cycle": lambda r: (
            f"{sum(r.stats.tree_sizes) / len(r.stats.tree_sizes):.1f}" if r.stats.tree_sizes else "-"
        ),
    }
    for label, cell in rows.items():
        table.add_row(label, *(cell(r) for r in runs.values()))
    return table


def generate(
    prompt: str = typer.Option(..., "--prompt", "-p", help="The user's message."),
    image: list[Path] = typer.Option(None, "--image", "-i", help="PNG or JPEG file; repeat for several images."),
    video: Path = typer.Option(None, "--video", help="Video file (any format av/FFmpeg decodes)."),
    fps: float = typer.Option(DEFAULT_VIDEO_FPS, help="Video frames sampled per second."),
    max_frames: int = typer.Option(DEFAULT_MAX_FRAMES, help="Most video frames kept."),
    target: str = typer.Option(None, help=TARGET_HELP),
    draft: str = typer.Option(None, help=DRAFT_HELP),
    max_new_tokens: int = typer.Option(128, help="Most tokens generated."),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass."),
    seed: int = typer.Option(0, help="Sampling seed."),
    compare: bool = typer.Option(False, help="Also decode plainly and compare outputs and speed."),
    stream: bool = typer.Option(False, help="Print the answer as it is decoded."),
    depth: int = DEPTH_OPTION,
    top_k: int = TOP_K_OPTION,
    total_tokens: int = TOTAL_TOKENS_OPTION,
    adaptive_tree: bool = ADAPTIVE_OPTION,
    device: str = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
) -> None:
    """Answer a prompt about images or a video with speculative decoding."""
    with user_errors():
        tree = TreeConfig(depth=depth, top_k=top_k, total_tokens=total_tokens, adaptive=adaptive_tree)
        images = [load_image(path) for path in image or []]
        frames = load_video(video, fps=fps, max_frames=max_frames) if video is not None else None
        pipe = load_pipeline(target, draft, device, tree)
        if frames is not None and not pipe.takes_video and pipe.takes_images:
            console.print(f"{pipe.target_name} takes no video input: its {len(frames)} frames go in as images")
        options = dict(
            images=images,
            video=frames,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            video_fps=fps,
        )
        if compare:
            pipe.chat(prompt, **{**options, "max_new_tokens": 2})  # warm-up, so neither run pays first-call costs
        printer = (lambda delta: console.print(delta, end="", highlight=False, markup=False)) if stream else None
        result = pipe.chat(prompt, stream=printer, **options)
        if stream:
            console.print()
        plain = pipe.chat(prompt, speculative=False, **options) if compare else None
    if not stream:
        console.print(Panel(result.text, title="speculative (FLASH)" if compare else "answer", expand=False))
    if plain is None:
        console.print(_stats_table({"speculative": result}))
        return
    console.print(Panel(plain.text, title="plain decoding", expand=False))
    console.print(_stats_table({"speculative": result, "plain": plain}))
    same = result.token_ids == plain.token_ids
    if temperature == 0:
        verdict = "[green]identical[/]" if same else "[bold red]DIFFERENT (a bug: greedy output must match)[/]"
        console.print(f"outputs: {verdict}")
    else:
        console.print(f"outputs: {'identical' if same else 'differ'} (sampled: each follows the target's distribution)")
    speedup = result.tokens_per_second / plain.tokens_per_second if plain.tokens_per_second else 0.0
    console.print(f"speed-up: [bold]{speedup:.2f}x[/] (tokens/s, speculative over plain, measured in this run)")


def serve(
    target: str = typer.Option(None, help=TARGET_HELP),
    draft: str = typer.Option(None, help=DRAFT_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    allow_files: Path = typer.Option(
        None, help="Directory whose files requests may name as images (file:// or plain paths); none otherwise."
    ),
    max_tokens: int = typer.Option(
        1024, min=1, help="Largest max_tokens a request may ask for; also caps the default of 256."
    ),
    depth: int = DEPTH_OPTION,
    top_k: int = TOP_K_OPTION,
    total_tokens: int = TOTAL_TOKENS_OPTION,
    adaptive_tree: bool = ADAPTIVE_OPTION,
    device: str = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
) -> None:
    """Serve the model over an OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions)."""
    try:
        from specflash.serve import Limits, run_server
    except ImportError as error:
        errors.print(
            f"[bold red]error:[/] `specflash serve` needs the serve extra ({error.name} is missing): "
            "pip install 'specflash\\[serve]'",
            highlight=False,
        )
        raise typer.Exit(2) from None
    with user_errors():
        if allow_files is not None and not allow_files.is_dir():
            raise ValueError(f"--allow-files {allow_files} is not a directory")
        tree = TreeConfig(depth=depth, top_k=top_k, total_tokens=total_tokens, adaptive=adaptive_tree)
        pipe = load_pipeline(target, draft, device, tree)
    console.print(f"serving on http://{host}:{port}/v1")
    run_server(pipe, host=host, port=port, allow_files=allow_files, limits=Limits(max_tokens=max_tokens))
