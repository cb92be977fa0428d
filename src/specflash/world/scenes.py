"""Scene facts: object kinds, colors, sizes, grid cells, scene types, and seeded sampling.

A scene is pure data; `render.py` draws it and `grammar.py` talks about it. Scene types decide which
kinds co-occur (a kitchen mostly holds cups and plates), so texts about a scene are predictable in part
from its type and in part only from the picture.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

GRID = 3  # the picture is a GRID x GRID board of cells; each object owns one cell

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35),
    "orange": (245, 135, 10),
    "yellow": (245, 215, 0),
    "green": (20, 150, 40),
    "blue": (30, 70, 220),
    "purple": (130, 40, 170),
    "pink": (245, 120, 190),
    "black": (25, 25, 25),
}

SIZES = ("small", "large")

# kind -> the words that may name it (the first is the canonical name)
KIND_NAMES: dict[str, tuple[str, ...]] = {
    "cup": ("cup", "mug"),
    "plate": ("plate", "dish"),
    "bottle": ("bottle",),
    "bowl": ("bowl",),
    "kettle": ("kettle", "teapot"),
    "clock": ("clock",),
    "tree": ("tree",),
    "bench": ("bench",),
    "flower": ("flower", "blossom"),
    "kite": ("kite",),
    "bird": ("bird",),
    "ball": ("ball",),
    "book": ("book",),
    "lamp": ("lamp",),
    "chair": ("chair",),
    "laptop": ("laptop", "computer"),
    "umbrella": ("umbrella", "parasol"),
    "boat": ("boat", "sailboat"),
    "fish": ("fish",),
    "shell": ("shell", "seashell"),
    "bucket": ("bucket", "pail"),
    "bed": ("bed",),
    "pillow": ("pillow", "cushion"),
    "moon": ("moon",),
    "car": ("car",),
    "house": ("house",),
    "cone": ("cone",),
    "sign": ("sign",),
    "star": ("star",),
    "box": ("box", "crate"),
}
KINDS: tuple[str, ...] = tuple(KIND_NAMES)

# scene type -> the kinds that usually appear there
SCENE_KINDS: dict[str, tuple[str, ...]] = {
    "kitchen": ("cup", "plate", "bottle", "bowl", "kettle", "clock"),
    "park": ("tree", "bench", "flower", "kite", "bird", "ball"),
    "office": ("book", "lamp", "chair", "laptop", "clock", "cup"),
    "beach": ("umbrella", "boat", "fish", "shell", "bucket", "ball"),
    "bedroom": ("bed", "pillow", "lamp", "book", "moon", "star"),
    "street": ("car", "house", "tree", "cone", "sign", "bird"),
    "playroom": ("ball", "box", "star", "kite", "pillow", "boat"),
}
SCENE_TYPES: tuple[str, ...] = tuple(SCENE_KINDS)

OFF_TYPE_RATE = 0.15  # chance that an object comes from outside its scene's usual kinds


@dataclass(frozen=True)
class WorldObject:
    kind: str
    color: str
    size: str
    cell: tuple[int, int]  # (row, col), row 0 is the top


@dataclass
class Scene:
    scene_type: str
    objects: list[WorldObject]
    style_seed: int = 0  # drives background texture, clutter and jitter, never the facts
    extra: dict = field(default_factory=dict)

    def kinds(self) -> set[str]:
        return {o.kind for o in self.objects}

    def find(self, kind: str) -> WorldObject | None:
        return next((o for o in self.objects if o.kind == kind), None)

    def at(self, cell: tuple[int, int]) -> WorldObject | None:
        return next((o for o in self.objects if o.cell == cell), None)

    def reading_order(self) -> list[WorldObject]:
        return sorted(self.objects, key=lambda o: o.cell)


ALL_CELLS: tuple[tuple[int, int], ...] = tuple((r, c) for r in range(GRID) for c in range(GRID))


def sample_kind(rng: random.Random, scene_type: str, taken: set[str]) -> str:
    pool = SCENE_KINDS[scene_type] if rng.random() >= OFF_TYPE_RATE else KINDS
    choices = [k for k in pool if k not in taken] or [k for k in KINDS if k not in taken]
    return rng.choice(choices)


def sample_object(rng: random.Random, scene_type: str, taken: set[str], cell: tuple[int, int]) -> WorldObject:
    return WorldObject(
        kind=sample_kind(rng, scene_type, taken),
        color=rng.choice(tuple(COLORS)),
        size=rng.choice(SIZES),
        cell=cell,
    )


def sample_scene(
    rng: random.Random, min_objects: int = 3, max_objects: int = 5, scene_type: str | None = None
) -> Scene:
    """A random scene: kinds are unique within a scene, so 'the cup' always names one object."""
    scene_type = scene_type or rng.choice(SCENE_TYPES)
    cells = rng.sample(ALL_CELLS, rng.randint(min_objects, max_objects))
    objects: list[WorldObject] = []
    for cell in cells:
        objects.append(sample_object(rng, scene_type, {o.kind for o in objects}, cell))
    return Scene(scene_type=scene_type, objects=objects, style_seed=rng.getrandbits(32))


def relation(a: WorldObject, b: WorldObject) -> str | None:
    """The clearest spatial relation of a to b, or None when they share neither row nor column."""
    (ra, ca), (rb, cb) = a.cell, b.cell
    if ra == rb:
        return "left of" if ca < cb else "right of"
    if ca == cb:
        return "above" if ra < rb else "below"
    return None


def holds(rel: str, a: WorldObject, b: WorldObject) -> bool:
    """Whether 'a is <rel> b' is true, comparing rows or columns only."""
    (ra, ca), (rb, cb) = a.cell, b.cell
    return {"left of": ca < cb, "right of": ca > cb, "above": ra < rb, "below": ra > rb}[rel]
