"""Training checkpoints are safetensors + JSON and a re-run resumes where the last one stopped."""

import json
from dataclasses import asdict, replace

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from specflash.cli import app
from specflash.world.build import new_model
from specflash.world.models import shipped_path
from specflash.world.processing import load_processor
from specflash.world.train import (
    TASK_MIX,
    ResumeMismatch,
    TrainConfig,
    _batch,
    _optimizer,
    _resumed_config,
    _stage_2_options,
    answer_loss,
    check_losses,
    check_vision_lr_scale,
    default_lookup_loss_weight,
    frozen_in_stage_2,
    set_rates,
    task_mix,
    train,
)
from specflash.world.vision_warmup import projector_parameters, vision_parameters


def test_training_resumes_from_its_checkpoint(tmp_path):
    torch.set_num_threads(1)
    cfg = TrainConfig(name="world-text-tiny", out=str(tmp_path), steps=2, batch=2, save_every=1)
    train(cfg)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and state["next_index"] == 4
    assert (tmp_path / "checkpoint" / "optimizer.safetensors").exists()
    cfg.steps = 3
    final = train(cfg)
    assert final["step"] == 3 and final["next_index"] == 6
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "tokenizer.json").exists()


def test_image_target_resume_is_exact(tmp_path):
    """Warm-up, then stage 2; a run stopped after one step and resumed ends with the same weights as one
    that never stopped (optimizer moments, both parameter groups and the data position restored)."""
    torch.set_num_threads(1)
    common = {"name": "world-llava-tiny", "batch": 2, "save_every": 1, "vision_steps": 2}
    whole = TrainConfig(out=str(tmp_path / "whole"), steps=2, **common)
    train(whole)
    stopped = TrainConfig(out=str(tmp_path / "stopped"), steps=1, **common)
    train(stopped)
    stopped.steps = 2
    state = train(stopped)
    assert state["step"] == 2 and "vision_loss" in state
    assert state["config"]["lookup_loss_weight"] == 1.0  # the recipe's, kept by the resumed run
    assert state["config"]["vision_lr_scale"] == 0.1  # the default, kept by the resumed run
    assert state["config"]["freeze_vision_tower"] is False  # LLaVA's recipe trains its tower
    assert 0 <= state["vision_token_kind_accuracy"] <= 1
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "stopped" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_warm_up_only_run_goes_on_with_any_stage_2_options(tmp_path):
    """--steps 0 keeps the warm-up, which a later run in the same directory goes on from with another
    mix, loss weight and batch, ending exactly where one run with those options ends; after a stage-2
    step those options are fixed."""
    torch.set_num_threads(1)
    common = {"name": "world-llava-tiny", "vision_steps": 2, "save_every": 1}
    stage_2 = {"steps": 1, "batch": 2, "mix": {"caption": 0.5, "drill": 0.5}, "lookup_loss_weight": 0.5}
    train(TrainConfig(out=str(tmp_path / "whole"), **common, **stage_2))
    warm = train(TrainConfig(out=str(tmp_path / "warm"), **common, steps=0))
    assert warm["step"] == 0 and warm["loss"] is None and "vision_loss" in warm
    state = train(TrainConfig(out=str(tmp_path / "warm"), **common, **stage_2))
    assert state["config"]["mix"] == stage_2["mix"] and state["config"]["lookup_loss_weight"] == 0.5
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "warm" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ResumeMismatch, match="mix="):
        train(TrainConfig(out=str(tmp_path / "warm"), **common, **{**stage_2, "steps": 2, "mix": {"instruct": 1.0}}))
    with pytest.raises(ResumeMismatch, match="seed=0"):
        _resumed_config(warm["config"], TrainConfig(name="world-llava-tiny", out=str(tmp_path), seed=1), tmp_path, 0)


