"""Texts about scenes and videos, from a small grammar with real variety: synonyms, clause orders and
sentence styles are drawn at random, so answers carry entropy while every fact they state is true.
`parse.py` reads the facts back."""

from __future__ import annotations

import random
from collections.abc import Sequence

from .scenes import KIND_NAMES, Scene, WorldObject, relation
from .video import Event, Video

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ROW_WORDS = {0: ("top", "upper"), 2: ("bottom", "lower")}
COL_WORDS = {0: "left", 2: "right"}
REL_PHRASES = {
    "left of": ("to the left of", "left of"),
    "right of": ("to the right of", "right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
TEXTURES = {
    "kitchen": ("square tiles", "a tiled wall"),
    "park": ("short grass", "a green lawn"),
    "office": ("grey planks", "a striped desk"),
    "beach": ("sand with little waves", "a sandy shore"),
    "bedroom": ("dotted wallpaper", "a dotted wall"),
    "street": ("a grey road with lane marks", "grey asphalt"),
    "playroom": ("a checkered floor", "square floor tiles"),
}


def pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[rng.randrange(len(options))]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def cap(text: str) -> str:
    return text[0].upper() + text[1:]


def name(rng: random.Random, kind: str) -> str:
    return pick(rng, KIND_NAMES[kind])


def describe(rng: random.Random, obj: WorldObject, with_size: float = 0.7) -> str:
    """'a large red cup', 'a red mug', ... (with its article)."""
    words = ([obj.size] if rng.random() < with_size else []) + [obj.color, name(rng, obj.kind)]
    if words[0] == "large" and rng.random() < 0.4:
        words[0] = "big"
    elif words[0] == "small" and rng.random() < 0.4:
        words[0] = "little"
    phrase = " ".join(words)
    return f"{article(phrase)} {phrase}"


def position(rng: random.Random, cell: tuple[int, int]) -> str:
    """A prepositional phrase naming a grid cell: 'in the top left corner', 'on the right', ..."""
    row, col = cell
    if row != 1 and col != 1:
        r, c = pick(rng, ROW_WORDS[row]), COL_WORDS[col]
        return pick(rng, (f"in the {r} {c} corner", f"at the {r} {c}", f"in the {r} {c}"))
    if row != 1:
        r = pick(rng, ROW_WORDS[row])
        return pick(rng, (f"at the {r}", f"at the {r} center", f"in the {r} middle"))
    if col != 1:
        c = COL_WORDS[col]
        return pick(rng, (f"on the {c}", f"on the {c} side", f"at the middle {c}"))
    return pick(rng, ("in the center", "in the middle", "at the center"))


def count_phrase(rng: random.Random, n: int, noun: str = "objects") -> str:
    if n == 1:
        noun = noun.removesuffix("s")
    return f"{NUMBERS[n]} {noun}"


def _object_sentence(rng: random.Random, obj: WorldObject, first: bool) -> str:
    # the position comes first: it is what tells the reader where to look next
    desc, pos = describe(rng, obj), position(rng, obj.cell)
    styles = [
        f"{cap(pos)}, there is {desc}.",
        f"{cap(pos)} you can see {desc}.",
        f"{cap(pos)} lies {desc}.",
        f"{cap(pos)} sits {desc}.",
        f"{cap(pos)}, we find {desc}.",
    ]
    if not first:
        styles += [f"Also, {pos} there is {desc}.", f"And {pos} stands {desc}."]
    return pick(rng, styles)


def _intro(rng: random.Random, scene: Scene) -> str:
    t, n = scene.scene_type, len(scene.objects)
    return pick(
        rng,
        (
            f"This picture shows {article(t)} {t} with {count_phrase(rng, n)}.",
            f"The image is {article(t)} {t} scene.",
            f"Here we see {article(t)} {t}.",
            f"A view of {article(t)} {t} containing {count_phrase(rng, n, 'things')}.",
            f"This is {article(t)} {t}. It holds {count_phrase(rng, n)}.",
        ),
    )


def _relation_sentences(rng: random.Random, scene: Scene) -> list[str]:
    pairs = [(a, b, relation(a, b)) for a in scene.objects for b in scene.objects if a is not b]
    pairs = [p for p in pairs if p[2] is not None]
    chosen = rng.sample(pairs, min(len(pairs), rng.randint(0, 2)))
    return [
        f"The {name(rng, a.kind)} is {pick(rng, REL_PHRASES[rel])} the {name(rng, b.kind)}." for a, b, rel in chosen
    ]


def caption(rng: random.Random, scene: Scene) -> str:
    """A detailed description: scene type, every object (reading order), some relations, background."""
    sentences = [_intro(rng, scene)]
    for i, obj in enumerate(scene.reading_order()):
        sentences.append(_object_sentence(rng, obj, first=i == 0))
    sentences += _relation_sentences(rng, scene)
    if rng.random() < 0.6:
        texture = pick(rng, TEXTURES[scene.scene_type])
        sentences.append(
            pick(
                rng,
                (
                    f"The background shows {texture}.",
                    f"Behind the objects we find {texture}.",
                    f"Everything rests on {texture}.",
                ),
            )
        )
    if rng.random() < 0.4:
        sentences.append(
            pick(
                rng,
                (
                    "A few small specks are scattered around.",
                    "Some tiny marks and crumbs lie about.",
                    "There is a little clutter here and there.",
                ),
            )
        )
    return " ".join(sentences)


def caption_prompt(rng: random.Random) -> str:
    return pick(
        rng,
        (
            "Describe the image in detail.",
            "Provide a detailed description of the picture.",
            "What do you see in this image? Please be thorough.",
            "Give a full description of this scene.",
            "Describe everything in the picture.",
            "Write a detailed caption for this image.",
        ),
    )


def video_prompt(rng: random.Random) -> str:
    return pick(
        rng,
        (
            "Describe what happens in the video.",
            "Narrate the events of this video in order.",
            "What happens in this clip?",
            "Tell me, step by step, what changes in the video.",
            "Write a caption for this video that describes the events.",
        ),
    )


def _event_clause(rng: random.Random, event: Event) -> str:
    n = name(rng, event.kind)
    if event.action == "move":
        d = {
            "left": ("left", "to the left"),
            "right": ("right", "to the right"),
            "up": ("up", "upward"),
            "down": ("down", "downward"),
        }[event.direction or ""]
        return f"the {pick(rng, (n, f'{event.color} {n}'))} {pick(rng, ('moves', 'slides', 'shifts'))} {pick(rng, d)}"
    if event.action == "appear":
        desc = f"{event.color} {n}"
        pos = position(rng, event.cell or (1, 1))
        return pick(
            rng,
            (
                f"{article(desc)} {desc} appears {pos}",
                f"{article(desc)} {desc} shows up {pos}",
                f"a new {desc} enters {pos}",
            ),
        )
    verb = pick(rng, ("disappears", "vanishes", "is gone"))
    return f"the {pick(rng, (n, f'{event.color} {n}'))} {verb}"


def narrate(rng: random.Random, video: Video) -> str:
    """The video's opening state, then one sentence per event, in order."""
    start = video.start
    objs = [f"{position(rng, o.cell)} {describe(rng, o, with_size=0.3)}" for o in start.reading_order()]
    listing = objs[0] if len(objs) == 1 else ", ".join(objs[:-1]) + " and " + objs[-1]
    t = start.scene_type
    sentences = [
        pick(
            rng,
            (
                f"At the start, the {t} holds {listing}.",
                f"The video opens on {article(t)} {t} with {listing}.",
                f"In the beginning we see {article(t)} {t} with {listing}.",
            ),
        )
    ]
    connectives = (["First,", "To begin,"], ["Then", "After that,", "Next,"], ["Finally,", "Last,", "In the end,"])
    for i, event in enumerate(video.events):
        stage = 0 if i == 0 else (2 if i == len(video.events) - 1 else 1)
        sentences.append(f"{pick(rng, connectives[stage])} {_event_clause(rng, event)}.")
    if rng.random() < 0.5:
        sentences.append(
            pick(
                rng,
                (
                    f"By the last frame there are {count_phrase(rng, len(video.end.objects))} in view.",
                    f"The clip ends with {count_phrase(rng, len(video.end.objects))} visible.",
                ),
            )
        )
    return " ".join(sentences)


def object_list(rng: random.Random, objects: Sequence[WorldObject]) -> str:
    parts = [describe(rng, o, with_size=0.4) for o in objects]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
