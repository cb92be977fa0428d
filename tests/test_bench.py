"""specflash bench on the world LLaVA target: files, fields, exactness, metrics as defined."""

import json

import pytest
from test_pipeline_helpers import target_dir
from typer.testing import CliRunner

from specflash import Draft, DraftConfig
from specflash.bench.runner import Bench
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


def _bench(root, *extra: str, exit_code: int = 0):
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
    assert result.exit_code == exit_code, result.output
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
    assert "partial" not in summary and not list(out.glob("*.tmp"))
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
            assert all(0 <= size <= 12 for size in sizes)  # 0: a plain step (a pause)
            assert (method == "ar") == (not sizes)
            assert result["tree_tokens_per_cycle"] == pytest.approx(sum(sizes) / len(sizes) if sizes else 0)
            assert result["plain_step_share"] == pytest.approx(sizes.count(0) / len(sizes) if sizes else 0)
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


def _clean_error(result, *expected: str) -> None:
    """Exit code 2 with an `error:` naming each expected piece, no traceback. Compared without whitespace:
    rich wraps the message at the terminal's width, inside a long path too."""
    output = "".join(result.output.split())
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert output.startswith("error:") and "Traceback" not in output
    assert all("".join(piece.split()) in output for piece in expected), result.output


@pytest.mark.parametrize("where", ["missing", "empty", "config-not-json", "no-weights"])
@pytest.mark.parametrize("with_draft", [False, True])
def test_a_bad_target_is_named_in_a_clear_error(tmp_path, where: str, with_draft: bool) -> None:
    target = tmp_path / where
    if where != "missing":
        target.mkdir()
    if where == "config-not-json":
        (target / "config.json").write_text("{not json")
    if where == "no-weights":
        (target / "config.json").write_text((target_dir() / "config.json").read_text())
    drafts = ["--draft", "eagle=world-llava-tiny-eagle"] if with_draft else []
    result = CliRunner().invoke(app, ["bench", "--target", str(target), *drafts, "--out", str(tmp_path / "out")])
    # Named as the target, not as its missing default drafts (looked up only once the target has loaded).
    _clean_error(result, str(target))
    assert "draft" not in result.output and not (tmp_path / "out").exists()


def test_ablate_with_named_drafts_is_refused(tmp_path) -> None:
    arguments = ["bench", "--ablate", "--draft", "mine=world-llava-tiny-flash", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, arguments)
    _clean_error(result, "leave out --draft, or --ablate")
    assert not (tmp_path / "out").exists()


def test_text_runs_on_an_image_target(tmp_path) -> None:
    out, _ = _bench(tmp_path, "--tasks", "caption,text", "--n", "1")
    results = json.loads((out / "summary.json").read_text())["results"]
    assert {(r["method"], r["task"]) for r in results} == {
        (m, t) for m in ("ar", "eagle", "flash") for t in ("caption", "text")
    }
    assert all(r["equal_to_ar"] for r in results)


def test_a_text_only_target_refuses_image_tasks_and_defaults_to_text(tmp_path) -> None:
    arguments = ["bench", "--target", "world-text-tiny", "--n", "1", "--max-new-tokens", "6"]
    refused = CliRunner().invoke(app, [*arguments, "--tasks", "caption,text", "--out", str(tmp_path / "refused")])
    _clean_error(refused, "task(s) caption need images", "'world-text-tiny' is a text-only model")
    assert not (tmp_path / "refused").exists()
    result = CliRunner().invoke(app, [*arguments, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["settings"]["tasks"] == ["text"] and {r["task"] for r in summary["results"]} == {"text"}


@pytest.mark.parametrize("out", ["file", "file/below"])
def test_out_through_a_file_is_refused_before_any_work(tmp_path, monkeypatch, out: str) -> None:
    (tmp_path / "file").write_text("keep me")
    # Refused before the target loads, not when the first results are written.
    monkeypatch.setattr("specflash.bench.cli.load_target", lambda *_: pytest.fail("the target was loaded"))
    result = CliRunner().invoke(app, ["bench", "--out", str(tmp_path / out)])
    _clean_error(result, f"--out {tmp_path / out} cannot be a directory: {tmp_path / 'file'} is a file")
    assert (tmp_path / "file").read_text() == "keep me"


def test_an_interrupted_run_keeps_its_finished_samples(tmp_path, monkeypatch) -> None:
    run, calls = Bench._run, []

    def interrupted(self, method: str, inputs: object):
        calls.append(method)
        if len(calls) == 3 + 3 + 2:  # warm-ups, the first caption sample, then Ctrl-C inside the second
            raise KeyboardInterrupt
        return run(self, method, inputs)

    monkeypatch.setattr(Bench, "_run", interrupted)
    out, output = _bench(tmp_path, exit_code=130)
    assert "interrupted after 1 of 4 samples" in " ".join(output.split())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] == {"samples_done": 1, "samples_planned": 4}
    assert {(r["method"], r["task"], r["samples"]) for r in summary["results"]} == {
        (m, "caption", 1) for m in ("ar", "eagle", "flash")
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "ar-caption.jsonl",
        "eagle-caption.jsonl",
        "flash-caption.jsonl",
        "summary.json",
    ]
    assert all(len((out / f"{m}-caption.jsonl").read_text().splitlines()) == 1 for m in ("ar", "eagle", "flash"))