def test_vision_side_gets_the_scaled_rate(tmp_path):
    cfg = TrainConfig(name="world-llava-tiny", out=str(tmp_path), steps=1000, lr=2e-3, vision_lr_scale=0.25)
    model = new_model(cfg.name, "tiny", tmp_path, 0)
    optimizer = _optimizer(model, "llava", cfg)
    vision = {id(p) for p in optimizer.param_groups[1]["params"]}
    assert id(model.model.vision_tower.embeddings.patch_embedding.weight) in vision
    assert id(model.model.language_model.embed_tokens.weight) not in vision
    set_rates(optimizer, cfg, step=500)
    language_lr, vision_lr = (g["lr"] for g in optimizer.param_groups)
    assert 0 < language_lr < cfg.lr and vision_lr == pytest.approx(0.25 * language_lr)


def test_a_frozen_vision_side_keeps_its_warm_up_weights(tmp_path):
    """At vision rate scale 0 stage 2 trains the language model and leaves the vision side as the
    warm-up left it; a resumed run without a scale keeps the one it started with."""
    torch.set_num_threads(1)
    common = {"name": "world-qwen-tiny", "out": str(tmp_path), "batch": 2, "vision_steps": 1, "save_every": 1}
    warm = train(TrainConfig(steps=0, vision_lr_scale=0.0, **common))
    assert warm["config"]["vision_lr_scale"] == 0.0
    before = {k: v.clone() for k, v in load_file(tmp_path / "model.safetensors").items()}
    state = train(TrainConfig(steps=1, **common))
    assert state["step"] == 1 and state["config"]["vision_lr_scale"] == 0.0
    after = load_file(tmp_path / "model.safetensors")
    vision = [k for k in before if k.startswith("visual.")]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert not torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])
    # frozen, not merely at rate 0: AdamW keeps moments for every parameter that had a gradient
    model = new_model("world-qwen-tiny", "tiny", tmp_path, 0)
    frozen = {id(p) for p in vision_parameters(model, "qwen")}
    moments = load_file(tmp_path / "checkpoint" / "optimizer.safetensors")
    stepped = {i for i, _ in enumerate(model.parameters()) if f"{i}.exp_avg" in moments}
    assert stepped == {i for i, p in enumerate(model.parameters()) if id(p) not in frozen}
    saved = json.loads((tmp_path / "checkpoint" / "state.json").read_text())["config"]
    assert _resumed_config(saved, TrainConfig(**common), tmp_path, 1).vision_lr_scale == 0.0
    assert _resumed_config(saved, TrainConfig(vision_lr_scale=0.1, **common), tmp_path, 1).vision_lr_scale == 0.1


def test_a_frozen_vision_tower_leaves_only_its_projector_training(tmp_path):
    """With freeze_vision_tower, the Qwen2.5-VL recipe's default, stage 2 trains the language model and
    the merger, and leaves the rest of the vision side as the warm-up left it; a resumed run without the
    option keeps it."""
    torch.set_num_threads(1)
    common = {"name": "world-qwen-tiny", "out": str(tmp_path), "batch": 2, "vision_steps": 1, "save_every": 1}
    warm = train(TrainConfig(steps=0, **common))
    assert warm["config"]["freeze_vision_tower"] is True
    before = {k: v.clone() for k, v in load_file(tmp_path / "model.safetensors").items()}
    state = train(TrainConfig(steps=1, **common))
    assert state["step"] == 1 and state["config"]["freeze_vision_tower"] is True
    after = load_file(tmp_path / "model.safetensors")
    merger = [k for k in before if k.startswith("visual.merger.")]
    tower = [k for k in before if k.startswith("visual.") and k not in merger]
    assert tower and all(torch.equal(before[k], after[k]) for k in tower)
    assert merger and all(not torch.equal(before[k], after[k]) for k in merger)
    model = new_model("world-qwen-tiny", "tiny", tmp_path, 0)
    frozen = {id(p) for p in vision_parameters(model, "qwen")} - {id(p) for p in projector_parameters(model, "qwen")}
    moments = load_file(tmp_path / "checkpoint" / "optimizer.safetensors")
    stepped = {i for i, _ in enumerate(model.parameters()) if f"{i}.exp_avg" in moments}
    assert stepped == {i for i, p in enumerate(model.parameters()) if id(p) not in frozen}
    saved = json.loads((tmp_path / "checkpoint" / "state.json").read_text())["config"]
    assert _resumed_config(saved, TrainConfig(**common), tmp_path, 1).freeze_vision_tower is True
    older = {k: v for k, v in saved.items() if k != "freeze_vision_tower"}  # saved before the option
    assert _resumed_config(older, TrainConfig(**common), tmp_path, 1).freeze_vision_tower is False
    assert (
        _resumed_config(saved, TrainConfig(freeze_vision_tower=False, **common), tmp_path, 1).freeze_vision_tower
        is False
    )
    assert _stage_2_options(replace(TrainConfig(**common), **saved)).endswith(
        "--vision-lr-scale 0.1 --freeze-vision-tower"
    )


