"""Train a world target from scratch, with progress and resumable checkpoints.

The data stream is a pure function of (seed, sample index), so a checkpoint only needs the weights,
the optimizer moments (safetensors) and a JSON state (step, next sample index, elapsed time)."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file
from transformers.utils import logging as hf_logging

from ..schedule import warmup_cosine
from .build import MODEL_CLASSES, family_of, init_model, write_model_files
from .data_parallel import SINGLE, Group, run_parallel
from .lookup_attention import in_row, lookup_loss, lookup_targets, targeted_queries
from .packing import pack, use_packed_attention
from .processing import assistant_labels, encode, load_processor, tokenizer_of
from .tasks import Sample, make_sample
from .video_changes import change_labels, change_loss
from .vision_speed import use_fast_vision
from .vision_warmup import WARMUP_BATCH, projector_parameters, vision_parameters, warmup_vision

TASK_MIX = {
    "llava": {"caption": 0.5, "instruct": 0.5},
    # questions and video both past their bars in one run (session 15, docs/world.md); captions need few
    "qwen": {"caption": 0.15, "instruct": 0.3, "drill": 0.2, "pair-drill": 0.05, "video": 0.3},
    "text": {"text": 1.0},
}

# What each family can read: the text target sees no images, only the Qwen target sees video.
FAMILY_TASKS = {
    "llava": {"caption", "instruct", "drill", "pair-drill"},
    "qwen": {"caption", "instruct", "video", "drill", "pair-drill"},
    "text": {"text", "text-drill"},
}

IMAGE_QUESTION_TASKS = {"instruct", "drill", "pair-drill"}  # the samples the lookup loss has targets in
# Stage 2's length and peak rate. Qwen2.5-VL 3600 steps until session 23: packed batches made its steps
# cheap, and 4800 lifted questions from 0.844 to 0.908 over ten seeds (docs/world.md, "Packed batches").
# 3600 at 3e-3 passed on training seed 0 but not on seed 1, where 4800 at 2e-3 did ("Fewer steps at a
# higher rate").
DEFAULT_STEPS = {"world-llava-tiny": 4800, "world-qwen-tiny": 4800, "world-text-tiny": 1500}
DEFAULT_LR = {"world-llava-tiny": 2e-3, "world-qwen-tiny": 2e-3, "world-text-tiny": 2e-3}
# On for the image targets (LLaVA's question accuracy 0.61 -> 0.87, docs/world.md).
LOOKUP_LOSS_WEIGHT = {"world-llava-tiny": 1.0, "world-qwen-tiny": 1.0, "world-text-tiny": 0.0}
# Long enough for the per-cell kind accuracy of the warm-up head to pass 0.9 on held-out scenes (the
# Qwen2.5-VL warm-up spends half its steps on frame pairs, whose tokens also say what changed).
VISION_STEPS = {"llava": 4000, "qwen": 3000, "text": 0}
# The vision side's stage-2 rate as a fraction of the language model's. 0 freezes it: a Qwen2.5-VL
# stage-2 step then takes a quarter to a third less time, at a cost in quality (docs/world.md, session 20).
VISION_LR_SCALE = 0.1
# Stage 2 trains only the projector of the Qwen2.5-VL vision side: a step takes a sixth to a fifth less time
# and the run keeps its quality (docs/world.md, session 21; not tried for LLaVA).
FREEZE_VISION_TOWER = {"llava": False, "qwen": True, "text": False}


@dataclass
class TrainConfig:
    name: str
    out: str
    size: str = "tiny"
    # Stage 2's length and peak rate. None: the recipe's (DEFAULT_STEPS, DEFAULT_LR), or a resumed run's
    # own, so that a run interrupted after a change of recipe still ends as it started.
    steps: int | None = None
    batch: int = 16
    lr: float | None = None
    warmup: int = 100
    seed: int = 0
    save_every: int = 200
    # Stage 2 moves the warmed-up vision side slowly, so gradients through a still-random language
    # model do not wash out what it learned. None: VISION_LR_SCALE, or a resumed run's own.
    vision_lr_scale: float | None = None
    # Stage 2 trains only the vision side's projector (at the vision rate) and freezes the tower, whose
    # backward pass is then skipped. None: the recipe's FREEZE_VISION_TOWER, or a resumed run's own.
    freeze_vision_tower: bool | None = None
    vision_steps: int | None = None  # None: the recipe's VISION_STEPS
    device: str = "cpu"
    mix: dict[str, float] | None = None  # task -> share of samples; None: the family's TASK_MIX
    # Video target: weight of the change loss (video_changes.py). Off by default: at weight 1 it doubled
    # video event accuracy but cost the captions and answers more than that (docs/world.md).
    change_loss_weight: float = 0.0
    # Image targets: weight of the lookup loss (lookup_attention.py), which teaches two attention hops from
    # a question's names to their objects and from the answer to the names. None: the recipe's
    # (default_lookup_loss_weight), or a resumed run's own; 0 is off.
    lookup_loss_weight: float | None = None


def _task_for(mix: dict[str, float], seed: int, index: int) -> str:
    tasks, weights = zip(*mix.items(), strict=True)
    return random.Random(f"mix/{seed}/{index}").choices(tasks, weights)[0]


def task_mix(name: str, mix: dict[str, float] | None) -> dict[str, float]:
    """The mix a run of target `name` trains on (None: its recipe's), checked against what it can read."""
    family = family_of(name)
    if mix is None:
        return dict(TASK_MIX[family])
    unreadable = sorted(set(mix) - FAMILY_TASKS[family])
    if unreadable:
        known = ", ".join(sorted(FAMILY_TASKS[family]))
        raise ValueError(f"{name} cannot train on {', '.join(unreadable)}; its tasks: {known}")
    if not mix:
        raise ValueError("a mix needs at least one task")
    for task, share in mix.items():
        if not (math.isfinite(share) and share > 0):
            raise ValueError(f"share of {task!r} must be positive and finite, got {share}")
    return mix


def default_lookup_loss_weight(name: str, mix: dict[str, float] | None) -> float:
    """The recipe's lookup-loss weight for `name` training on `mix` (None: the recipe's), or 0 where the
    mix has no questions about images for the loss to act on."""
    return LOOKUP_LOSS_WEIGHT[name] if task_mix(name, mix).keys() & IMAGE_QUESTION_TASKS else 0.0


def recipe_schedule(name: str) -> dict[str, int | float]:
    """The recipe's stage-2 steps and peak rate for target `name`."""
    return {"steps": DEFAULT_STEPS[name], "lr": DEFAULT_LR[name]}


def _check_finite_non_negative(what: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be finite and >= 0, got {value}")


def check_losses(
    name: str, change_loss_weight: float, lookup_loss_weight: float | None, mix: dict[str, float] | None
) -> None:
    """Refuse a weight that is not finite and >= 0, and an extra loss that the run's mix (None: the
    recipe's) has no samples for: the change loss needs videos, the lookup loss questions about images.
    A lookup weight of None is the recipe's, which fits every mix."""
    lookup_loss_weight = lookup_loss_weight or 0.0
    for option, weight in (("change", change_loss_weight), ("lookup", lookup_loss_weight)):
        _check_finite_non_negative(f"the {option}-loss weight", weight)
    tasks = FAMILY_TASKS[family_of(name)]
    if change_loss_weight > 0 and "video" not in tasks:
        raise ValueError(f"the change loss needs video; {name} does not read video")
    if lookup_loss_weight > 0 and not tasks & IMAGE_QUESTION_TASKS:
        raise ValueError(f"the lookup loss needs images; {name} does not read images")
    shares = task_mix(name, mix)
    if change_loss_weight > 0 and "video" not in shares:
        raise ValueError("the change loss needs video samples; add video to the mix")
    if lookup_loss_weight > 0 and not shares.keys() & IMAGE_QUESTION_TASKS:
        raise ValueError("the lookup loss needs questions about images; add instruct, drill or pair-drill to the mix")


def check_vision_lr_scale(scale: float | None) -> None:
    """Refuse a vision rate scale that is not finite and >= 0 (None is the default's or the run's own)."""
    if scale is not None:
        _check_finite_non_negative("the vision rate scale", scale)


class ResumeMismatch(ValueError):
    """A checkpoint was trained on another data stream than the options given now."""


# What fixes the data stream and model: a resumed run must keep them (steps, rates and device may change).
STREAM_FIELDS = ("name", "size", "seed", "batch", "mix", "change_loss_weight", "lookup_loss_weight")
# Before the first stage-2 step only the warm-up has run, which these alone fix (the warm-up has its own
# batch and optimizer, and the extra losses start after it).
WARMUP_FIELDS = ("name", "size", "seed")


def _resumed_config(saved: dict, cfg: TrainConfig, ckpt: Path, step: int) -> TrainConfig:
    """cfg with the mix resolved (without --mix, the mix the run started with); refuses options that
    would change the data stream or the model of a checkpoint at stage-2 step `step` (at step 0, the
    stage-2 options are free). Without --mix, a lookup weight, a vision rate scale or a tower freeze, the
    run keeps its own; without steps or a rate, too, unless it was a warm-up-only run."""
    # a checkpoint from before these options existed was trained without the extra losses, at the
    # default vision rate, with the whole vision side training
    defaults = {"vision_lr_scale": VISION_LR_SCALE, "freeze_vision_tower": False}
    saved = {"change_loss_weight": 0.0, "lookup_loss_weight": 0.0, **defaults, **saved}
    saved = {**saved, "mix": task_mix(saved["name"], saved.get("mix"))}
    kept = {f: saved[f] for f in ("lookup_loss_weight", *defaults) if getattr(cfg, f) is None}
    # a warm-up-only run (--steps 0) goes on with today's recipe, a run with stage-2 steps as it started
    schedule = saved if saved["steps"] else recipe_schedule(cfg.name)
    kept |= {f: schedule[f] for f in ("steps", "lr") if getattr(cfg, f) is None}
    cfg = replace(cfg, mix=task_mix(cfg.name, cfg.mix if cfg.mix is not None else saved["mix"]), **kept)
    changed = [f for f in (STREAM_FIELDS if step else WARMUP_FIELDS) if saved[f] != getattr(cfg, f)]
    if changed:
        was = ", ".join(f"{f}={saved[f]!r}" for f in changed)
        raise ResumeMismatch(f"{ckpt} was trained with {was}; pass the same options, or --no-resume to start over")
    return cfg


def _batch(processor, cfg: TrainConfig, indices: Sequence[int]) -> tuple[dict[str, torch.Tensor], list[Sample]]:
    """The samples at `indices` and their inputs; cfg.mix is resolved by train() before the first step."""
    assert cfg.mix is not None
    samples = [make_sample(_task_for(cfg.mix, cfg.seed, i), "train", cfg.seed, i) for i in indices]
    inputs = encode(processor, [s.messages for s in samples], [s.images for s in samples], [s.video for s in samples])
    inputs["labels"] = assistant_labels(inputs["input_ids"], tokenizer_of(processor))
    return {name: value.to(cfg.device) for name, value in inputs.items()}, samples


def answer_loss(model, hidden: torch.Tensor, labels: torch.Tensor, total: torch.Tensor | None = None) -> torch.Tensor:
    """The causal LM loss of the labelled tokens, with the output head applied at the positions that
    predict them alone (the model's own loss computes logits at every position, most of which it
    ignores). With `total` the summed cross-entropy is divided by it instead of averaged."""
    targets = labels[:, 1:]
    predicting = targets != -100
    logits = model.lm_head(hidden[:, :-1][predicting])
    summed = torch.nn.functional.cross_entropy(logits.float(), targets[predicting], reduction="sum")
    return summed / (predicting.sum() if total is None else total)


def _loss(model, processor, cfg: TrainConfig, start: int, group: Group = SINGLE) -> torch.Tensor:
    """The answer loss of the batch from sample `start` on, plus the weighted change loss
    (video_changes.py) and lookup loss (lookup_attention.py) where they are on. The batch runs packed
    (packing.py; the model runs use_packed_attention). A process of a data-parallel group computes its
    share, with every sum divided by the whole batch's count, so that the processes' losses add up to
    the batch's."""
    batch, samples = _batch(processor, cfg, group.share(range(start, start + cfg.batch)))
    # check_losses (in train) refused a loss that the run's samples have no inputs for
    changes, lookups = cfg.change_loss_weight > 0, cfg.lookup_loss_weight > 0
    tokenizer = tokenizer_of(processor)
    if changes:
        batch["change_labels"] = change_labels(batch["input_ids"], samples, tokenizer, model.config.video_token_id)
    if lookups:
        targets = lookup_targets(batch["input_ids"], batch["labels"], samples, tokenizer, model.config.image_token_id)
    answers = lookup_total = change_total = None  # None: each loss is the mean over this batch
    if group.size > 1:
        counts = [
            (batch["labels"][:, 1:] != -100).sum().item(),  # the tokens the answer loss predicts
            targeted_queries(targets) if lookups else 0,
            (batch["change_labels"] != -100).sum().item() if changes else 0,
        ]
        answers, lookup_total, change_total = group.total(torch.tensor(counts))
    packed = pack(model, batch)
    inputs = {k: v for k, v in packed.inputs.items() if k not in ("labels", "change_labels")}
    out = model.model(**inputs, output_hidden_states=changes, output_attentions=lookups)
    loss = answer_loss(model, out.last_hidden_state, packed.inputs["labels"], answers)
    if changes:
        loss = loss + cfg.change_loss_weight * change_loss(
            model, out.hidden_states, packed.inputs["change_labels"], change_total
        )
    if lookups:
        targets = [in_row(t, packed.starts[t.row]) for t in targets]
        loss = loss + cfg.lookup_loss_weight * lookup_loss(out.attentions, targets, lookup_total)
    return loss


def _optimizer(model, family: str, cfg: TrainConfig) -> torch.optim.AdamW:
    vision = {id(p) for p in vision_parameters(model, family)} if family != "text" else set()
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in vision], "scale": 1.0},
        {"params": [p for p in model.parameters() if id(p) in vision], "scale": cfg.vision_lr_scale},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.01)


