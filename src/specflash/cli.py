"""The `specflash` command."""

from __future__ import annotations

import typer
from huggingface_hub import utils as hf_hub_utils
from transformers.utils import logging as transformers_logging

from specflash.bench.cli import bench
from specflash.commands import generate, serve
from specflash.train.cli import dump, train
from specflash.world.cli import app as world_app

app = typer.Typer(help="FLASH speculative decoding for multimodal LLMs.", no_args_is_help=True)


@app.callback()
def _quiet_transformers() -> None:
    """specflash shows its own progress; transformers' bars for loading and writing weights would interleave
    with it. Hub download bars stay as they were: a first download of a 7B target takes minutes."""
    hub_bars_on = not hf_hub_utils.are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()  # also turns the hub's bars off
    if hub_bars_on:
        hf_hub_utils.enable_progress_bars()


app.add_typer(world_app, name="world", help="The synthetic world: data, tiny targets, their quality.")
app.command()(generate)
app.command()(serve)
app.command("dump")(dump)
app.command("train")(train)
app.command()(bench)


if __name__ == "__main__":
    app()
