"""Aggregates bench records into summary.json, a terminal table and PNG plots (FLASH.md section 7).

speedup = (total new tokens / total wall time) of a method over the same for plain decoding, per task;
tau = total new tokens / total target forwards, prefill included (the token it yields and its forward),
so plain decoding is exactly 1 and the jsonl's accept lengths sum to new_tokens; tau_decoding leaves the
prefill out, (tokens - 1) / verification cycles per sample summed, the convention of published results;
draft_forwards_per_cycle excludes the draft's prefill and, as the last cycle needs no catch-up, is about
1/cycles below ceil(depth/k) when every cycle drafts (a pause's plain steps take none, and one catch-up
after it); alpha_by_depth counts the draft tokens each drafted cycle's verification accepted, before
any cut at a stop token or max_new_tokens; tree_tokens_per_cycle is the mean number of draft
nodes verified per cycle (an adaptive tree's chosen sizes, 0 for a plain step), and plain_step_share the
share of a speculative method's cycles that were plain steps (an adaptive tree's pauses; docs/engine.md).

The report is rewritten after every sample, each file atomically, so an interrupted run keeps its
finished samples; until all are done summary.json says how far it got under "partial".
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import transformers
from rich.console import Console
from rich.table import Table

import specflash
from specflash.bench.runner import AR, Record
from specflash.generate import alpha_by_depth


def summarize(records: list[Record], depth: int, temperature: float) -> list[dict[str, Any]]:
    results = []
    for task in dict.fromkeys(r.task for r in records):
        of_task = [r for r in records if r.task == task]
        baseline = [r for r in of_task if r.method == AR]
        base_rate = sum(r.new_tokens for r in baseline) / sum(r.wall_time for r in baseline)
        ar_tokens = {r.sample: r.token_ids for r in baseline}
        for method in dict.fromkeys(r.method for r in of_task):
            runs = [r for r in of_task if r.method == method]
            tokens, time = sum(r.new_tokens for r in runs), sum(r.wall_time for r in runs)
            accepted = [a for r in runs for a in r.draft_accepted]
            sizes = [s for r in runs for s in r.tree_sizes]
            decode_cycles = sum(r.cycles - 1 for r in runs)
            results.append(
                {
                    "method": method,
                    "task": task,
                    "samples": len(runs),
                    "new_tokens": tokens,
                    "wall_time": time,
                    "speedup": (tokens / time) / base_rate,
                    "tau": tokens / sum(r.cycles for r in runs),
                    "tau_decoding": (tokens - len(runs)) / max(decode_cycles, 1),
                    "alpha_by_depth": [] if method == AR else alpha_by_depth(accepted, depth),
                    "draft_forwards_per_cycle": (
                        0.0 if method == AR else sum(r.draft_forwards - 1 for r in runs) / max(decode_cycles, 1)
                    ),
                    "tree_tokens_per_cycle": sum(sizes) / len(sizes) if sizes else 0.0,
                    "plain_step_share": sizes.count(0) / len(sizes) if sizes else 0.0,
                    "draft_time_share": sum(r.draft_time for r in runs) / time,
                    "tokens_per_s": tokens / time,
                    "prefill_time": sum(r.prefill_time for r in runs) / len(runs),
                    "equal_to_ar": (
                        all(r.token_ids == ar_tokens[r.sample] for r in runs) if temperature == 0 else None
                    ),
                }
            )
    return results


def environment() -> tuple[dict[str, Any], dict[str, str]]:
    hardware: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    versions = {
        "specflash": specflash.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
        versions["commit"] = commit
    except (OSError, subprocess.CalledProcessError):
        pass
    return hardware, versions


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: an interrupt leaves the old file or the new, never half."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_summary(
    out: Path, results: list[dict[str, Any]], settings: dict[str, Any], partial: dict[str, int] | None = None
) -> dict[str, Any]:
    hardware, versions = environment()
    summary = {"results": results, "hardware": hardware, "versions": versions, "settings": settings}
    if partial:
        summary["partial"] = partial
    _write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def write_report(out: Path, records: list[Record], settings: dict[str, Any], planned: int) -> list[dict[str, Any]]:
    """Rewrite the jsonl of the task the last record belongs to and summary.json, marked partial until all
    `planned` samples are done; returns the summarized results."""
    if records:
        task = records[-1].task
        for method in dict.fromkeys(r.method for r in records):
            lines = [json.dumps(asdict(r)) for r in records if r.method == method and r.task == task]
            _write_atomic(out / f"{method}-{task}.jsonl", "\n".join(lines) + "\n")
    results = summarize(records, settings["tree"]["depth"], settings["temperature"])
    done = len({(r.task, r.sample) for r in records})
    partial = {"samples_done": done, "samples_planned": planned} if done < planned else None
    write_summary(out, results, settings, partial)
    return results


def print_table(results: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="specflash bench")
    columns = ("task", "method", "speedup", "tau", "draft fwd/cycle", "tree tokens", "draft share", "tok/s", "= ar")
    for column in columns:
        table.add_column(column, justify="left" if column in ("task", "method") else "right")
    for r in results:
        equal = {True: "yes", False: "NO", None: "-"}[r["equal_to_ar"]]
        table.add_row(
            r["task"],
            r["method"],
            f"{r['speedup']:.2f}x",
            f"{r['tau']:.2f}",
            f"{r['draft_forwards_per_cycle']:.2f}",
            f"{r['tree_tokens_per_cycle']:.1f}",
            f"{r['draft_time_share']:.0%}",
            f"{r['tokens_per_s']:.1f}",
            equal,
        )
    console.print(table)


def plot(out: Path, results: list[dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    methods = list(dict.fromkeys(r["method"] for r in results))
    width = 0.8 / len(methods)
    written = []
    for key, label in (("speedup", "speed-up over plain decoding"), ("tau", "tokens per target forward (tau)")):
        figure, axes = plt.subplots(figsize=(1.5 + 1.6 * len(tasks), 3.5))
        for i, method in enumerate(methods):
            values = [next((r[key] for r in results if r["task"] == t and r["method"] == method), 0) for t in tasks]
            axes.bar([x + i * width for x in range(len(tasks))], values, width, label=method)
        axes.set_xticks([x + width * (len(methods) - 1) / 2 for x in range(len(tasks))], tasks)
        axes.set_ylabel(label)
        axes.axhline(1.0, color="grey", linewidth=0.8)
        axes.legend(fontsize="small")
        figure.tight_layout()
        path = out / f"{key}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    figure, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        for r in results:
            if r["task"] == task and r["alpha_by_depth"]:
                axis.plot(range(1, len(r["alpha_by_depth"]) + 1), r["alpha_by_depth"], marker="o", label=r["method"])
        axis.set_title(task)
        axis.set_xlabel("depth")
        axis.set_ylim(0, 1)
    axes[0][0].set_ylabel("acceptance rate")
    axes[0][-1].legend(fontsize="small")
    figure.tight_layout()
    path = out / "acceptance_by_depth.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    written.append(path)
    return written