def _save_checkpoint(model, optimizer, ckpt: Path, state: dict) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(ckpt)
    moments = {}
    for i, p in enumerate(model.parameters()):
        st = optimizer.state.get(p)
        if st:
            moments[f"{i}.exp_avg"], moments[f"{i}.exp_avg_sq"] = st["exp_avg"].cpu(), st["exp_avg_sq"].cpu()
            moments[f"{i}.step"] = st["step"].reshape(1).cpu()
    save_file(moments, ckpt / "optimizer.safetensors")
    (ckpt / "state.json").write_text(json.dumps(state, indent=2))


def set_rates(optimizer: torch.optim.Optimizer, cfg: TrainConfig, step: int) -> None:
    """Stage-2 rate of every group at `step`: the schedule times the group's scale."""
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * group["scale"] * warmup_cosine(step, cfg.steps, cfg.warmup)


def _log(progress: Progress, line: str) -> None:
    """A plain line above the bars: a log file (where rich draws the bars only once, at the end) still
    shows how a run of hours is going. Silent in the processes that draw no bars."""
    if not progress.disable:
        progress.console.print(line, highlight=False, markup=False, soft_wrap=True)


def _on_warmup_step(progress: Progress, task: TaskID, step: int, steps: int, loss: float, every: int) -> None:
    progress.update(task, advance=1, loss=f"{loss:.3f}")
    if (step + 1) % every == 0 or step + 1 == steps:
        _log(progress, f"vision warm-up {step + 1}/{steps}  loss {loss:.3f}")


