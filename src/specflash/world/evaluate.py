"""Quality of a world target on held-out samples (split "eval").

- object_recall / object_precision: object kinds named in generated captions vs the scene's kinds;
- blind_object_recall: the same caption prompts given another sample's image, scored against the
  original scene: a target that reads the image scores far below its real recall;
- question_accuracy: each instruct (or, for text targets, text) turn answered with the reference
  history before it, parsed and compared to the true value;
- video_event_accuracy (video targets): narrated events, in order, that match the true ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from rich.progress import Progress

from .models import family_for, load, trained_path
from .parse import kinds_named, parse_answer, parse_events
from .processing import encode, tokenizer_of
from .tasks import Sample, make_samples

Prompt = tuple[list[dict], list, list | None]  # messages, images, video frames


@torch.inference_mode()
def generate(
    model,
    processor,
    prompts: list[Prompt],
    max_new_tokens: int,
    batch: int = 16,
    progress: Progress | None = None,
    label: str = "",
) -> list[str]:
    """Greedy answers, batched with left padding."""
    tok = tokenizer_of(processor)
    bar = progress.add_task(label, total=len(prompts)) if progress else None
    answers: list[str] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        inputs = encode(
            processor,
            [p[0] for p in chunk],
            [p[1] for p in chunk],
            [p[2] for p in chunk],
            add_generation_prompt=True,
            padding_side="left",
        )
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        new = out[:, inputs["input_ids"].shape[1] :]
        answers += tok.batch_decode(new, skip_special_tokens=True)
        if progress is not None and bar is not None:
            progress.advance(bar, len(chunk))
    return answers


def _caption_scores(samples: list[Sample], texts: list[str]) -> tuple[float, float]:
    hit = named = truth = 0
    for sample, text in zip(samples, texts, strict=True):
        said, real = set(kinds_named(text)), sample.scenes[0].kinds()
        hit, named, truth = hit + len(said & real), named + len(said), truth + len(real)
    return hit / max(1, truth), hit / max(1, named)


def _turn_prompts(samples: list[Sample]) -> tuple[list[Prompt], list[tuple[str, object]]]:
    prompts, expected = [], []
    for s in samples:
        for t, turn in enumerate(s.turns):
            if turn.value is not None:
                prompts.append((s.messages[: 2 * t + 1], s.images, s.video))
                expected.append((turn.qtype, turn.value))
    return prompts, expected


def check_target(target: str | Path) -> str:
    """The family of a trained world target; ValueError for any other model directory (a draft, say)."""
    path = trained_path(target)
    config = json.loads((path / "config.json").read_text())
    if "target_family" in config:  # written by Draft.save_pretrained, in drafts and their checkpoints
        raise ValueError(f"{path} is a draft for a {config['target_family']} target, not a target model")
    return family_for(path)


def evaluate(target: str | Path, n: int = 100, seed: int = 0, batch: int = 16) -> dict:
    check_target(target)
    model, processor, family = load(target)
    t0 = time.perf_counter()
    result: dict = {"target": str(target), "family": family, "n": n, "seed": seed, "split": "eval"}
    with Progress(transient=True) as progress:
        if family != "text":
            caps = make_samples("caption", "eval", n, seed)
            prompts = [(s.messages[:1], s.images, None) for s in caps]
            texts = generate(model, processor, prompts, 200, batch, progress, "captions")
            result["object_recall"], result["object_precision"] = _caption_scores(caps, texts)
            blind = [(s.messages[:1], caps[(i + 1) % n].images, None) for i, s in enumerate(caps)]
            blind_texts = generate(model, processor, blind, 200, batch, progress, "blind captions")
            result["blind_object_recall"], _ = _caption_scores(caps, blind_texts)
            result["caption_example"] = texts[0]
        qa = make_samples("text" if family == "text" else "instruct", "eval", n, seed)
        prompts, expected = _turn_prompts(qa)
        answers = generate(model, processor, prompts, 48, batch, progress, "questions")
        correct = [parse_answer(q, a) == v for (q, v), a in zip(expected, answers, strict=True)]
        result["question_accuracy"] = sum(correct) / max(1, len(correct))
        result["questions"] = len(correct)
        by_type: dict[str, list[bool]] = {}
        for (qtype, _), ok in zip(expected, correct, strict=True):
            by_type.setdefault(qtype, []).append(ok)
        result["question_accuracy_by_type"] = {q: sum(oks) / len(oks) for q, oks in sorted(by_type.items())}
        if family == "qwen":
            vids = make_samples("video", "eval", n, seed)
            texts = generate(
                model, processor, [(s.messages[:1], [], s.video) for s in vids], 160, batch, progress, "videos"
            )
            hits = total = 0
            for s, text in zip(vids, texts, strict=True):
                said, real = parse_events(text), [e.key() for e in s.events]
                hits += sum(a == b for a, b in zip(said, real, strict=False))
                total += max(len(real), len(said))
            result["video_event_accuracy"] = hits / max(1, total)
            result["video_example"] = texts[0]
    result["eval_seconds"] = time.perf_counter() - t0
    return result
