"""The draft training loop (accelerate: one process on CPU, `accelerate launch` for several GPUs).

The target stays frozen and lends its embedding (to rebuild e) and LM head (for the soft cross-entropy
and accuracy). Everything random is a function of (seed, step) or (seed, epoch), and the loop position is
the step count, so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from specflash.draft import Draft
from specflash.draft.model import Predictions
from specflash.schedule import warmup_cosine
from specflash.targets import Target
from specflash.train.checkpoint import (
    OPTIMIZER_FILE,
    checkpoint_dirs,
    load_optimizer_moments,
    load_state,
    save_checkpoint,
)
from specflash.train.config import RunConfig, TrainConfig
from specflash.train.data import Batch, check_store_fits, collate, epoch_order, split_samples
from specflash.train.losses import SlotLosses, slot_losses
from specflash.train.store import FeatureStore

RUN_CONFIG_FILE = "run_config.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"


@dataclass
class TrainResult:
    out: Path  # the final draft directory
    steps: int
    losses: list[float]  # per step, this run's and (on resume) the earlier ones
    eval: dict[str, Any]  # the final held-out evaluation


class SequenceForward(torch.nn.Module):
    """`Draft.forward_sequence` as a module's forward, so a DDP wrapper (several GPUs) sees the call and
    synchronises gradients."""

    def __init__(self, draft: Draft) -> None:
        super().__init__()
        self.draft = draft

    def forward(
        self,
        features: torch.Tensor,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        spans: list,
        group_roots: torch.Tensor | None,
    ) -> list[Predictions]:
        return self.draft.forward_sequence(features, embeds, attention_mask, spans, group_roots)


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    return config.lr * warmup_cosine(step, total, config.warmup_steps, config.min_lr_ratio)


class Trainer:
    def __init__(
        self, target: Target, data: str | Path, out: str | Path, config: RunConfig | None = None, resume: bool = False
    ) -> None:
        self.target, self.out = target, Path(out)
        self.store = FeatureStore(data)
        check_store_fits(self.store, target)
        self.config, self.checkpoint = self._run_config(config, resume)
        settings = self.config.train
        # With compression, a batch without media leaves the compressor unused: DDP must be told.
        unused = DistributedDataParallelKwargs(find_unused_parameters=self.config.draft.latents > 0)
        self.accelerator = Accelerator(
            mixed_precision=settings.mixed_precision, cpu=target.device.type == "cpu", kwargs_handlers=[unused]
        )
        target.model.requires_grad_(False)
        self.train_ids, self.eval_ids = split_samples(len(self.store), settings.eval_fraction, settings.seed)
        self.global_batch = settings.batch_size * self.accelerator.num_processes
        if len(self.train_ids) < self.global_batch:
            raise ValueError(f"{len(self.train_ids)} training samples are fewer than one batch of {self.global_batch}")
        self.steps_per_epoch = len(self.train_ids) // self.global_batch  # the incomplete last batch is dropped
        self.total_steps = settings.steps or settings.epochs * self.steps_per_epoch
        self.slot_weights = settings.weights_for(self.config.draft.k)

    def _run_config(self, config: RunConfig | None, resume: bool) -> tuple[RunConfig, Path | None]:
        saved = self.out / RUN_CONFIG_FILE
        checkpoints = checkpoint_dirs(self.out)
        if not resume:
            if checkpoints or (self.out / "model.safetensors").exists():
                raise ValueError(f"{self.out} already holds a training run; pass --resume or another --out")
            return config or RunConfig(), None
        if not saved.is_file():
            raise ValueError(f"nothing to resume in {self.out}: {RUN_CONFIG_FILE} is missing")
        previous = RunConfig.from_json(saved)
        if config is not None and config.to_dict() != previous.to_dict():
            raise ValueError(f"the config differs from the one {self.out} was started with; resume with the same one")
        return previous, checkpoints[-1] if checkpoints else None

    def _draft_and_optimizer(self) -> tuple[Draft, torch.optim.Optimizer, int]:
        settings = self.config.train
        if self.checkpoint is None:
            draft = Draft.for_target(self.target, self.config.draft, seed=settings.seed).float()
        else:
            draft = Draft.from_pretrained(self.checkpoint, device=self.target.device, dtype=torch.float32)
            draft.check_target(self.target)
        draft.train()
        optimizer = torch.optim.AdamW(
            draft.parameters(), lr=settings.lr, betas=(0.9, 0.95), weight_decay=settings.weight_decay
        )
        step = 0
        if self.checkpoint is not None:
            load_optimizer_moments(draft, optimizer, self.checkpoint / OPTIMIZER_FILE)
            step = load_state(self.checkpoint)["step"]
        return draft, optimizer, step

    def batch_for(self, step: int) -> tuple[list[int], Batch]:
        """This process's share of the global batch of `step`: sample numbers and the batch."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = epoch_order(self.train_ids, self.config.train.seed, epoch)
        chosen = order[position * self.global_batch : (position + 1) * self.global_batch]
        mine = chosen[self.accelerator.process_index :: self.accelerator.num_processes]
        return mine, collate(self.target, [self.store[n] for n in mine])

    def _losses(self, model: torch.nn.Module, batch: Batch, step: int | None) -> list[SlotLosses]:
        """Losses of the teacher-forced pass and, with group_pass_weight > 0, of the rehearsed group pass;
        the first element's `total` is the weighted sum of both."""
        settings = self.config.train
        inputs = batch.features
        if step is not None and settings.noise_std > 0:
            seed = (settings.seed * 1_000_003 + step) * 64 + self.accelerator.process_index
            generator = torch.Generator(device=inputs.device).manual_seed(seed)
            noise = torch.randn(inputs.shape, generator=generator, device=inputs.device)
            inputs = inputs + settings.noise_std * noise
        roots = group_roots(batch) if settings.group_pass_weight > 0 else None
        with self.accelerator.autocast():
            passes = model(inputs, batch.embeds, batch.attention_mask, batch.spans, roots)
            results = [
                slot_losses(
                    predictions,
                    batch.features,
                    batch.loss_mask,
                    batch.attention_mask,
                    self._logits,
                    self.slot_weights,
                    settings.w_smooth_l1,
                    settings.w_ce,
                )
                for predictions in passes
            ]
        if len(results) > 1:
            results[0].total = results[0].total + settings.group_pass_weight * results[1].total
        return results

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.target.logits(features.to(self.target.dtype))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        """Per-slot top-1 agreement (LM-head argmax of f_hat_i vs of the true f) and loss on held-out samples."""
        k = self.config.draft.k
        passes = 2 if self.config.train.group_pass_weight > 0 else 1
        correct, counted, loss, batches = [0] * (k * passes), [0] * (k * passes), 0.0, 0
        was_training = model.training
        model.eval()
        size = self.config.train.batch_size
        mine = self.eval_ids[self.accelerator.process_index :: self.accelerator.num_processes]
        for first in range(0, len(mine), size):
            batch = collate(self.target, [self.store[n] for n in mine[first : first + size]])
            results = self._losses(model, batch, None)
            correct = [a + b for a, b in zip(correct, _flat(results, "correct"), strict=True)]
            counted = [a + b for a, b in zip(counted, _flat(results, "counted"), strict=True)]
            loss, batches = loss + float(results[0].total), batches + 1
        model.train(was_training)
        totals = self.accelerator.reduce(
            torch.tensor([*correct, *counted, loss, batches], dtype=torch.float64, device=self.accelerator.device),
            "sum",
        ).tolist()
        slots = k * passes
        correct, counted = totals[:slots], totals[slots : 2 * slots]
        accuracy = _accuracy(correct, counted)
        report = {
            "samples": len(self.eval_ids),
            "accuracy": accuracy[:k],
            "predictions": [int(n) for n in counted[:k]],
            "loss": totals[-2] / totals[-1] if totals[-1] else 0.0,
        }
        if passes > 1:
            report["group_accuracy"] = accuracy[k:]
        return report

    def run(self, show_progress: bool = False) -> TrainResult:
        accelerator, settings = self.accelerator, self.config.train
        main = accelerator.is_main_process
        draft, optimizer, start = self._draft_and_optimizer()
        model, optimizer = accelerator.prepare(SequenceForward(draft), optimizer)
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.config.to_json(self.out / RUN_CONFIG_FILE)
            for name in (METRICS_FILE, EVAL_FILE):
                _truncate_log(self.out / name, start)
        losses = [json.loads(line)["loss"] for line in _lines(self.out / METRICS_FILE)]
        columns = (
            TextColumn("[bold]train[/] {task.fields[info]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not (show_progress and main)) as progress:
            task = progress.add_task("train", total=self.total_steps, completed=start, info="")
            for step in range(start, self.total_steps):
                lr = lr_at(step, self.total_steps, settings)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                samples, batch = self.batch_for(step)
                results = self._losses(model, batch, step)
                result = results[0]
                accelerator.backward(result.total)
                if settings.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), settings.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                loss = float(accelerator.reduce(result.total.detach(), "mean"))
                losses.append(loss)
                done = step + 1
                if main:
                    _append(
                        self.out / METRICS_FILE,
                        {
                            "step": done,
                            "epoch": step // self.steps_per_epoch,
                            "loss": loss,
                            "lr": lr,
                            "samples": samples,
                            "smooth_l1": result.smooth_l1,
                            "cross_entropy": result.cross_entropy,
                            "accuracy": _accuracy(result.correct, result.counted),
                            **(
                                {"group_accuracy": _accuracy(results[1].correct, results[1].counted)}
                                if len(results) > 1
                                else {}
                            ),
                        },
                    )
                progress.update(task, advance=1, info=f"loss {loss:.4f}")
                if (settings.save_every and done % settings.save_every == 0) or done == self.total_steps:
                    self._save(draft, optimizer, done)
        evaluation = self.evaluate(model) if self.eval_ids else {}
        if main:
            draft.save_pretrained(self.out)
            if evaluation:
                _append(self.out / EVAL_FILE, {"step": self.total_steps, **evaluation})
        accelerator.wait_for_everyone()
        return TrainResult(self.out, self.total_steps, losses, evaluation)

    def _save(self, draft: Draft, optimizer: torch.optim.Optimizer, step: int) -> None:
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            epoch, position = divmod(step, self.steps_per_epoch)
            state = {
                "step": step,
                "epoch": epoch,
                "batch_in_epoch": position,
                "seed": self.config.train.seed,
                "samples_seen": step * self.global_batch,
                "processes": self.accelerator.num_processes,
                "data_order": "epoch e: torch.randperm of the training split, generator seed*100003+e+1",
            }
            save_checkpoint(self.out, draft, _raw_optimizer(optimizer), state, self.config.train.keep_checkpoints)
        self.accelerator.wait_for_everyone()


def train(
    target: Target,
    data: str | Path,
    out: str | Path,
    config: RunConfig | None = None,
    resume: bool = False,
    show_progress: bool = False,
) -> TrainResult:
    """Train a draft for `target` on the features in `data`; the draft is written to `out`
    (config.json + model.safetensors), checkpoints to out/checkpoints/."""
    return Trainer(target, data, out, config, resume).run(show_progress)


def group_roots(batch: Batch) -> torch.Tensor:
    """[B, L] bool: positions t whose rehearsed tree group drafts assistant tokens (t+2 is one)."""
    roots = torch.zeros_like(batch.loss_mask)
    roots[:, :-2] = batch.loss_mask[:, 2:] & batch.attention_mask[:, 2:].bool()
    return roots


def _accuracy(correct: list[float], counted: list[float]) -> list[float]:
    """Per-slot share of counted predictions that were correct (0 where none counted)."""
    return [c / n if n else 0.0 for c, n in zip(correct, counted, strict=True)]


def _flat(results: list[SlotLosses], field: str) -> list[int]:
    return [value for result in results for value in getattr(result, field)]


def _raw_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    return getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _truncate_log(path: Path, step: int) -> None:
    """Drop entries past `step`: a killed run may have logged steps its last checkpoint does not hold."""
    kept = [line for line in _lines(path) if json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


def _append(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")