def _stage_2_options(cfg: TrainConfig) -> str:
    assert cfg.mix is not None
    mix = ",".join(f"{task}={share:g}" for task, share in cfg.mix.items())
    weights = f"--lookup-loss-weight {cfg.lookup_loss_weight:g} --change-loss-weight {cfg.change_loss_weight:g}"
    options = f"--mix {mix} --batch {cfg.batch} --lr {cfg.lr:g} {weights}"
    if family_of(cfg.name) == "text":
        return options  # no vision side
    freeze = "--freeze-vision-tower" if cfg.freeze_vision_tower else "--no-freeze-vision-tower"
    return f"{options} --vision-lr-scale {cfg.vision_lr_scale:g} {freeze}"


def frozen_in_stage_2(model, family: str, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    """The vision parameters stage 2 leaves as the warm-up left them: all of them at vision rate scale
    0, all but the projector with freeze_vision_tower, else none."""
    if family == "text":
        return []
    if cfg.vision_lr_scale == 0:
        return vision_parameters(model, family)
    if cfg.freeze_vision_tower:
        projector = {id(p) for p in projector_parameters(model, family)}
        return [p for p in vision_parameters(model, family) if id(p) not in projector]
    return []


def _vision_steps(family: str, cfg: TrainConfig) -> int:
    if family == "text":
        return 0  # no vision side to warm up
    return VISION_STEPS[family] if cfg.vision_steps is None else cfg.vision_steps


def _load_checkpoint(family: str, ckpt: Path, cfg: TrainConfig):
    model = MODEL_CLASSES[family].from_pretrained(ckpt, dtype=torch.float32).to(cfg.device)
    optimizer = _optimizer(model, family, cfg)
    moments = load_file(ckpt / "optimizer.safetensors")
    for i, p in enumerate(model.parameters()):
        if f"{i}.exp_avg" in moments:
            optimizer.state[p] = {
                "exp_avg": moments[f"{i}.exp_avg"].to(p.device),
                "exp_avg_sq": moments[f"{i}.exp_avg_sq"].to(p.device),
                "step": moments[f"{i}.step"].reshape(()),
            }
    return model, optimizer


def train(cfg: TrainConfig, resume: bool = True, processes: int = 1) -> dict:
    """Train cfg.name into cfg.out (final weights there, checkpoints in out/checkpoint) in `processes`
    data-parallel processes (CPU only; each with this process's torch thread count). Returns the state."""
    # a resumed run without a mix keeps its own, which was checked when it started
    check_losses(cfg.name, cfg.change_loss_weight, cfg.lookup_loss_weight, cfg.mix)
    check_vision_lr_scale(cfg.vision_lr_scale)
    check_processes(processes, cfg.batch, cfg.device)
    out, ckpt = Path(cfg.out), Path(cfg.out) / "checkpoint"
    resumed = resume and (ckpt / "state.json").exists()
    if resumed:
        state = json.loads((ckpt / "state.json").read_text())
        cfg = _resumed_config(state["config"], cfg, ckpt, state["step"])
        state["config"] = asdict(cfg)  # a resumed run may extend the step count
    else:
        mix = task_mix(cfg.name, cfg.mix)
        recipe = {
            **recipe_schedule(cfg.name),
            "lookup_loss_weight": default_lookup_loss_weight(cfg.name, mix),
            "vision_lr_scale": VISION_LR_SCALE,
            "freeze_vision_tower": FREEZE_VISION_TOWER[family_of(cfg.name)],
        }
        cfg = replace(cfg, mix=mix, **{f: value for f, value in recipe.items() if getattr(cfg, f) is None})
        write_model_files(cfg.name, out)
        state = {"step": 0, "next_index": 0, "elapsed_s": 0.0, "config": asdict(cfg), "loss": None}
    if processes == 1:
        return _train(SINGLE, cfg, state, resumed)
    run_parallel(_train, processes, torch.get_num_threads(), cfg, state, resumed)
    return json.loads((out / "training_state.json").read_text())


def check_processes(processes: int, batch: int, device: str) -> None:
    """Refuse a process count that some process would have no samples at (of a stage-2 batch or a
    warm-up batch), or that is not on the CPU."""
    if not 1 <= processes <= min(batch, WARMUP_BATCH):
        raise ValueError(
            f"--processes must be between 1 and the batch size ({batch}; at most {WARMUP_BATCH}, the vision "
            f"warm-up's), got {processes}"
        )
    if processes > 1 and torch.device(device).type != "cpu":
        raise ValueError(f"data-parallel training (--processes {processes}) runs on the CPU only, not {device}")


def _train(group: Group, cfg: TrainConfig, state: dict, resumed: bool) -> dict:
    """One process's part of train(): all of it in a single process."""
    family = family_of(cfg.name)
    out, ckpt = Path(cfg.out), Path(cfg.out) / "checkpoint"
    if not group.main:
        hf_logging.disable_progress_bar()  # one bar for loading the checkpoint, not one per process
    if resumed:
        model, optimizer = _load_checkpoint(family, ckpt, cfg)
    else:
        model = init_model(cfg.name, cfg.size, out, cfg.seed).to(cfg.device)
        optimizer = _optimizer(model, family, cfg)
    processor = load_processor(out)
    model.train()
    use_fast_vision(model)
    use_packed_attention(model)  # stage 2's batches are packed
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    # one process of a data-parallel group reports for all
    with Progress(*columns, disable=not group.main) as progress:
        if resumed:
            # a run resumed without stage-2 options keeps its own, which may not be today's recipe
            _log(progress, f"resumed {ckpt} at step {state['step']}/{cfg.steps}: {_stage_2_options(cfg)}")
        vision_steps = _vision_steps(family, cfg)
        if "vision_loss" not in state and vision_steps:
            t0 = time.perf_counter()
            warm = progress.add_task(f"vision warm-up {cfg.name}", total=vision_steps, loss="-")
            warm_result = warmup_vision(
                model,
                family,
                processor.image_processor,
                cfg.seed,
                vision_steps,
                on_step=lambda step, loss: _on_warmup_step(progress, warm, step, vision_steps, loss, cfg.save_every),
                group=group,
            )
            state["vision_loss"] = warm_result["loss"]
            state["vision_token_kind_accuracy"] = warm_result["token_kind_accuracy"]
            state["vision_occupied_token_kind_accuracy"] = warm_result["occupied_token_kind_accuracy"]
            if "changed_token_accuracy" in warm_result:
                state["vision_changed_token_accuracy"] = warm_result["changed_token_accuracy"]
                state["vision_unchanged_token_accuracy"] = warm_result["unchanged_token_accuracy"]
            state["elapsed_s"] += time.perf_counter() - t0
            if group.main:
                _save_checkpoint(model, optimizer, ckpt, state)
        for p in frozen_in_stage_2(model, family, cfg):
            p.requires_grad_(False)  # no backward pass through them, and no optimizer moments
        if cfg.lookup_loss_weight > 0:
            # output_attentions reaches the vision tower too, whose sdpa attention would warn that it has
            # no weights to return: only the language model's are read
            hf_logging.get_logger("transformers.integrations.sdpa_attention").setLevel(hf_logging.ERROR)
        bar = progress.add_task(f"train {cfg.name}", total=cfg.steps, completed=state["step"], loss="-")
        ema = state["loss"]
        parameters = [p for p in model.parameters() if p.requires_grad]
        while state["step"] < cfg.steps:
            t0 = time.perf_counter()
            set_rates(optimizer, cfg, state["step"])
            loss = _loss(model, processor, cfg, state["next_index"], group)
            loss.backward()
            loss_value = group.sum_gradients(parameters, loss)
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema = loss_value if ema is None else 0.98 * ema + 0.02 * loss_value
            state.update(
                step=state["step"] + 1,
                next_index=state["next_index"] + cfg.batch,
                loss=ema,
                elapsed_s=state["elapsed_s"] + time.perf_counter() - t0,
            )
            progress.update(bar, advance=1, loss=f"{ema:.3f}")
            if group.main and (state["step"] % cfg.save_every == 0 or state["step"] == cfg.steps):
                _save_checkpoint(model, optimizer, ckpt, state)
                minutes = state["elapsed_s"] / 60
                _log(progress, f"step {state['step']}/{cfg.steps}  loss {ema:.3f}  {minutes:.1f} min  checkpoint saved")
    if group.main:
        model.save_pretrained(out)
        (out / "training_state.json").write_text(json.dumps(state, indent=2))
    return state
