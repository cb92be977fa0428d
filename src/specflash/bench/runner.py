"""Runs every method on every sample of every task, interleaved, and records what each run measured.

Plain decoding ("ar") always runs and is the baseline. Per sample the methods run in an order that
rotates with the sample index, so slow drift of the machine (heat, other load) does not favour one
method. Each method is warmed up once (untimed) before the first timed run, which is also when an
adaptive tree measures this machine's cycle cost. Timed: the whole call, vision encoding and prefill
included (prefill_time says how much of it that was).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from specflash.draft import Draft
from specflash.generate import GenerationResult, SpeculativeGenerator, autoregressive_generate
from specflash.pipeline import Pipeline
from specflash.tree import TreeConfig
from specflash.world.tasks import TASKS, Sample, make_samples

AR = "ar"
# What --tasks means when not given: the image tasks, or `text` on a text-only target.
IMAGE_TASKS = ("caption", "instruct", "video")


@dataclass
class Record:
    method: str
    task: str
    sample: int
    new_tokens: int
    wall_time: float
    prefill_time: float
    draft_time: float
    verify_time: float
    cycles: int
    draft_forwards: int
    accept_lengths: list[int]
    draft_accepted: list[int]
    tree_sizes: list[int]
    token_ids: list[int]


def parse_tasks(text: str | None) -> list[str]:
    """--tasks as a list without repeats, unknown names refused before any model loads; empty when not given."""
    tasks = list(dict.fromkeys(t.strip() for t in (text or "").split(",") if t.strip()))
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(map(repr, unknown))}; known: {', '.join(TASKS)}")
    return tasks


def tasks_for(pipeline: Pipeline, tasks: list[str]) -> list[str]:
    """The tasks to run on this target: those asked for, else its default. `text` runs on any target (an
    image target takes text-only prompts); image tasks on a text-only target are refused, not dropped."""
    if not tasks:
        return list(IMAGE_TASKS) if pipeline.takes_images else ["text"]
    needs_images = [t for t in tasks if t != "text"]
    if needs_images and not pipeline.takes_images:
        raise ValueError(
            f"task(s) {', '.join(needs_images)} need images, but target {pipeline.target_name!r} is a text-only "
            "model; it takes --tasks text"
        )
    return tasks


def _prompt(sample: Sample) -> list[dict]:
    """The conversation up to its last assistant answer, which the methods then generate."""
    last = max(i for i, m in enumerate(sample.messages) if m["role"] == "assistant")
    return sample.messages[:last]


class Bench:
    def __init__(
        self,
        pipeline: Pipeline,
        drafts: dict[str, Draft],
        tree: TreeConfig,
        max_new_tokens: int,
        temperature: float,
        seed: int,
    ) -> None:
        self.pipeline = pipeline
        self.methods = [AR, *drafts]
        self.generators = {name: SpeculativeGenerator(pipeline.target, d, tree) for name, d in drafts.items()}
        self.options = dict(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        self.sizing_times: dict[str, float] = {}  # method -> seconds its warm-up spent measuring the cycle cost

    def _run(self, method: str, inputs: object) -> GenerationResult:
        if method == AR:
            return autoregressive_generate(self.pipeline.target, inputs, **self.options)
        return self.generators[method].generate(inputs, **self.options)

    def run(self, tasks: list[str], n: int, seed: int) -> Iterator[list[Record]]:
        """Yields the records so far after each sample, once every method has run it, so the caller can
        save finished work as it goes."""
        records: list[Record] = []
        for task in tasks:
            samples = make_samples(task, "eval", n, seed)
            encoded = [self.pipeline.encode(_prompt(s), s.images, s.video) for s in samples]
            for method in self.methods:
                warm_up = self._run(method, encoded[0])  # untimed
                if warm_up.stats.sizing_time:
                    self.sizing_times[method] = warm_up.stats.sizing_time
            for index, inputs in enumerate(encoded):
                shift = index % len(self.methods)
                for method in self.methods[shift:] + self.methods[:shift]:
                    result = self._run(method, inputs)
                    stats = result.stats
                    records.append(
                        Record(
                            method,
                            task,
                            index,
                            stats.new_tokens,
                            stats.wall_time,
                            stats.prefill_time,
                            stats.draft_time,
                            stats.verify_time,
                            stats.cycles,
                            stats.draft_forwards,
                            stats.accept_lengths[0],
                            stats.draft_accepted,
                            stats.tree_sizes,
                            result.new_token_ids[0],
                        )
                    )
                yield records

    def cycle_costs(self) -> dict[str, dict]:
        """What each adaptive tree measured: the seconds spent and the cost curve, by method."""
        return {
            name: {
                "sizing_time": self.sizing_times.get(name, 0.0),
                "draft_seconds": cost.draft,
                "verify_seconds_by_nodes": list(cost.verify),
            }
            for name, generator in self.generators.items()
            for cost in generator.measured.values()
        }
