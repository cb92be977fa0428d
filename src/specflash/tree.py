"""Token trees: one object drives both drafting and verification.

A tree is batched: row b has `size` nodes, node 0 is the root (the last accepted token, not yet seen by
the target), nodes are ordered parents-first, and each row has the same number of nodes. Two builders:

- dynamic (EAGLE-2): expand the `top_k` best frontier nodes by cumulative draft log-probability for
  `depth` levels, then keep the `total_tokens` best nodes overall, or as many of those as pay for
  their verification on this machine (`adaptive`, sizing.py);
- static: a fixed list of paths, each a list of child ranks (`(0, 1)`: the second-best child of the
  best child of the root).

Drafting goes a group of k levels at a time (k: the draft's slots; k = 1 is EAGLE-2). An anchor (the
root, or a node at depth g*k) gives the distributions of the k levels below it in one draft pass, slot j-1
for level j. At a group's end one `step` call turns the group's frontier nodes into draft entries and
returns the k distributions after each of the deepest ones, the next anchors. A proposal of depth d thus
costs ceil(d/k) draft forwards, the catch-up pass included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Size = Callable[[torch.Tensor], int]
# Breaks ties between a node and its descendants so the kept set is always closed under ancestors.
DEPTH_TIE_BREAK = 1e-6


@dataclass(frozen=True)
class TreeConfig:
    depth: int = 6
    top_k: int = 8
    total_tokens: int = 60  # the most nodes a dynamic tree keeps (besides the root)
    paths: tuple[tuple[int, ...], ...] | None = None
    # A dynamic tree keeps, of its total_tokens best nodes, as many as pay for their verification on
    # this machine (sizing.py); False keeps all of them every cycle. A static tree keeps its paths.
    adaptive: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.adaptive, bool):  # a truthy string such as "no" must not mean True
            raise ValueError(f"TreeConfig.adaptive must be True or False, got {self.adaptive!r}")
        if self.paths is not None:
            paths = _closed_paths(self.paths)
            object.__setattr__(self, "paths", paths)
            object.__setattr__(self, "depth", max(len(p) for p in paths))
            object.__setattr__(self, "total_tokens", len(paths))
            return
        for name in ("depth", "top_k", "total_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TreeConfig.{name} must be an integer >= 1, got {value!r}")
        most = self.top_k + (self.depth - 1) * self.top_k**2
        if self.total_tokens > most:
            raise ValueError(
                f"TreeConfig.total_tokens={self.total_tokens} exceeds the {most} nodes that depth "
                f"{self.depth} and top_k {self.top_k} can propose"
            )

    @property
    def is_static(self) -> bool:
        return self.paths is not None

    @property
    def widest_rank(self) -> int:
        """How many children of one node the builder may ask for."""
        if self.paths is not None:
            return 1 + max(p[-1] for p in self.paths)
        return self.top_k


def _closed_paths(paths: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    if not paths:
        raise ValueError("a static tree needs at least one path")
    closed: set[tuple[int, ...]] = set()
    for path in paths:
        if not isinstance(path, Sequence) or not all(isinstance(rank, int) for rank in path):
            raise ValueError(f"each static tree path must be a list of child ranks, got {path!r}")
        path = tuple(path)
        if not path or min(path) < 0:
            raise ValueError(f"static tree path {path} must be a non-empty list of ranks >= 0")
        closed.update(path[:end] for end in range(1, len(path) + 1))
    return tuple(sorted(closed, key=lambda p: (len(p), p)))


@dataclass
class Tree:
    tokens: torch.Tensor  # [B, T]; node 0 is the root
    parents: torch.Tensor  # [B, T]; -1 for the root
    depths: torch.Tensor  # [B, T]; 0 for the root
    ancestors: torch.Tensor  # [B, T, T] bool: [b, i, j] node j is node i or one of its ancestors

    @property
    def size(self) -> int:
        return self.tokens.shape[1]

    @property
    def max_depth(self) -> int:
        return int(self.depths.max())

    @classmethod
    def from_parents(cls, tokens: torch.Tensor, parents: torch.Tensor, depth: int) -> Tree:
        """The tree whose node i hangs under parents[:, i]; no node is deeper than `depth`. Every node
        walks up one level per step, so the work is `depth` vector steps, not one per node."""
        batch, size = tokens.shape
        rows = torch.arange(batch, device=tokens.device)[:, None]
        nodes = torch.arange(size, device=tokens.device).expand(batch, size)
        up = parents.clamp(min=0)  # the root is its own parent
        ancestors = torch.zeros(batch, size, size, dtype=torch.bool, device=tokens.device)
        depths = torch.zeros_like(parents)
        current = nodes
        for _ in range(depth + 1):
            ancestors[rows, nodes, current] = True
            depths += current != 0
            current = up.gather(1, current)
        return cls(tokens, parents, depths, ancestors)

    @classmethod
    def star(cls, root: torch.Tensor, nodes: int) -> Tree:
        """`nodes` copies of the root as its children (at most one level deep): a tree of a given size
        to time a verification by; with no nodes, the root alone, a plain decoding step."""
        batch, size = root.shape[0], nodes + 1
        tokens = root[:, None].expand(batch, size)
        parents = torch.zeros_like(tokens)
        parents[:, 0] = -1
        depths = (parents + 1).clamp(max=1)  # built directly: a plain step pays no from_parents walk
        ancestors = torch.eye(size, dtype=torch.bool, device=root.device)
        ancestors[:, 0] = True
        return cls(tokens, parents, depths, ancestors.expand(batch, size, size))


def grow(config: TreeConfig, root: torch.Tensor, root_logp: torch.Tensor, step: Step, size: Size | None = None) -> Tree:
    """Build the tree for roots [B] whose next k levels have draft log-probabilities root_logp [B, k, V].

    `step(tokens, parents, anchors, slots, wanted)` is `Drafter.step`. A dynamic tree keeps the
    `size(scores)` best nodes, scores [B, total_tokens] being the best nodes' cumulative draft
    log-probabilities, best first (`CycleCost.best_size`); without `size`, all total_tokens of them.
    """
    if config.is_static:
        return _grow_static(config, root, root_logp, step)
    return _grow_dynamic(config, root, root_logp, step, size)


def _grow_dynamic(
    config: TreeConfig, root: torch.Tensor, root_logp: torch.Tensor, step: Step, size: Size | None
) -> Tree:
    batch, k, top = root.shape[0], root_logp.shape[1], config.top_k
    device = root.device
    rows = torch.arange(batch, device=device)[:, None]
    # Every proposed node, in the order proposed: token, parent record (-1 root), cumulative score.
    all_tokens: list[torch.Tensor] = []
    all_parents: list[torch.Tensor] = []
    all_scores: list[torch.Tensor] = []
    record_entry = torch.full((batch, top + config.depth * top * top), -1, dtype=torch.long, device=device)
    anchor_logp = root_logp.double()[:, None]  # [B, anchors, k, V]
    anchor_entries = torch.full((batch, 1), -1, dtype=torch.long, device=device)
    anchor_records = torch.full((batch, 1), -1, dtype=torch.long, device=device)
    anchor_scores = torch.zeros(batch, 1, dtype=torch.float64, device=device)
    records = entries = depth = 0
    while depth < config.depth:
        levels = min(k, config.depth - depth)
        frontiers = []  # per level: (records, tokens, parent records, anchor index) of the kept nodes
        front_scores = anchor_scores
        for level in range(1, levels + 1):
            if level == 1:
                owner = torch.arange(anchor_scores.shape[1], device=device).expand(batch, -1)
                parents, dist = anchor_records, anchor_logp[:, :, 0]
            else:
                parents, owner = frontiers[-1][0], frontiers[-1][3]
                dist = anchor_logp[rows, owner, level - 1]
            scores = front_scores
            top_logp, top_tokens = dist.topk(top, dim=-1)  # [B, P, top]
            width = top_logp.shape[1] * top
            cand_scores = (scores[:, :, None] + top_logp).reshape(batch, width) - DEPTH_TIE_BREAK * (depth + level)
            cand_parents = parents[:, :, None].expand(-1, -1, top).reshape(batch, width)
            cand_owner = owner[:, :, None].expand(-1, -1, top).reshape(batch, width)
            cand_tokens = top_tokens.reshape(batch, width)
            all_tokens.append(cand_tokens)
            all_parents.append(cand_parents)
            all_scores.append(cand_scores)
            front_scores, best = cand_scores.topk(top, dim=-1)
            frontiers.append(
                (records + best, cand_tokens.gather(1, best), cand_parents.gather(1, best), cand_owner.gather(1, best))
            )
            records += width
        depth += levels
        if depth >= config.depth:
            break
        # One group pass: the kept nodes of every level of the group become entries.
        tokens, parents, anchors, slots = [], [], [], []
        for level, (front_records, front_tokens, front_parents, owner) in enumerate(frontiers, start=1):
            record_entry[rows, front_records] = entries + (level - 1) * top + torch.arange(top, device=device)
            group_anchor = anchor_entries.gather(1, owner)
            tokens.append(front_tokens)
            parents.append(group_anchor if level == 1 else record_entry[rows, front_parents])
            anchors.append(group_anchor)
            slots.append(torch.full_like(front_tokens, level - 1))
        wanted = (levels - 1) * top + torch.arange(top, device=device).expand(batch, -1)
        anchor_logp = step(
            torch.cat(tokens, 1), torch.cat(parents, 1), torch.cat(anchors, 1), torch.cat(slots, 1), wanted
        ).double()
        anchor_records = frontiers[-1][0]
        anchor_entries = record_entry[rows, anchor_records]
        anchor_scores = front_scores
        entries += levels * top
    proposed = (torch.cat(all_tokens, 1), torch.cat(all_parents, 1), torch.cat(all_scores, 1))
    return _keep_best(config, root, *proposed, size)


def _keep_best(
    config: TreeConfig,
    root: torch.Tensor,
    tokens: torch.Tensor,
    parents: torch.Tensor,
    scores: torch.Tensor,
    size: Size | None,
) -> Tree:
    """The best proposed nodes (`size` of them, or total_tokens), parents before children, as a tree
    under the root."""
    rows = torch.arange(root.shape[0], device=root.device)[:, None]
    best = scores.topk(config.total_tokens, dim=-1)  # best first
    kept = config.total_tokens if size is None else size(best.values)
    keep = best.indices[:, :kept].sort(dim=-1).values
    place = torch.zeros_like(tokens)  # record -> node index in the kept tree (0: root)
    place[rows, keep] = torch.arange(1, kept + 1, device=root.device)
    kept_parents = parents.gather(1, keep)
    node_parents = torch.where(kept_parents < 0, 0, place.gather(1, kept_parents.clamp(min=0)))
    return Tree.from_parents(
        torch.cat([root[:, None], tokens.gather(1, keep)], dim=1),
        torch.cat([torch.full_like(root[:, None], -1), node_parents], dim=1),
        config.depth,
    )


def _grow_static(config: TreeConfig, root: torch.Tensor, root_logp: torch.Tensor, step: Step) -> Tree:
    paths, k = config.paths, root_logp.shape[1]
    index = {path: i + 1 for i, path in enumerate(paths)}  # node index in the tree; root is 0
    batch, device = root.shape[0], root.device
    tokens = torch.zeros(batch, len(paths) + 1, dtype=torch.long, device=device)
    tokens[:, 0] = root
    anchor_logp = {(): root_logp}
    entry: dict[tuple[int, ...], int] = {(): -1}
    entries = 0
    for start in range(0, config.depth, k):
        group = [p for p in paths if start < len(p) <= start + k]
        for path in group:
            anchor = path[:start]
            ranked = anchor_logp[anchor][:, len(path) - start - 1].topk(config.widest_rank, dim=-1).indices
            tokens[:, index[path]] = ranked[:, path[-1]]
        next_anchors = [p for p in group if len(p) == start + k and any(q[: len(p)] == p and q != p for q in paths)]
        if not next_anchors:
            continue
        for i, path in enumerate(group):
            entry[path] = entries + i
        column = [index[p] for p in group]
        parents = [entry[p[:-1]] for p in group]
        anchors = [entry[p[:start]] for p in group]
        slots = [len(p) - start - 1 for p in group]
        wanted = [group.index(p) for p in next_anchors]
        logp = step(
            tokens[:, column],
            *(torch.tensor(v, device=device).expand(batch, -1) for v in (parents, anchors, slots, wanted)),
        )
        for i, path in enumerate(next_anchors):
            anchor_logp[path] = logp[:, i]
        entries += len(group)
    parents = torch.tensor([-1] + [index.get(p[:-1], 0) for p in paths], device=device)
    return Tree.from_parents(tokens, parents.expand(batch, -1).clone(), config.depth)
