"""`world build` and `world eval` refuse a user's mistake with a one-line error and exit code 2, before any work."""

import pytest
from typer.testing import CliRunner

from specflash.cli import app
from specflash.pipeline import DRAFTS
from specflash.world import evaluate

runner = CliRunner()


def _said(result) -> str:
    return " ".join(result.output.replace("│", " ").split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "bogus"], "'bogus' is not one of caption, instruct, video, text, drill"),
        (["--split", "bogus"], "'bogus' is not one of train, eval"),
        (["--task", "drill"], "'drill' is a training-only task"),
    ],
)
def test_build_refuses_an_unknown_task_or_split(tmp_path, args, message):
    result = runner.invoke(app, ["world", "build", "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2 and message in _said(result), result.output
    assert not (tmp_path / "out").exists()


def test_build_writes_a_drill_of_the_train_split(tmp_path):
    result = runner.invoke(app, ["world", "build", "--out", str(tmp_path), "--task", "text-drill", "--split", "train"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 16


@pytest.fixture
def no_evaluation(monkeypatch):
    """Fails a test whose command gets as far as evaluating."""
    monkeypatch.setattr(evaluate, "evaluate", lambda *args, **kwargs: pytest.fail("evaluation started"))


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: tmp / "file" / "metrics.json", "cannot write"),
    ],
)
def test_eval_refuses_a_json_path_it_cannot_write(tmp_path, no_evaluation, where, message):
    (tmp_path / "file").write_text("")
    result = runner.invoke(app, ["world", "eval", "--target", "world-text-tiny", "--json", str(where(tmp_path))])
    assert result.exit_code == 2 and message in _said(result), result.output


def test_eval_creates_the_json_directory_and_writes_there(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate, "evaluate", lambda *args, **kwargs: {"question_accuracy": 0.5})
    path = tmp_path / "new" / "metrics.json"
    result = runner.invoke(app, ["world", "eval", "--target", "world-text-tiny", "--json", str(path)])
    assert result.exit_code == 0, result.output
    assert path.read_text() == '{\n  "question_accuracy": 0.5\n}'


def test_eval_refuses_a_draft_as_its_target(no_evaluation):
    result = runner.invoke(app, ["world", "eval", "--target", str(DRAFTS / "world-llava-tiny-flash")])
    assert result.exit_code == 2 and "is a draft for a llava target, not a target model" in _said(result)


def test_eval_refuses_a_model_of_another_kind(tmp_path, no_evaluation):
    (tmp_path / "config.json").write_text('{"model_type": "mistral"}')
    (tmp_path / "model.safetensors").write_text("")
    result = runner.invoke(app, ["world", "eval", "--target", str(tmp_path)])
    assert result.exit_code == 2 and "is not a world target model (model type 'mistral')" in _said(result)
