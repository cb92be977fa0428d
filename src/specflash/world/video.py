"""Videos: a scene that changes over FRAMES frames. Events (an object moves, appears or disappears)
happen only at EVENT_FRAMES, the second frame of a frame pair after the first: each event lies inside
one temporal patch of a video tower (two frames, before and after), as motion does in real video, and
the first pair shows the opening scene still."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from PIL import Image

from .render import render_scene
from .scenes import ALL_CELLS, GRID, Scene, WorldObject, sample_object, sample_scene

FRAMES = 8
EVENT_FRAMES = (3, 5, 7)
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}


@dataclass(frozen=True)
class Event:
    action: str  # "move", "appear" or "disappear"
    kind: str
    color: str
    frame: int  # first frame that shows the change
    direction: str | None = None  # for "move"
    cell: tuple[int, int] | None = None  # where the object ends up (move, appear)

    def key(self) -> tuple[str, str, str | None]:
        """What a narration must get right about this event."""
        return (self.action, self.kind, self.direction)


@dataclass
class Video:
    scenes: list[Scene]  # one per frame
    events: list[Event]

    @property
    def start(self) -> Scene:
        return self.scenes[0]

    @property
    def end(self) -> Scene:
        return self.scenes[-1]


def _free_cells(scene: Scene) -> list[tuple[int, int]]:
    used = {o.cell for o in scene.objects}
    return [c for c in ALL_CELLS if c not in used]


def _possible_moves(scene: Scene) -> list[tuple[WorldObject, str, tuple[int, int]]]:
    free = set(_free_cells(scene))
    moves = []
    for obj in scene.objects:
        for name, (dr, dc) in DIRECTIONS.items():
            cell = (obj.cell[0] + dr, obj.cell[1] + dc)
            if 0 <= cell[0] < GRID and 0 <= cell[1] < GRID and cell in free:
                moves.append((obj, name, cell))
    return moves


def apply_event(rng: random.Random, scene: Scene, frame: int) -> tuple[Scene, Event]:
    actions = ["move", "appear", "disappear"]
    if len(scene.objects) <= 1:
        actions.remove("disappear")
    if len(scene.objects) >= 5:
        actions.remove("appear")
    moves = _possible_moves(scene)
    if not moves:
        actions.remove("move")
    action = rng.choice(actions)
    objects = list(scene.objects)
    if action == "move":
        obj, direction, cell = rng.choice(moves)
        objects[objects.index(obj)] = replace(obj, cell=cell)
        event = Event("move", obj.kind, obj.color, frame, direction, cell)
    elif action == "appear":
        new = sample_object(rng, scene.scene_type, scene.kinds(), rng.choice(_free_cells(scene)))
        objects.append(new)
        event = Event("appear", new.kind, new.color, frame, None, new.cell)
    else:
        gone = rng.choice(objects)
        objects.remove(gone)
        event = Event("disappear", gone.kind, gone.color, frame)
    return replace(scene, objects=objects), event


def changed_cells(cells: dict[str, tuple[int, int]], event: Event) -> dict[tuple[int, int], str]:
    """The cells an event changes, given each object's cell (by kind) before it: the vanished object's
    cell -> "disappear", a new object's -> "appear", a moved object's old cell -> "away" and its new
    cell -> the direction it moved."""
    if event.action == "disappear":
        return {cells[event.kind]: "disappear"}
    if event.action == "appear" and event.cell:
        return {event.cell: "appear"}
    if event.action == "move" and event.cell and event.direction:
        return {cells[event.kind]: "away", event.cell: event.direction}
    raise ValueError(f"incomplete event {event}")


def sample_video(rng: random.Random) -> Video:
    """A random video with two or three events at distinct EVENT_FRAMES."""
    scene = sample_scene(rng, min_objects=2, max_objects=4)
    event_frames = sorted(rng.sample(EVENT_FRAMES, rng.randint(2, 3)))
    scenes, events = [], []
    for frame in range(FRAMES):
        if frame in event_frames:
            scene, event = apply_event(rng, scene, frame)
            events.append(event)
        scenes.append(scene)
    return Video(scenes=scenes, events=events)


def render_video(video: Video) -> list[Image.Image]:
    return [render_scene(scene) for scene in video.scenes]
