"""specflash bench on the world LLaVA target: files, fields, exactness, metrics as defined."""

import json

import pytest
from test_pipeline_helpers import target_dir
from typer.testing import CliRunner

from specflash import Draft, DraftConfig
from specflash.cli import app
from specflash.pipeline import load_target

FIELDS = {
    "method",
    "task",
    "speedup",
    "tau",
    "alpha_by_depth",
    "draft_forwards_per_cycle",
    "tree_tokens_per_cycle",
    "draft_time_share",
    "tokens_per_s",
    "prefill_time",
    "equal_to_ar",
}


def _bench(root, *extra: str):
    """Bench the world LLaVA target against two untrained drafts saved under root; (out, output)."""
    target = load_target(str(target_dir()), "cpu")
    for name, config in (("eagle", DraftConfig()), ("flash", DraftConfig(k=2, latents=8))):
        Draft.for_target(target, config).save_pretrained(root / name)
    out = root / "out"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--target",
            str(target_dir()),
            "--draft",
            f"eagle={root / 'eagle'}",
            "--draft",
            f"flash={root / 'flash'}",
            "--tasks",
            "caption,video",
            "--n",
            "2",
            "--max-new-tokens",
            "12",
            "--depth",
            "4",
            "--top-k",
            "4",
            "--total-tokens",
            "12",
            "--out",
            str(out),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _bench(tmp_path_factory.mktemp("bench"))


def test_files_and_fields(run) -> None:
    out, output = run
    summary = json.loads((out / "summary.json").read_text())
    assert {"results", "hardware", "versions"} <= set(summary)
    assert {(r["method"], r["task"]) for r in summary["results"]} == {
        (m, t) for m in ("ar", "eagle", "flash") for t in ("caption", "video")
    }
    assert all(set(r) >= FIELDS for r in summary["results"])
    for name in ("speedup.png", "tau.png", "acceptance_by_depth.png"):
        assert (out / name).stat().st_size > 1000
    assert "speedup" in output


def test_exact_at_temperature_zero_and_metrics_as_defined(run) -> None:
    out, _ = run
    summary = json.loads((out / "summary.json").read_text())
    for task in ("caption", "video"):
        ar = [json.loads(line) for line in (out / f"ar-{task}.jsonl").read_text().splitlines()]
        ar_rate = sum(r["new_tokens"] for r in ar) / sum(r["wall_time"] for r in ar)
        for method in ("ar", "eagle", "flash"):
            rows = [json.loads(line) for line in (out / f"{method}-{task}.jsonl").read_text().splitlines()]
            assert len(rows) == 2 and {"new_tokens", "wall_time", "prefill_time", "accept_lengths"} <= set(rows[0])
            result = next(r for r in summary["results"] if r["method"] == method and r["task"] == task)
            assert result["equal_to_ar"] is True
            tokens = sum(r["new_tokens"] for r in rows)
            assert result["speedup"] == pytest.approx(tokens / sum(r["wall_time"] for r in rows) / ar_rate)
            assert result["tau"] == pytest.approx(tokens / sum(len(r["accept_lengths"]) for r in rows))
            assert all(sum(r["accept_lengths"]) == r["new_tokens"] for r in rows)
            sizes = [size for r in rows for size in r["tree_sizes"]]
            assert all(1 <= size <= 12 for size in sizes) and (method == "ar") == (not sizes)
            assert result["tree_tokens_per_cycle"] == pytest.approx(sum(sizes) / len(sizes) if sizes else 0)
        assert next(r for r in summary["results"] if r["method"] == "ar" and r["task"] == task)["tau"] == 1.0


def test_adaptive_trees_record_their_costs_and_fixed_ones_verify_all(run, tmp_path) -> None:
    out, _ = run
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["tree"]["adaptive"] is True
    for method in ("eagle", "flash"):
        cost = settings["cycle_costs"][method]
        assert cost["sizing_time"] > 0 and len(cost["verify_seconds_by_nodes"]) == 13
    fixed, _ = _bench(tmp_path, "--fixed-tree")
    summary = json.loads((fixed / "summary.json").read_text())
    assert summary["settings"]["tree"]["adaptive"] is False and summary["settings"]["cycle_costs"] == {}
    for method in ("eagle", "flash"):
        rows = [json.loads(line) for line in (fixed / f"{method}-caption.jsonl").read_text().splitlines()]
        assert {size for r in rows for size in r["tree_sizes"]} == {12}


def test_bad_draft_argument_is_a_clear_error(tmp_path) -> None:
    arguments = ["bench", "--target", str(target_dir()), "--draft", "nonsense", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code != 0 and "NAME=PATH" in result.output


def test_an_unknown_task_is_refused_before_any_task_runs(tmp_path) -> None:
    arguments = ["bench", "--tasks", "caption,bogus", "--n", "1", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2 and "unknown task(s) 'bogus'" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()
