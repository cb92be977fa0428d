"""`specflash serve` refuses clearly when the serve extra is missing or an option is wrong."""

from __future__ import annotations

import sys

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
