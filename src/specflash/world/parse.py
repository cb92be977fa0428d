"""Read facts back out of world texts (reference answers or a model's output). Used by the tests (every
generated text must parse back to the facts it states) and by `world eval` to score targets."""

from __future__ import annotations

import re
from typing import Any

from .grammar import NUMBERS
from .scenes import COLORS, KIND_NAMES, SCENE_TYPES

WORD = re.compile(r"[a-z]+")
NAME_TO_KIND = {n: kind for kind, names in KIND_NAMES.items() for n in names}
NUMBER_WORDS = {w: i for i, w in enumerate(NUMBERS)} | {"no": 0, "none": 0}
MOVE_VERBS = {"moves", "slides", "shifts"}
APPEAR_VERBS = {"appears", "shows", "enters"}
DISAPPEAR_VERBS = {"disappears", "vanishes", "gone"}
DIRECTION_WORDS = {"left": "left", "right": "right", "up": "up", "upward": "up", "down": "down", "downward": "down"}


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def kinds_named(text: str) -> list[str]:
    """Object kinds named in a text, in order of first mention."""
    seen: list[str] = []
    for w in words(text):
        kind = NAME_TO_KIND.get(w)
        if kind and kind not in seen:
            seen.append(kind)
    return seen


def parse_cell(text: str) -> tuple[int, int]:
    ws = set(words(text))
    row = 0 if ws & {"top", "upper"} else 2 if ws & {"bottom", "lower"} else 1
    col = 0 if "left" in ws else 2 if "right" in ws else 1
    return (row, col)


def _first(text: str, vocabulary: dict[str, Any] | set[str] | tuple[str, ...]) -> Any:
    for w in words(text):
        if w in vocabulary:
            return vocabulary[w] if isinstance(vocabulary, dict) else w
    return None


def parse_answer(qtype: str, text: str) -> Any:
    """The value an answer states, in the form `questions.Turn.value` uses; None when unreadable."""
    if qtype == "count":
        return _first(text, NUMBER_WORDS)
    if qtype == "color":
        return _first(text, tuple(COLORS))
    if qtype == "where":
        return parse_cell(text)
    if qtype == "yesno":
        first = words(text)[:1]
        return {"yes": True, "no": False}.get(first[0]) if first else None
    if qtype == "what":
        named = kinds_named(text)
        if named:
            return named[0]
        return "nothing" if set(words(text)) & {"nothing", "empty"} else None
    if qtype == "scene":
        return _first(text, SCENE_TYPES)
    if qtype == "kinds":
        return frozenset(kinds_named(text))
    if qtype == "about":
        return (_first(text, tuple(COLORS)), parse_cell(text))
    if qtype == "which":
        return _first(text, ("first", "second", "both", "neither", "same"))
    raise ValueError(f"unknown question type {qtype!r}")


def parse_events(text: str) -> list[tuple[str, str, str | None]]:
    """(action, kind, direction) per event sentence of a video narration, in order; the opening
    sentence (the starting state) and closing remarks name no event verb and are skipped."""
    events = []
    for sentence in re.split(r"(?<=\.)\s+", text.strip()):
        ws = set(words(sentence))
        kinds = kinds_named(sentence)
        if not kinds:
            continue
        if ws & MOVE_VERBS:
            direction = next((DIRECTION_WORDS[w] for w in words(sentence) if w in DIRECTION_WORDS), None)
            events.append(("move", kinds[0], direction))
        elif ws & APPEAR_VERBS:
            events.append(("appear", kinds[0], None))
        elif ws & DISAPPEAR_VERBS:
            events.append(("disappear", kinds[0], None))
    return events
