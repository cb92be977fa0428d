"""Question-answer turns about one scene or two. Each turn keeps its question type and the true value,
so an answer (the reference or a model's) can be scored by `parse.parse_answer(qtype, text)`."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .grammar import (
    NUMBERS,
    REL_PHRASES,
    article,
    cap,
    count_phrase,
    describe,
    name,
    object_list,
    pick,
    position,
)
from .scenes import ALL_CELLS, COLORS, KINDS, Scene, holds, sample_kind


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str
    qtype: str
    value: Any  # what the answer states, in the form parse_answer returns


def _yes_no(rng: random.Random, yes: bool, detail_yes: str, detail_no: str) -> str:
    return pick(rng, ("Yes.", f"Yes, {detail_yes}.")) if yes else pick(rng, ("No.", f"No, {detail_no}."))


def count_all(rng: random.Random, scene: Scene) -> Turn:
    n = len(scene.objects)
    q = pick(
        rng, ("How many objects are in the image?", "How many things can you see?", "Count the objects in the picture.")
    )
    a = pick(
        rng,
        (
            f"There are {count_phrase(rng, n)}.",
            f"I count {count_phrase(rng, n)}.",
            f"{cap(NUMBERS[n])}.",
            f"The image has {count_phrase(rng, n)}.",
        ),
    )
    return Turn(q, a, "count", n)


def count_color(rng: random.Random, scene: Scene) -> Turn:
    color = rng.choice([o.color for o in scene.objects] + list(COLORS))
    n = sum(o.color == color for o in scene.objects)
    q = pick(
        rng, (f"How many {color} objects are there?", f"How many things are {color}?", f"Count the {color} objects.")
    )
    if n == 0:
        a = pick(rng, (f"There are no {color} objects.", "None.", f"Zero, nothing is {color}."))
    else:
        a = pick(
            rng,
            (f"There {'is' if n == 1 else 'are'} {count_phrase(rng, n, color + ' objects')}.", f"{cap(NUMBERS[n])}."),
        )
    return Turn(q, a, "count", n)


def color_of(rng: random.Random, scene: Scene) -> Turn:
    obj = rng.choice(scene.objects)
    n = name(rng, obj.kind)
    q = pick(rng, (f"What color is the {n}?", f"Which color does the {n} have?", f"Tell me the color of the {n}."))
    a = pick(rng, (f"It is {obj.color}.", f"The {n} is {obj.color}.", f"{cap(obj.color)}."))
    return Turn(q, a, "color", obj.color)


def where_is(rng: random.Random, scene: Scene) -> Turn:
    obj = rng.choice(scene.objects)
    n = name(rng, obj.kind)
    q = pick(rng, (f"Where is the {n}?", f"Where can I find the {n}?", f"In which part of the image is the {n}?"))
    pos = position(rng, obj.cell)
    a = pick(rng, (f"It is {pos}.", f"The {n} is {pos}.", f"You can find it {pos}."))
    return Turn(q, a, "where", obj.cell)


def exists(rng: random.Random, scene: Scene) -> Turn:
    present = rng.random() < 0.5
    kind = rng.choice(scene.objects).kind if present else sample_kind(rng, scene.scene_type, scene.kinds())
    n = name(rng, kind)
    q = pick(
        rng,
        (
            f"Is there {article(n)} {n} in the image?",
            f"Do you see {article(n)} {n}?",
            f"Does the picture contain {article(n)} {n}?",
        ),
    )
    obj = scene.find(kind)
    detail_yes = f"there is {describe(rng, obj)} {position(rng, obj.cell)}" if obj else ""
    return Turn(q, _yes_no(rng, present, detail_yes, f"there is no {n}"), "yesno", present)


def relation_check(rng: random.Random, scene: Scene) -> Turn:
    a_obj, b_obj = rng.sample(scene.objects, 2)
    rel = rng.choice(tuple(REL_PHRASES))
    phrase = pick(rng, REL_PHRASES[rel])
    na, nb = name(rng, a_obj.kind), name(rng, b_obj.kind)
    q = f"Is the {na} {phrase} the {nb}?"
    truth = holds(rel, a_obj, b_obj)
    a = _yes_no(rng, truth, f"the {na} is {phrase} the {nb}", f"it is not {phrase} the {nb}")
    return Turn(q, a, "yesno", truth)


def what_at(rng: random.Random, scene: Scene) -> Turn:
    occupied = [o.cell for o in scene.objects]
    cell = rng.choice(occupied) if rng.random() < 0.8 else rng.choice(ALL_CELLS)
    pos = position(rng, cell)
    q = pick(rng, (f"What is {pos}?", f"Which object is {pos}?", f"Describe the object {pos}."))
    obj = scene.at(cell)
    if obj is None:
        return Turn(q, pick(rng, ("Nothing is there.", "That spot is empty.")), "what", "nothing")
    desc = describe(rng, obj)
    return Turn(q, pick(rng, (f"There is {desc} there.", f"{cap(desc)}.", f"I see {desc}.")), "what", obj.kind)


def scene_kind(rng: random.Random, scene: Scene) -> Turn:
    t = scene.scene_type
    q = pick(rng, ("What kind of place is this?", "Where was this picture taken?", "What type of scene is this?"))
    a = pick(rng, (f"It looks like {article(t)} {t}.", f"This is {article(t)} {t}.", f"{cap(article(t))} {t}."))
    return Turn(q, a, "scene", t)


def list_objects(rng: random.Random, scene: Scene) -> Turn:
    q = pick(rng, ("List the objects you see.", "What objects are in the picture?", "Name everything in the image."))
    listing = object_list(rng, scene.reading_order())
    a = pick(rng, (f"I see {listing}.", f"The picture contains {listing}.", f"{cap(listing)}."))
    return Turn(q, a, "kinds", frozenset(scene.kinds()))


def tell_about(rng: random.Random, scene: Scene) -> Turn:
    obj = rng.choice(scene.objects)
    n = name(rng, obj.kind)
    q = pick(rng, (f"Tell me about the {n}.", f"Can you describe the {n}?", f"What does the {n} look like?"))
    desc = describe(rng, obj, with_size=1.0)
    a = pick(rng, (f"It is {desc} {position(rng, obj.cell)}.", f"{cap(position(rng, obj.cell))} there is {desc}."))
    return Turn(q, a, "about", (obj.color, obj.cell))


SINGLE: dict[str, Callable[[random.Random, Scene], Turn]] = {
    "count_all": count_all,
    "count_color": count_color,
    "color": color_of,
    "where": where_is,
    "exists": exists,
    "relation": relation_check,
    "what_at": what_at,
    "scene": scene_kind,
    "list": list_objects,
    "about": tell_about,
}


def compare_more(rng: random.Random, first: Scene, second: Scene) -> Turn:
    n1, n2 = len(first.objects), len(second.objects)
    q = pick(rng, ("Which image has more objects?", "Which of the two pictures contains more things?"))
    if n1 == n2:
        return Turn(
            q,
            pick(rng, ("They have the same number of objects.", f"The same, both have {NUMBERS[n1]}.")),
            "which",
            "same",
        )
    more = "first" if n1 > n2 else "second"
    a = pick(
        rng,
        (
            f"The {more} image has more objects.",
            f"The {more} one.",
            f"The {more} picture, with {count_phrase(rng, max(n1, n2))}.",
        ),
    )
    return Turn(q, a, "which", more)


def compare_which(rng: random.Random, first: Scene, second: Scene) -> Turn:
    pool = [*sorted(first.kinds() | second.kinds()), rng.choice(KINDS)]
    kind = rng.choice(pool)
    n = name(rng, kind)
    q = pick(rng, (f"Which image shows {article(n)} {n}?", f"In which picture is there {article(n)} {n}?"))
    where = {(True, True): "both", (True, False): "first", (False, True): "second", (False, False): "neither"}[
        (kind in first.kinds(), kind in second.kinds())
    ]
    answers = {
        "both": ("Both images do.", f"There is {article(n)} {n} in both pictures."),
        "first": ("Only the first image.", f"The first picture has {article(n)} {n}."),
        "second": ("Only the second image.", f"The second picture has {article(n)} {n}."),
        "neither": (f"Neither image has {article(n)} {n}.", "Neither of them."),
    }
    return Turn(q, pick(rng, answers[where]), "which", where)


def compare_place(rng: random.Random, first: Scene, second: Scene) -> Turn:
    t1, t2 = first.scene_type, second.scene_type
    q = pick(rng, ("Are the two pictures the same kind of place?", "Do both images show the same type of scene?"))
    same = t1 == t2
    a = _yes_no(
        rng,
        same,
        f"both show {article(t1)} {t1}",
        f"the first is {article(t1)} {t1} and the second is {article(t2)} {t2}",
    )
    return Turn(q, a, "yesno", same)


PAIR: dict[str, Callable[[random.Random, Scene, Scene], Turn]] = {
    "more": compare_more,
    "which": compare_which,
    "place": compare_place,
}
