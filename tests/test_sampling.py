"""Sampling is lossless: speculative samples follow the target's own sampling distribution.

On a 6-token Llama, the joint law of the first three new tokens is computed exactly from the target
(36 + 6 + 1 forwards) and compared with 3000 speculative samples by a chi-square test. Bound: the test
fails when p < 1e-3. A control shows the same test, same sample size, rejects a mildly wrong law.
"""

import itertools

import pytest
import tiny
import torch
from scipy.stats import chisquare

from specflash import CycleCost, Draft, DraftConfig, SpeculativeGenerator, TreeConfig
from specflash.accept import Sampling

VOCAB, SAMPLES, NEW = 6, 3000, 3
P_MIN = 1e-3


def exact_joint(target, prompt: list[int], sampling: Sampling) -> dict[tuple[int, ...], float]:
    """P(x1, x2, x3) under the target's sampling law, by enumerating prefixes."""
    law: dict[tuple[int, ...], float] = {(): 1.0}
    for _ in range(NEW):
        grown = {}
        for prefix, mass in law.items():
            ids = torch.tensor([prompt + list(prefix)])
            with torch.inference_mode():
                probs = sampling.probs(target.model(input_ids=ids).logits[0, -1])
            for token in range(VOCAB):
                grown[(*prefix, token)] = mass * float(probs[token])
        law = grown
    return law


def chi_square_p(counts: dict[tuple[int, ...], int], law: dict[tuple[int, ...], float]) -> float:
    """Cells with expected count < 5 are pooled into one."""
    total = sum(counts.values())
    observed, expected, pooled_obs, pooled_exp = [], [], 0, 0.0
    for cell, mass in law.items():
        if mass * total >= 5:
            observed.append(counts.get(cell, 0))
            expected.append(mass * total)
        else:
            pooled_obs += counts.get(cell, 0)
            pooled_exp += mass * total
    if pooled_exp > 0:
        observed.append(pooled_obs)
        expected.append(pooled_exp)
    scale = total / sum(expected)  # the law's masses sum to 1 only up to float rounding
    expected = [e * scale for e in expected]
    return float(chisquare(observed, expected).pvalue)


def make_setup(config: DraftConfig):
    target = tiny.llama(seed=3, vocab=VOCAB)
    target.model.generation_config.eos_token_id = None
    with torch.no_grad():  # a peaked law (not near-uniform) makes a wrong sampler easier to catch
        target.model.lm_head.weight *= 4
    draft = Draft.for_target(target, config, seed=3)
    # adaptive trees, by a cost given rather than measured: every run draws the same samples per seed
    cost = CycleCost(draft=1.0, verify=tuple(1.0 + 0.2 * n for n in range(7)))
    generator = SpeculativeGenerator(target, draft, TreeConfig(depth=3, top_k=2, total_tokens=6), cost=cost)
    return target, generator, [1, 3, 4, 5, 3]


@pytest.fixture(scope="module")
def setup():
    return make_setup(DraftConfig())


@pytest.mark.parametrize(("top_p", "k"), [(1.0, 1), (0.8, 1), (1.0, 3)])
def test_speculative_sampling_matches_target_law(top_p: float, k: int) -> None:
    """k = 3: the semi-autoregressive draft proposes all three levels from one pass."""
    target, generator, prompt = make_setup(DraftConfig(k=k))
    sampling = Sampling(temperature=1.0, top_p=top_p)
    law = exact_joint(target, prompt, sampling)
    counts: dict[tuple[int, ...], int] = {}
    accepted = 0
    for seed in range(SAMPLES):
        result = generator.generate(
            {"input_ids": torch.tensor([prompt])}, max_new_tokens=NEW, temperature=1.0, top_p=top_p, seed=seed
        )
        cell = tuple(result.new_token_ids[0])
        counts[cell] = counts.get(cell, 0) + 1
        accepted += sum(result.stats.accept_lengths[0]) - len(result.stats.accept_lengths[0])
    # The rejection path and the acceptance path both ran many times.
    assert SAMPLES // 10 < accepted < SAMPLES * (NEW - 1), accepted
    assert chi_square_p(counts, law) > P_MIN


def test_chi_square_detects_a_wrong_law(setup) -> None:
    """Control: samples from temperature 0.7 are told apart from the temperature-1 law."""
    target, _, prompt = setup
    right = exact_joint(target, prompt, Sampling(temperature=1.0))
    wrong = exact_joint(target, prompt, Sampling(temperature=0.7))
    cells = list(wrong)
    draws = torch.multinomial(
        torch.tensor([wrong[c] for c in cells]), SAMPLES, replacement=True, generator=torch.Generator().manual_seed(0)
    )
    counts: dict[tuple[int, ...], int] = {}
    for index in draws.tolist():
        counts[cells[index]] = counts.get(cells[index], 0) + 1
    assert chi_square_p(counts, right) < P_MIN


def test_sampling_is_reproducible_per_seed(setup) -> None:
    _target, generator, prompt = setup
    inputs = {"input_ids": torch.tensor([prompt])}
    runs = [generator.generate(inputs, max_new_tokens=12, temperature=1.0, seed=s).new_token_ids for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert len(set(itertools.chain.from_iterable(map(tuple, r) for r in runs))) >= 1