def test_what_stage_2_freezes(tmp_path):
    llava = new_model("world-llava-tiny", "tiny", tmp_path, 0)
    tower, projector = list(llava.model.vision_tower.parameters()), list(llava.model.multi_modal_projector.parameters())
    cfg = TrainConfig(name="world-llava-tiny", out="", vision_lr_scale=0.1)
    assert frozen_in_stage_2(llava, "llava", cfg) == []
    assert frozen_in_stage_2(llava, "llava", replace(cfg, freeze_vision_tower=True)) == tower
    assert frozen_in_stage_2(llava, "llava", replace(cfg, vision_lr_scale=0.0)) == tower + projector
    text = new_model("world-text-tiny", "tiny", tmp_path, 0)
    assert frozen_in_stage_2(text, "text", replace(cfg, name="world-text-tiny", freeze_vision_tower=True)) == []


@pytest.mark.parametrize("name", ["world-qwen-tiny", "world-llava-tiny", "world-text-tiny"])
def test_the_answer_loss_is_the_models_own_loss(tmp_path, name):
    """Stage 2 applies the output head at the answer positions alone: the same loss as the model's own,
    which computes logits everywhere (a mean, or a sum over a given count as in data-parallel runs)."""
    torch.set_num_threads(1)
    model = new_model(name, "tiny", tmp_path, 0)
    cfg = replace(TrainConfig(name=name, out=str(tmp_path)), mix=task_mix(name, None))
    batch, _ = _batch(load_processor(tmp_path), cfg, range(4))
    hidden = model.model(**{k: v for k, v in batch.items() if k != "labels"}).last_hidden_state
    total = 2 * (batch["labels"][:, 1:] != -100).sum()
    assert answer_loss(model, hidden, batch["labels"]).item() == pytest.approx(model(**batch).loss.item(), rel=1e-5)
    own = model(**batch, num_items_in_batch=total).loss.item()
    assert answer_loss(model, hidden, batch["labels"], total).item() == pytest.approx(own, rel=1e-5)


def test_vision_steps_are_ignored_for_the_text_target(tmp_path):
    torch.set_num_threads(1)
    state = train(TrainConfig(name="world-text-tiny", out=str(tmp_path), steps=1, batch=2, vision_steps=2))
    assert state["step"] == 1 and "vision_loss" not in state


@pytest.mark.parametrize(
    ("name", "task", "extra"),
    [
        ("world-qwen-tiny", "video", {"change_loss_weight": 1.0}),
        ("world-llava-tiny", "drill", {"lookup_loss_weight": 1.0}),
        ("world-qwen-tiny", "drill", {"lookup_loss_weight": 1.0}),
    ],
)
def test_a_step_trains_with_each_extra_loss(tmp_path, name, task, extra):
    torch.set_num_threads(1)
    common = {"steps": 1, "batch": 2, "vision_steps": 1, "mix": {task: 1.0}}
    cfg = TrainConfig(name=name, out=str(tmp_path / "plain"), lookup_loss_weight=0.0, **common)
    plain = train(cfg)
    state = train(replace(cfg, out=str(tmp_path / "extra"), **extra))
    # same weights and data: the first step's loss is the plain loss plus the weighted extra one
    assert state["step"] == 1 and state["loss"] > plain["loss"] + 0.1


