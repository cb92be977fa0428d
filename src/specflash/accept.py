"""Acceptance: which drafted tokens the target agrees with, and its own next ("bonus") token.

Greedy keeps the longest root-to-node path whose tokens equal the target's argmax at each parent.
Sampling is recursive rejection sampling over siblings (SpecInfer / EAGLE). The tree proposes each
child deterministically (top-k of the draft), so the distribution a child was drawn from is a point
mass on it: the test accepts child x with probability min(1, p(x) / 1), and on rejection the residual
is p with x removed, renormalised. Output is then distributed exactly as the target's own sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specflash.tree import Tree


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if not self.temperature >= 0:  # also refuses NaN
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:  # also refuses NaN
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Target distribution after temperature, top-k and top-p (the Hugging Face order)."""
        logits = logits.float() / self.temperature
        if self.top_k:
            kth = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1:
            ordered, order = logits.sort(dim=-1)
            tail = ordered.softmax(-1).cumsum(-1) <= 1 - self.top_p
            tail[..., -1] = False
            logits = logits.masked_fill(tail.scatter(-1, order, tail), float("-inf"))
        return logits.softmax(-1)

    def choose(self, logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One token per row from logits [B, V]."""
        if self.greedy:
            return logits.argmax(-1)
        probs = self.probs(logits).cpu().double()
        return torch.multinomial(probs, 1, generator=generator).flatten().to(logits.device)


@dataclass
class Acceptance:
    path: torch.Tensor  # [B, W] node indices from the root along the accepted path (padded)
    length: torch.Tensor  # [B] nodes on the path, root included (1 + accepted draft tokens)
    bonus: torch.Tensor  # [B] the target's token after the path


def accept(tree: Tree, logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> Acceptance:
    if tree.size == 1:  # a plain step: the root alone, its next token drawn as plain decoding draws it
        lengths = torch.ones_like(tree.tokens[:, 0])
        return Acceptance(torch.zeros_like(tree.tokens), lengths, sampling.choose(logits[:, 0], generator))
    if sampling.greedy:
        return _accept_greedy(tree, logits)
    return _accept_sampled(tree, logits, sampling, generator)


def _accept_greedy(tree: Tree, logits: torch.Tensor) -> Acceptance:
    choice = logits.argmax(-1)  # [B, T]
    parents = tree.parents.clamp(min=0)
    agrees = tree.tokens == choice.gather(1, parents)
    accepted = torch.zeros_like(agrees)
    accepted[:, 0] = True
    for depth in range(1, tree.max_depth + 1):
        accepted |= (tree.depths == depth) & agrees & accepted.gather(1, parents)
    size = tree.size
    order = torch.arange(size, 0, -1, device=logits.device)  # ties between equal depths: lowest index
    key = torch.where(accepted, tree.depths * (size + 1) + order, -1)
    best = key.argmax(-1)
    return _path_to(tree, best, choice.gather(1, best[:, None]).flatten())


def _path_to(tree: Tree, node: torch.Tensor, bonus: torch.Tensor) -> Acceptance:
    rows = torch.arange(tree.tokens.shape[0], device=node.device)
    depth = tree.depths[rows, node]
    width = int(depth.max()) + 1
    path = torch.zeros(len(rows), width, dtype=torch.long, device=node.device)
    current = node.clone()
    for level in range(width - 1, -1, -1):
        here = depth >= level
        path[:, level] = torch.where(here, current, path[:, level])
        current = torch.where(here & (level > 0), tree.parents[rows, current].clamp(min=0), current)
    return Acceptance(path, depth + 1, bonus)


def _accept_sampled(tree: Tree, logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> Acceptance:
    probs = sampling.probs(logits).cpu().double()
    tokens, parents = tree.tokens.cpu().tolist(), tree.parents.cpu().tolist()
    ends, bonuses = [], []
    for row in range(len(tokens)):
        children: list[list[int]] = [[] for _ in tokens[row]]
        for node, parent in enumerate(parents[row][1:], start=1):
            children[parent].append(node)
        node, residual = 0, probs[row, 0].clone()
        while True:
            for child in children[node]:
                token = tokens[row][child]
                if torch.rand((), generator=generator, dtype=torch.float64) < residual[token]:
                    node, residual = child, probs[row, child].clone()
                    break
                residual[token] = 0
                residual /= residual.sum()
            else:
                break
        ends.append(node)
        bonuses.append(int(torch.multinomial(residual, 1, generator=generator)))
    device = logits.device
    return _path_to(tree, torch.tensor(ends, device=device), torch.tensor(bonuses, device=device))
