"""bench --profile's measurements, on a tiny target (the real shapes need a GPU to mean anything)."""

import tiny

from specflash import DraftConfig, TreeConfig
from specflash.bench.profile import profile
from specflash.bench.shapes import SHAPES, build


def test_profile_measures_every_part() -> None:
    target = tiny.llava(seed=0)
    tree = TreeConfig(depth=4, top_k=3, total_tokens=9)
    result = profile(
        target, tiny.llava_inputs([1]), tree_sizes=(1, 4), new_tokens=6, tree=tree, flash=DraftConfig(k=2, latents=4)
    )
    assert set(result["verify_ms_by_tree_tokens"]) == {"1", "4", "10"}
    assert result["copy_bandwidth_gb_s"] > 0 and result["floor_ms_per_token"] > 0
    assert result["plain_ms_per_token"] > 0
    eagle, flash = result["drafts"]["eagle"], result["drafts"]["flash"]
    # One 16-token image becomes 4 latents in the FLASH draft's cache.
    assert eagle["cache_entries_after_prefill"] - flash["cache_entries_after_prefill"] == 16 - 4
    assert flash["parameters"]["slot_head"] > 0 and eagle["parameters"]["slot_head"] == 0
    for entry in (eagle, flash):
        implied = entry["implied"][0]
        cycle = entry["draft_ms_per_cycle"] + result["verify_ms_at_tree_size"]
        assert implied["speedup"] == implied["tau"] * result["plain_ms_per_token"] / cycle


def test_real_shapes_are_known() -> None:
    assert SHAPES == ("llava-1.5-7b", "qwen2.5-vl-7b")
    try:
        build("gpt-5", None, None, "cpu")
    except ValueError as error:
        assert "known: llava-1.5-7b, qwen2.5-vl-7b" in str(error)
    else:
        raise AssertionError("an unknown shape must be refused")
