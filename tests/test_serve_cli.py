"""`specflash serve` and `specflash world` refuse clearly when an extra is missing or an option is wrong."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from specflash.cli import app

runner = CliRunner()


def test_a_missing_serve_extra_is_named(monkeypatch):
    monkeypatch.delitem(sys.modules, "specflash.serve", raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` raise ImportError
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "pip install 'specflash[serve]'" in " ".join(result.output.split())


def test_allow_files_must_be_a_directory(tmp_path):
    result = runner.invoke(app, ["serve", "--allow-files", str(tmp_path / "none")])
    assert result.exit_code == 2 and "is not a directory" in " ".join(result.output.split())


def test_a_tree_too_large_for_its_depth_is_refused():
    result = runner.invoke(app, ["serve", "--depth", "2", "--top-k", "2", "--total-tokens", "10"])
    assert result.exit_code == 2 and "exceeds the 6 nodes" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "99999"],
        ["serve", "--port", "-1"],
        ["serve", "--max-tokens", "0"],
        ["world", "build", "--out", "unused", "--n", "0"],
        ["world", "train", "--out", "unused", "--save-every", "0"],
        ["world", "train", "--out", "unused", "--batch", "0"],
        ["world", "train", "--out", "unused", "--threads", "0"],
        ["world", "eval", "--n", "0"],
        ["world", "eval", "--batch", "0"],
        ["world", "eval", "--threads", "0"],
    ],
)
def test_out_of_range_numbers_are_refused_before_any_work(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Invalid value" in result.output, result.output
    assert not (tmp_path / "unused").exists()