def test_the_recipe_has_the_lookup_loss_on_for_image_questions_only():
    assert default_lookup_loss_weight("world-llava-tiny", None) == 1.0
    assert default_lookup_loss_weight("world-llava-tiny", {"caption": 0.5, "drill": 0.5}) == 1.0
    assert default_lookup_loss_weight("world-llava-tiny", {"caption": 1.0}) == 0.0  # nothing to look up
    assert default_lookup_loss_weight("world-qwen-tiny", None) == 1.0
    assert default_lookup_loss_weight("world-qwen-tiny", {"caption": 0.5, "video": 0.5}) == 0.0
    assert default_lookup_loss_weight("world-text-tiny", None) == 0.0
    check_losses("world-llava-tiny", 0.0, None, {"caption": 1.0})  # the default fits a caption-only mix


def test_a_run_records_the_lookup_weight_it_trained_with(tmp_path):
    torch.set_num_threads(1)
    common = {"steps": 1, "batch": 2, "vision_steps": 1, "mix": {"caption": 1.0}}
    cfg = TrainConfig(name="world-llava-tiny", out=str(tmp_path), **common)
    assert train(cfg)["config"]["lookup_loss_weight"] == 0.0
    saved = json.loads((tmp_path / "checkpoint" / "state.json").read_text())["config"]
    resumed = _resumed_config({**saved, "lookup_loss_weight": 1.0}, replace(cfg, mix=None), tmp_path, 1)
    assert resumed.lookup_loss_weight == 1.0  # without a weight, a resumed run keeps its own


def test_a_drill_mix_trains(tmp_path):
    torch.set_num_threads(1)
    cfg = TrainConfig(
        name="world-text-tiny",
        out=str(tmp_path),
        steps=1,
        batch=2,
        mix={"text": 0.5, "text-drill": 0.5},
    )
    state = train(cfg)
    assert state["step"] == 1 and state["config"]["mix"] == {"text": 0.5, "text-drill": 0.5}


