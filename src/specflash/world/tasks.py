"""Samples for the world tasks: what the bench, draft training and target training consume.

    from specflash.world.tasks import make_samples
    samples = make_samples("caption", "eval", n=100, seed=0)

`make_samples(task, split, n, seed) -> list[Sample]`, with task one of TASKS:
- "caption":  one image, "describe it in detail", a long answer (about 60-150 tokens);
- "instruct": one image (or two, for comparisons), 2-3 question turns: counting, colors, positions,
  existence, relations, open requests, comparisons of two scenes;
- "video":    a video of FRAMES frames, "narrate what happens", the events in order;
- "text":     text only (for text targets): a description in the prompt and questions about it, or a
  request to write a description.
A `Sample` holds `images` (PIL, in prompt order), `video` (list of PIL frames or None), `messages` in
the Hugging Face multimodal chat format
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ...}]},
     {"role": "assistant", "content": [{"type": "text", "text": ...}]}, ...]
(a video is a {"type": "video"} entry), and the facts: `scenes`, `events` (video) and one `Turn` per
assistant message (`turns[i].qtype`, `turns[i].value`; value None for free-form answers).

Splits: every sample is drawn from its own RNG keyed by "task/split/seed/index", so the "train" and
"eval" streams are independent by construction. Training only ever reads split "train"; every quality
number (world eval, bench) uses split "eval". The same arguments always give the same samples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from PIL import Image

from . import grammar, questions
from .questions import Turn
from .render import render_scene
from .scenes import Scene, sample_scene
from .video import Event, render_video, sample_video

TASKS = ("caption", "instruct", "video", "text")
SPLITS = ("train", "eval")
TWO_IMAGE_RATE = 0.25
SAME_TYPE_PARTNER_RATE = 0.4


@dataclass
class Sample:
    task: str
    images: list[Image.Image]
    video: list[Image.Image] | None
    messages: list[dict]
    scenes: list[Scene]
    turns: list[Turn]
    events: list[Event] = field(default_factory=list)
    key: str = ""


def _user(text: str, images: int = 0, video: bool = False) -> dict:
    content: list[dict] = [{"type": "image"} for _ in range(images)]
    if video:
        content.append({"type": "video"})
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _dialogue(turns: list[Turn], images: int = 0, video: bool = False, preamble: str = "") -> list[dict]:
    messages = []
    for i, turn in enumerate(turns):
        text = f"{preamble}{turn.question}" if i == 0 else turn.question
        messages.append(_user(text, images if i == 0 else 0, video and i == 0))
        messages.append(_assistant(turn.answer))
    return messages


def caption_sample(rng: random.Random, key: str) -> Sample:
    scene = sample_scene(rng)
    turn = Turn(grammar.caption_prompt(rng), grammar.caption(rng, scene), "kinds", frozenset(scene.kinds()))
    return Sample("caption", [render_scene(scene)], None, _dialogue([turn], images=1), [scene], [turn], key=key)


def instruct_sample(
    rng: random.Random, key: str, turns: tuple[int, int] = (2, 3), pairs: bool = True, task: str = "instruct"
) -> Sample:
    """One image (or, with `pairs`, sometimes two) and `turns` (min, max) question turns."""
    first = sample_scene(rng)
    if pairs and rng.random() < TWO_IMAGE_RATE:
        second = _partner(rng, first)
        names = rng.sample(tuple(questions.PAIR), rng.randint(2, 3))
        asked = [questions.PAIR[n](rng, first, second) for n in names]
        scenes = [first, second]
    else:
        names = rng.sample(tuple(questions.SINGLE), rng.randint(*turns))
        asked = [questions.SINGLE[n](rng, first) for n in names]
        scenes = [first]
    images = [render_scene(s) for s in scenes]
    return Sample(task, images, None, _dialogue(asked, images=len(images)), scenes, asked, key=key)


def _partner(rng: random.Random, first: Scene) -> Scene:
    """The second scene of a comparison: sometimes of the first one's type, so "same kind of place?" is
    not always no."""
    partner_type = first.scene_type if rng.random() < SAME_TYPE_PARTNER_RATE else None
    return sample_scene(rng, scene_type=partner_type)


def video_sample(rng: random.Random, key: str) -> Sample:
    video = sample_video(rng)
    turn = Turn(grammar.video_prompt(rng), grammar.narrate(rng, video), "events", tuple(e.key() for e in video.events))
    return Sample(
        "video",
        [],
        render_video(video),
        _dialogue([turn], video=True),
        [video.start],
        [turn],
        events=video.events,
        key=key,
    )


def text_sample(
    rng: random.Random, key: str, turns: tuple[int, int] = (1, 2), free: bool = True, task: str = "text"
) -> Sample:
    """A description and `turns` (min, max) questions about it, or (with `free`, sometimes) a request to
    write one."""
    scene = sample_scene(rng)
    if free and rng.random() < 0.25:
        t = scene.scene_type
        ask = grammar.pick(
            rng, (f"Write a detailed description of {grammar.article(t)} {t}.", f"Describe an imaginary {t} in detail.")
        )
        turn = Turn(ask, grammar.caption(rng, scene), "free", None)
        return Sample(task, [], None, _dialogue([turn]), [scene], [turn], key=key)
    names = rng.sample(tuple(questions.SINGLE), rng.randint(*turns))
    asked = [questions.SINGLE[n](rng, scene) for n in names]
    preamble = grammar.pick(rng, ("{}\n", "Read this description: {}\nQuestion: ", "{} "))
    messages = _dialogue(asked, preamble=preamble.format(grammar.caption(rng, scene)))
    return Sample(task, [], None, messages, [scene], asked, key=key)


BUILDERS = {"caption": caption_sample, "instruct": instruct_sample, "video": video_sample, "text": text_sample}
# Training only (split "train"): many question turns about one scene, so more of each sequence is
# answers that must be looked up in the image (or the description) rather than read off in order.
DRILL_TURNS = (5, 7)


def drill_sample(rng: random.Random, key: str) -> Sample:
    return instruct_sample(rng, key, DRILL_TURNS, pairs=False, task="drill")


def pair_drill_sample(rng: random.Random, key: str) -> Sample:
    """Two scenes and DRILL_TURNS comparisons: which has more objects, whether they are the same kind of
    place, and which shows a named kind (no question twice), in random order. In instruct samples only one
    in TWO_IMAGE_RATE is a pair, too few for the answers "both" and "neither" to be learned."""
    first = sample_scene(rng)
    second = _partner(rng, first)
    asked = [questions.compare_more(rng, first, second), questions.compare_place(rng, first, second)]
    wanted = rng.randint(*DRILL_TURNS)
    seen: set[str] = set()
    # compare_which picks its kind among the scenes' kinds and one random kind; a bounded number of
    # draws keeps a pair of near-empty scenes from looping.
    for _ in range(8 * wanted):
        if len(asked) == wanted:
            break
        turn = questions.compare_which(rng, first, second)
        if turn.question not in seen:
            seen.add(turn.question)
            asked.append(turn)
    rng.shuffle(asked)
    scenes = [first, second]
    images = [render_scene(s) for s in scenes]
    return Sample("pair-drill", images, None, _dialogue(asked, images=2), scenes, asked, key=key)


def text_drill_sample(rng: random.Random, key: str) -> Sample:
    return text_sample(rng, key, DRILL_TURNS, free=False, task="text-drill")


DRILLS = {"drill": drill_sample, "pair-drill": pair_drill_sample, "text-drill": text_drill_sample}


def make_sample(task: str, split: str, seed: int, index: int) -> Sample:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if task in DRILLS and split != "train":
        raise ValueError(f"{task!r} is a training-only task (split 'train')")
    builder = BUILDERS.get(task) or DRILLS.get(task)
    if builder is None:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    key = f"{task}/{split}/{seed}/{index}"
    return builder(random.Random(key), key)


def make_samples(task: str, split: str, n: int, seed: int) -> list[Sample]:
    """n samples of a task from a split; deterministic in (task, split, seed)."""
    return [make_sample(task, split, seed, i) for i in range(n)]
