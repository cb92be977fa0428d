"""Token trees: one object drives both drafting and verification.

A tree is batched: row b has `size` nodes, node 0 is the root (the last accepted token, not yet seen by
the target), nodes are ordered parents-first, and each row has the same number of nodes. Two builders:

- dynamic (EAGLE-2): expand the `top_k` best frontier nodes by cumulative draft log-probability for
  `depth` levels, then keep the `total_tokens` best nodes overall;
- static: a fixed list of paths, each a list of child ranks (`(0, 1)`: the second-best child of the
  best child of the root).

Builders call `step(tokens, parent_slots)`, which runs the draft on a set of nodes and returns the
log-probabilities of their children; the slots number every node ever stepped, in call order (-1 is
the root).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Breaks ties between a node and its descendants so the kept set is always closed under ancestors.
DEPTH_TIE_BREAK = 1e-6


@dataclass(frozen=True)
class TreeConfig:
    depth: int = 6
    top_k: int = 8
    total_tokens: int = 60
    paths: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        if self.paths is not None:
            paths = _closed_paths(self.paths)
            object.__setattr__(self, "paths", paths)
            object.__setattr__(self, "depth", max(len(p) for p in paths))
            object.__setattr__(self, "total_tokens", len(paths))
            return
        for name in ("depth", "top_k", "total_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"TreeConfig.{name} must be >= 1, got {getattr(self, name)}")
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
        path = tuple(int(rank) for rank in path)
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
    def from_parents(cls, tokens: torch.Tensor, parents: torch.Tensor) -> Tree:
        batch, size = tokens.shape
        ancestors = torch.zeros(batch, size, size, dtype=torch.bool, device=tokens.device)
        depths = torch.zeros_like(parents)
        rows = torch.arange(batch, device=tokens.device)
        ancestors[:, 0, 0] = True
        for node in range(1, size):
            parent = parents[:, node]
            ancestors[:, node] = ancestors[rows, parent]
            ancestors[:, node, node] = True
            depths[:, node] = depths[rows, parent] + 1
        return cls(tokens, parents, depths, ancestors)


def grow(config: TreeConfig, root: torch.Tensor, root_logp: torch.Tensor, step: Step) -> Tree:
    """Build the tree for roots [B] whose children have draft log-probabilities root_logp [B, V]."""
    if config.is_static:
        return _grow_static(config, root, root_logp, step)
    return _grow_dynamic(config, root, root_logp, step)


def _grow_dynamic(config: TreeConfig, root: torch.Tensor, root_logp: torch.Tensor, step: Step) -> Tree:
    batch, k = root.shape[0], config.top_k
    logp, tokens = root_logp.double().topk(k, dim=-1)
    # Every proposed node, in the order proposed: token, parent record (-1 root), cumulative score.
    all_tokens, all_parents, all_scores = [tokens], [torch.full_like(tokens, -1)], [logp]
    frontier = torch.arange(k, device=root.device).expand(batch, k)  # record index of frontier nodes
    frontier_scores, frontier_tokens = logp, tokens
    frontier_parent_slots = torch.full_like(tokens, -1)
    record_slot = torch.full((batch, k + (config.depth - 1) * k * k), -1, dtype=torch.long, device=root.device)
    slots_used, records = 0, k
    rows = torch.arange(batch, device=root.device)[:, None]
    for depth in range(2, config.depth + 1):
        child_logp = step(frontier_tokens, frontier_parent_slots).double()  # [B, k, V]
        record_slot[rows, frontier] = slots_used + torch.arange(k, device=root.device)
        slots_used += k
        top_logp, top_tokens = child_logp.topk(k, dim=-1)
        scores = (frontier_scores[:, :, None] + top_logp).reshape(batch, k * k)
        scores = scores - DEPTH_TIE_BREAK * depth
        parents = frontier[:, :, None].expand(batch, k, k).reshape(batch, k * k)
        child_tokens = top_tokens.reshape(batch, k * k)
        all_tokens.append(child_tokens)
        all_parents.append(parents)
        all_scores.append(scores)
        best_scores, best = scores.topk(k, dim=-1)
        frontier_parent_slots = record_slot[rows, parents.gather(1, best)]
        frontier = records + best
        frontier_scores, frontier_tokens = best_scores, child_tokens.gather(1, best)
        records += k * k
    tokens, parents, scores = torch.cat(all_tokens, 1), torch.cat(all_parents, 1), torch.cat(all_scores, 1)
    keep = scores.topk(config.total_tokens, dim=-1).indices.sort(dim=-1).values  # parents before children
    place = torch.zeros_like(tokens)  # record -> node index in the kept tree (0: root)
    place[rows, keep] = torch.arange(1, config.total_tokens + 1, device=root.device)
    kept_parents = parents.gather(1, keep)
    node_parents = torch.where(kept_parents < 0, 0, place.gather(1, kept_parents.clamp(min=0)))
    return Tree.from_parents(
        torch.cat([root[:, None], tokens.gather(1, keep)], dim=1),
        torch.cat([torch.full_like(root[:, None], -1), node_parents], dim=1),
    )


def _grow_static(config: TreeConfig, root: torch.Tensor, root_logp: torch.Tensor, step: Step) -> Tree:
    paths = config.paths
    index = {path: i + 1 for i, path in enumerate(paths)}  # node index in the tree; root is 0
    batch = root.shape[0]
    tokens = torch.zeros(batch, len(paths) + 1, dtype=torch.long, device=root.device)
    tokens[:, 0] = root
    node_slot: dict[tuple[int, ...], int] = {(): -1}
    slots_used = 0
    ranked = {(): root_logp.topk(config.widest_rank, dim=-1).indices}
    for depth in range(1, config.depth + 1):
        level = [p for p in paths if len(p) == depth]
        for path in level:
            tokens[:, index[path]] = ranked[path[:-1]][:, path[-1]]
        expand = [p for p in level if any(q[:-1] == p for q in paths)]
        if not expand:
            continue
        node_tokens = tokens[:, [index[p] for p in expand]]
        parent_slots = torch.tensor([node_slot[p[:-1]] for p in expand], device=root.device)
        child_logp = step(node_tokens, parent_slots.expand(batch, -1))
        for i, path in enumerate(expand):
            node_slot[path] = slots_used + i
            ranked[path] = child_logp[:, i].topk(config.widest_rank, dim=-1).indices
        slots_used += len(expand)
    parents = torch.tensor([-1] + [index.get(p[:-1], 0) for p in paths], device=root.device)
    return Tree.from_parents(tokens, parents.expand(batch, -1).clone())