def test_a_mix_must_fit_the_target():
    with pytest.raises(ValueError, match="cannot train on caption"):
        task_mix("world-text-tiny", {"caption": 1.0})
    with pytest.raises(ValueError, match="cannot train on video"):
        task_mix("world-llava-tiny", {"caption": 0.5, "video": 0.5})
    assert task_mix("world-qwen-tiny", None) == TASK_MIX["qwen"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "world-nope"], "unknown world model"),
        (["--target", "world-text-tiny", "--mix", "caption=1"], "cannot train on caption"),
        (["--target", "world-llava-tiny", "--mix", "caption=1,drill"], "is not task=share"),
        (["--target", "world-llava-tiny", "--mix", "recipes=1"], "unknown task"),
        (["--target", "world-llava-tiny", "--mix", "caption=0"], "must be positive"),
        (["--target", "world-llava-tiny", "--mix", "caption=nan"], "must be positive and finite"),
        (["--target", "world-llava-tiny", "--mix", "caption=1,caption=2"], "given twice"),
        (["--target", "world-llava-tiny", "--change-loss-weight", "1"], "the change loss needs video"),
        (["--target", "world-text-tiny", "--lookup-loss-weight", "1"], "the lookup loss needs images"),
        (["--target", "world-llava-tiny", "--mix", "caption=1", "--lookup-loss-weight", "1"], "pair-drill to the mix"),
        (["--target", "world-qwen-tiny", "--mix", "caption=1", "--change-loss-weight", "1"], "add video to the mix"),
        (["--target", "world-qwen-tiny", "--change-loss-weight", "inf"], "must be finite and >= 0"),
        (["--target", "world-llava-tiny", "--steps", "0", "--ship"], "nothing to ship"),
        (["--target", "world-llava-tiny", "--steps", "-1"], "greater than or equal to 0"),
        (["--target", "world-llava-tiny", "--vision-lr-scale", "-0.1"], "greater than or equal to 0"),
        (["--target", "world-llava-tiny", "--vision-lr-scale", "inf"], "must be finite and >= 0"),
        (["--target", "world-llava-tiny", "--size", "bogus"], "'bogus' is not one of tiny, small"),
        (["--target", "world-llava-tiny", "--lr", "-1"], "must be positive and finite, got -1.0"),
        (["--target", "world-llava-tiny", "--lr", "0"], "must be positive and finite, got 0.0"),
        (["--target", "world-llava-tiny", "--lr", "nan"], "must be positive and finite, got nan"),
        (["--target", "world-llava-tiny", "--vision-steps", "-1"], "greater than or equal to 0"),
        (["--target", "world-llava-tiny", "--lookup-loss-weight", "-1"], "greater than or equal to 0"),
        (["--target", "world-llava-tiny", "--processes", "0"], "--processes must be between 1"),
        (["--target", "world-llava-tiny", "--seed", str(2**64)], "less than or equal to 9223372036854775807"),
    ],
)
def test_world_train_rejects_bad_options(tmp_path, args, message):
    result = CliRunner().invoke(app, ["world", "train", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in " ".join(result.output.replace("│", " ").split())


def _cli_config(tmp_path, monkeypatch, *args: str) -> TrainConfig:
    """The config `world train` resolves for these options, without training."""
    runs = []

    def record(group, cfg, state, resumed):
        runs.append(cfg)
        return {"step": cfg.steps, "loss": None, "elapsed_s": 0.0}

    monkeypatch.setattr("specflash.world.train._train", record)
    result = CliRunner().invoke(app, ["world", "train", "--out", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    return runs[0]


@pytest.mark.parametrize(
    ("name", "steps", "lr"),
    [("world-qwen-tiny", 4800, 2e-3), ("world-llava-tiny", 4800, 2e-3), ("world-text-tiny", 1500, 2e-3)],
)
def test_a_new_run_takes_the_recipes_steps_and_rate(tmp_path, monkeypatch, name, steps, lr):
    cfg = _cli_config(tmp_path, monkeypatch, "--target", name)
    assert (cfg.steps, cfg.lr) == (steps, lr)


def test_the_recipe_is_the_shipped_qwen_targets_configuration(tmp_path, monkeypatch):
    """`world train --target world-qwen-tiny` resolves the configuration the shipped target's
    training_state.json records (the output directory and checkpoint interval aside, which do not
    change the weights)."""
    cfg = _cli_config(tmp_path, monkeypatch, "--target", "world-qwen-tiny")
    shipped = json.loads((shipped_path("world-qwen-tiny") / "training_state.json").read_text())["config"]
    aside = ("out", "save_every")
    assert {k: v for k, v in asdict(cfg).items() if k not in aside} == {
        k: v for k, v in shipped.items() if k not in aside
    }


def test_a_resumed_run_keeps_its_steps_and_rate_unless_it_was_a_warm_up_only_run(tmp_path):
    """A run started with other steps and rate (given, or an older recipe's) ends as it started; a
    warm-up made with --steps 0 goes on with today's recipe; given options win in both."""
    stream = {"name": "world-qwen-tiny", "size": "tiny", "seed": 0, "batch": 16, "mix": None}
    started = {**stream, "steps": 3600, "lr": 3e-3}
    cfg = TrainConfig(name="world-qwen-tiny", out=str(tmp_path))
    for step in (0, 100):
        resumed = _resumed_config(started, cfg, tmp_path, step)
        assert (resumed.steps, resumed.lr) == (3600, 3e-3)
    warm_up_only = {**started, "steps": 0}
    resumed = _resumed_config(warm_up_only, cfg, tmp_path, 0)
    assert (resumed.steps, resumed.lr) == (4800, 2e-3)
    for saved in (started, warm_up_only):
        resumed = _resumed_config(saved, replace(cfg, steps=5000, lr=1e-3), tmp_path, 0)
        assert (resumed.steps, resumed.lr) == (5000, 1e-3)


def test_a_logged_run_reports_its_progress_line_by_line(tmp_path):
    """Written to a file rather than a terminal, rich draws its bars only once, at the end: the warm-up
    and each checkpoint still leave a line, so a log shows how a run of hours is going."""
    args = [
        "--target",
        "world-llava-tiny",
        "--vision-steps",
        "2",
        "--steps",
        "2",
        "--batch",
        "2",
        "--freeze-vision-tower",
    ]
    result = CliRunner().invoke(app, ["world", "train", "--out", str(tmp_path), "--save-every", "1", *args])
    assert result.exit_code == 0, result.output
    lines = [line.split("  loss")[0] for line in result.output.splitlines() if "  loss " in line]
    assert lines == ["vision warm-up 1/2", "vision warm-up 2/2", "step 1/2", "step 2/2"]
    assert json.loads((tmp_path / "training_state.json").read_text())["config"]["freeze_vision_tower"] is True


def test_warm_up_labels_every_token_with_its_cell():
    from specflash.world.scenes import KINDS, Scene, WorldObject
    from specflash.world.vision_warmup import TOKEN_GRID, token_labels

    kite = WorldObject(kind="kite", color="red", size="large", cell=(0, 2))
    labels = token_labels(Scene(scene_type="park", objects=[kite])).reshape(TOKEN_GRID, TOKEN_GRID, -1)
    assert labels[0, TOKEN_GRID - 1].tolist()[:1] == [KINDS.index("kite") + 1]
    assert labels[0, TOKEN_GRID - 1, 3:].tolist() == [0, 2]
    assert labels[TOKEN_GRID - 1, 0].tolist() == [0, 0, 0, 2, 0]  # empty bottom-left cell
    assert (labels[..., 0] > 0).sum() == 9  # the 3x3 tokens of the top-right cell


def test_frame_pair_labels_say_what_the_cell_held_and_how_it_changed():
    from specflash.world.scenes import KINDS, Scene, WorldObject
    from specflash.world.video import Event
    from specflash.world.video_changes import VIDEO_TOKEN_GRID as GRID
    from specflash.world.vision_warmup import CHANGES, change_labels

    kite = WorldObject(kind="kite", color="red", size="large", cell=(0, 0))
    ball = WorldObject(kind="ball", color="blue", size="small", cell=(2, 2))
    before = Scene(scene_type="park", objects=[kite, ball])
    moved = change_labels(before, Event("move", "kite", "red", 1, "right", (0, 1)), GRID).reshape(GRID, GRID, -1)
    assert moved[0, 0].tolist()[::3] == [KINDS.index("kite") + 1, CHANGES.index("away")]
    assert moved[0, GRID // 2].tolist() == [0, 0, 0, CHANGES.index("right")]  # empty before, moved in
    assert (moved[..., 3] > 0).sum() == 2 * (GRID // 3) ** 2 and moved[-1, -1, 3] == CHANGES.index("nothing")
    gone = change_labels(before, Event("disappear", "ball", "blue", 1), GRID).reshape(GRID, GRID, -1)
    assert gone[-1, -1].tolist()[::3] == [KINDS.index("ball") + 1, CHANGES.index("disappear")]
    assert (change_labels(before, None, GRID)[:, 3] == 0).all()


def test_a_change_weighs_more_than_nothing_in_the_change_head_loss():
    from specflash.world.data_parallel import SINGLE
    from specflash.world.vision_warmup import CHANGE_CLASS_WEIGHTS, CHANGES, _change_loss

    torch.manual_seed(0)
    logits = torch.randn(1, 2, len(CHANGES))
    changes = torch.tensor([[CHANGES.index("nothing"), CHANGES.index("appear")]])
    per_token = torch.nn.functional.cross_entropy(logits[0], changes[0], reduction="none")
    weight = CHANGE_CLASS_WEIGHTS[CHANGES.index("appear")]
    assert CHANGE_CLASS_WEIGHTS[CHANGES.index("nothing")] == 1 and weight > 1
    loss = _change_loss(logits, changes, CHANGE_CLASS_WEIGHTS, SINGLE)
    assert torch.allclose(loss, (per_token[0] + weight * per_token[1]) / (1 + weight))


def test_qwen_warm_up_trains_on_frame_pairs(tmp_path, monkeypatch):
    from specflash.world import vision_warmup
    from specflash.world.processing import load_processor

    weights_used, change_loss_of = [], vision_warmup._change_loss

    def change_loss(logits, changes, weights, group):
        weights_used.append(weights)
        return change_loss_of(logits, changes, weights, group)

    monkeypatch.setattr(vision_warmup, "_change_loss", change_loss)
    torch.set_num_threads(1)
    model = new_model("world-qwen-tiny", "tiny", tmp_path, 0)
    before = {k: v.clone() for k, v in model.model.visual.state_dict().items()}
    processor = load_processor(tmp_path).image_processor
    result = vision_warmup.warmup_vision(model, "qwen", processor, 0, 2, batch=4, eval_scenes=4)
    assert 0 <= result["changed_token_accuracy"] <= 1 and 0 <= result["unchanged_token_accuracy"] <= 1
    assert result["loss"] > 0
    # step 0 is stills, step 1 frame pairs, whose change head is trained with the class weights
    assert len(weights_used) == 1 and torch.equal(weights_used[0], vision_warmup.CHANGE_CLASS_WEIGHTS)
    assert any(not torch.equal(before[k], v) for k, v in model.model.visual.state_dict().items())


def test_a_resumed_run_keeps_its_data_stream(tmp_path, capsys):
    torch.set_num_threads(1)
    mix = {"text": 0.5, "text-drill": 0.5}
    train(TrainConfig(name="world-text-tiny", out=str(tmp_path), steps=1, batch=2, mix=mix))
    assert f"resumed {tmp_path}" not in capsys.readouterr().out
    resumed = train(TrainConfig(name="world-text-tiny", out=str(tmp_path), steps=2, batch=2))
    assert resumed["step"] == 2 and resumed["config"]["mix"] == mix  # no mix given: the run's own
    # and says which options it goes on with
    out = capsys.readouterr().out
    options = "--mix text=0.5,text-drill=0.5 --batch 2 --lr 0.002 --lookup-loss-weight 0 --change-loss-weight 0"
    assert f"resumed {tmp_path / 'checkpoint'} at step 1/2: {options}" in out
    image_run = TrainConfig(
        name="world-qwen-tiny",
        out="",
        mix={"drill": 1.0},
        lookup_loss_weight=1,
        change_loss_weight=0.5,
        vision_lr_scale=0.0,
        lr=3e-3,
    )
    expected = "--batch 16 --lr 0.003 --lookup-loss-weight 1 --change-loss-weight 0.5"
    expected += " --vision-lr-scale 0 --no-freeze-vision-tower"
    assert _stage_2_options(image_run).endswith(expected)
    with pytest.raises(ResumeMismatch, match="batch=2"):
        train(TrainConfig(name="world-text-tiny", out=str(tmp_path), steps=3, batch=4))
    with pytest.raises(ResumeMismatch, match="mix="):
        train(TrainConfig(name="world-text-tiny", out=str(tmp_path), steps=3, batch=2, mix={"text": 1.0}))


def test_a_checkpoint_from_before_the_extra_losses_was_trained_without_them(tmp_path):
    stream = {"name": "world-llava-tiny", "size": "tiny", "seed": 0, "batch": 16, "mix": None}
    saved = {**stream, "steps": 3000, "lr": 2e-3}  # no loss weights
    cfg = TrainConfig(name="world-llava-tiny", out=str(tmp_path))
    resumed = _resumed_config(saved, cfg, tmp_path, 1)
    assert resumed.mix == TASK_MIX["llava"] and resumed.lookup_loss_weight == 0.0
    with pytest.raises(ResumeMismatch, match="lookup_loss_weight=0.0"):
        _resumed_config(saved, replace(cfg, lookup_loss_weight=1.0), tmp_path, 1)


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -1.0])
def test_loss_weights_must_be_finite_and_not_negative(weight):
    with pytest.raises(ValueError, match="lookup-loss weight must be finite and >= 0"):
        check_losses("world-llava-tiny", 0.0, weight, None)
    with pytest.raises(ValueError, match="change-loss weight must be finite and >= 0"):
        check_losses("world-qwen-tiny", weight, 0.0, None)
    with pytest.raises(ValueError, match="vision rate scale must be finite and >= 0"):
        check_vision_lr_scale(weight)


def test_a_mix_needs_positive_finite_shares():
    with pytest.raises(ValueError, match="share of .text. must be positive and finite"):
        task_mix("world-text-tiny", {"text": float("nan")})
    with pytest.raises(ValueError, match="at least one task"):
        task_mix("world-text-tiny", {})
