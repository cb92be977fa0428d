"""Draft training: feature dumps (tiny targets, a random-weight world model with the shipped processor and
chat template), loss masks, data readers, training, acceptance of a trained draft, exact resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tiny import llama, llava, llava_inputs, qwen, qwen_inputs, text_inputs
from typer.testing import CliRunner

from specflash import Draft, DraftConfig, SpeculativeGenerator, Target, TreeConfig, autoregressive_generate
from specflash.cli import app
from specflash.train import (
    FeatureStore,
    RunConfig,
    TrainConfig,
    encode_conversation,
    extend_with_generation,
    open_source,
    record_from_inputs,
    train,
    write_dump,
)
from specflash.train.data import rebuild_embeds
from specflash.train.encode import assistant_mask_by_offsets, fit_media, tokenizer_of
from specflash.world.models import shipped_path
from specflash.world.processing import load_processor

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


# -- dumping from already-tokenised inputs (tiny targets have no processor) --------------------------------
@pytest.mark.parametrize(
    "make,inputs",
    [
        (qwen, lambda: qwen_inputs(images=1, video_frames=4)),
        (llava, lambda: {k: v[:1] if k != "pixel_values" else v[:2] for k, v in llava_inputs([2]).items()}),
    ],
)
def test_record_keeps_f_and_rebuilds_e(tmp_path, make, inputs):
    target = make()
    batch = inputs()
    mask = torch.zeros(batch["input_ids"].shape[1], dtype=torch.bool)
    mask[-3:] = True
    write_dump(
        target, lambda n: record_from_inputs(target, batch, mask), 1, tmp_path, {"data": "tiny"}, dtype="float32"
    )
    record = FeatureStore(tmp_path)[0]
    _, prefill = target.prefill(target.prepare(batch))
    assert record.spans == prefill.spans[0] and len(record.spans) >= 2
    assert len(record.visual_embeds) == sum(s.length for s in record.spans)
    assert torch.equal(record.features, prefill.features[0])
    assert torch.equal(rebuild_embeds(target, record), prefill.embeds[0])
    assert torch.equal(record.loss_mask, mask)


def test_dump_resumes_after_a_failure_and_refuses_other_settings(tmp_path):
    target = llama()
    prompts = [text_inputs(1, 4, seed=s) for s in range(5)]
    made = []

    def make(n, fail_at=None):
        if n == fail_at:
            raise RuntimeError("killed")
        made.append(n)
        return record_from_inputs(target, *extend_with_generation(target, prompts[n], 4))

    with pytest.raises(RuntimeError):
        write_dump(target, lambda n: make(n, fail_at=3), 5, tmp_path, {"data": "x"}, samples_per_shard=2)
    with pytest.raises(ValueError, match="unfinished"):
        FeatureStore(tmp_path)
    made.clear()
    index = write_dump(target, make, 5, tmp_path, {"data": "x"}, samples_per_shard=2)
    assert made == [2, 3, 4]  # the first shard was kept
    assert [s["samples"] for s in index["shards"]] == [2, 2, 1] and len(FeatureStore(tmp_path)) == 5
    with pytest.raises(ValueError, match="other settings"):
        write_dump(target, make, 5, tmp_path, {"data": "y"}, samples_per_shard=2)


def test_self_distilled_mask_covers_the_generated_tokens_only():
    target = llama()
    prompt = text_inputs(1, 5)
    extended, mask = extend_with_generation(target, prompt, 6)
    plain = autoregressive_generate(target, prompt, max_new_tokens=6).new_token_ids[0]
    assert extended["input_ids"][0, prompt["input_ids"].shape[1] :].tolist() == plain
    assert mask.tolist() == [False] * prompt["input_ids"].shape[1] + [True] * len(plain)


# -- a world model: stock processor, chat template with {% generation %} -----------------------------------
@pytest.fixture(scope="module")
def world_llava(tmp_path_factory) -> Path:
    """A random-weight world-llava-tiny: the same tokenizer, processor and chat template as the shipped one."""
    from specflash.world.build import new_model

    path = tmp_path_factory.mktemp("world-llava")
    new_model("world-llava-tiny", "tiny", path, seed=0).save_pretrained(path)
    return path


def _world_target(path: Path) -> Target:
    target = Target.from_pretrained(path)
    target.processor = load_processor(path)
    return target


def test_loss_mask_covers_only_assistant_tokens(world_llava):
    target = _world_target(world_llava)
    tokenizer = tokenizer_of(target.processor)
    source = open_source("world:caption,instruct,video:2")
    image_id = target.model.config.image_token_id
    for n in range(len(source)):
        conversation = source[n]
        inputs, mask = encode_conversation(target, conversation)
        ids = inputs["input_ids"][0]
        answers = [m["content"][0]["text"] + "<|im_end|>" for m in conversation.messages if m["role"] == "assistant"]
        assert tokenizer.decode(ids[mask]) == "".join(answers)
        assert not mask[ids == image_id].any() and (ids == image_id).sum() >= 64
        # The offset method (templates without generation markers) finds the same tokens.
        short_ids, short_mask = assistant_mask_by_offsets(tokenizer, fit_media(target, conversation)[0])
        assert tokenizer.decode([t for t, m in zip(short_ids, short_mask, strict=True) if m]) == "".join(answers)


def test_dump_cli_teacher_forced_and_self_distilled(world_llava, tmp_path):
    teacher, distilled = tmp_path / "teacher", tmp_path / "distilled"
    args = ["dump", "--target", str(world_llava), "--data", "world:caption,instruct:1", "--samples-per-shard", "1"]
    result = runner.invoke(app, [*args, "--out", str(teacher)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*args, "--out", str(distilled), "--self-distill", "--max-new-tokens", "6"])
    assert result.exit_code == 0, result.output
    index = json.loads((distilled / "index.json").read_text())
    assert index["complete"] and index["settings"]["mode"] == "self-distill" and len(index["shards"]) == 2
    for n in range(2):
        record = FeatureStore(distilled)[n]
        # a random target's own answers: at most 6 tokens (stop token included) per assistant turn
        assert 1 <= int(record.loss_mask.sum()) <= 6 * 3
        assert int(FeatureStore(teacher)[n].loss_mask.sum()) > int(record.loss_mask.sum())
        assert len(record.spans) == 1 and record.visual_embeds.shape == (64, 128)
    again = runner.invoke(app, [*args, "--out", str(teacher)])  # resume: everything is done already
    assert again.exit_code == 0, again.output
    bad = runner.invoke(app, [*args, "--out", str(teacher), "--data", "world:nope"])
    assert bad.exit_code == 2 and "unknown world tasks" in bad.output


def test_dump_cli_on_the_shipped_world_model(tmp_path):
    if not (shipped_path("world-llava-tiny") / "model.safetensors").is_file():
        pytest.skip(
            "world-llava-tiny is not shipped in this checkout (no model.safetensors); the same path runs "
            "on a random-weight world model in test_dump_cli_teacher_forced_and_self_distilled"
        )
    result = runner.invoke(
        app,
        [
            "dump",
            "--target",
            "world-llava-tiny",
            "--data",
            "world:caption:2",
            "--out",
            str(tmp_path),
            "--self-distill",
            "--max-new-tokens",
            "32",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(FeatureStore(tmp_path)) == 2


# -- JSON readers ----------------------------------------------------------------------------------------------
def test_llava_instruct_and_sharegpt_readers(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    items = [
        {
            "id": "x",
            "image": "a.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat color?"},
                {"from": "gpt", "value": "Red."},
                {"from": "human", "value": "Sure?"},
                {"from": "gpt", "value": "Yes."},
            ],
        },
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
    ]
    (tmp_path / "data.json").write_text(json.dumps(items))
    source = open_source(str(tmp_path / "data.json"))
    first, second = source[0], source[1]
    assert first.messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": "What color?"}]
    assert [m["role"] for m in first.messages] == ["user", "assistant", "user", "assistant"]
    assert len(first.images) == 1 and first.images[0].getpixel((0, 0)) == (255, 0, 0)
    assert second.images == [] and second.messages[1]["content"] == [{"type": "text", "text": "Hello."}]
    for item, message in [
        ({"image": "missing.png", "conversations": items[0]["conversations"]}, "does not exist"),
        ({"image": ["a.png", "a.png"], "conversations": items[0]["conversations"]}, "2 image"),
        ({"conversations": [{"from": "bot", "value": "x"}]}, "unknown speaker"),
        ({"conversations": [{"from": "human", "value": "x"}]}, "no assistant"),
    ]:
        (tmp_path / "bad.json").write_text(json.dumps([item]))
        with pytest.raises(ValueError, match=message):
            open_source(str(tmp_path / "bad.json"))[0]
    for spec, message in [
        ("world:caption:x", "integers"),
        ("data.csv", "unknown data"),
        (str(tmp_path / "none.json"), "does not exist"),
    ]:
        with pytest.raises(ValueError, match=message):
            open_source(spec)


# -- training ----------------------------------------------------------------------------------------------------
PROMPTS = 16
CONTINUATION = 24


def _distilled_dump(target: Target, out: Path) -> Path:
    prompts = [text_inputs(1, 6, seed=s) for s in range(PROMPTS)]
    write_dump(
        target,
        lambda n: record_from_inputs(target, *extend_with_generation(target, prompts[n], CONTINUATION)),
        PROMPTS,
        out,
        {"data": "tiny"},
        samples_per_shard=6,
    )
    return out


def _mean_tau(target: Target, draft: Draft) -> float:
    taus = []
    for seed in range(PROMPTS):
        prompt = text_inputs(1, 6, seed=seed)
        # all 60 nodes every cycle: tau measures the draft, not this machine's timings
        tree = TreeConfig(adaptive=False)
        speculative = SpeculativeGenerator(target, draft, tree).generate(prompt, max_new_tokens=CONTINUATION)
        plain = autoregressive_generate(target, prompt, max_new_tokens=CONTINUATION)
        assert speculative.new_token_ids == plain.new_token_ids
        taus.append(speculative.stats.tau)
    return sum(taus) / len(taus)


def test_training_reduces_loss_and_the_trained_draft_raises_tau(tmp_path):
    target = llama()
    data = _distilled_dump(target, tmp_path / "data")
    config = RunConfig(
        DraftConfig(k=2),
        TrainConfig(lr=3e-3, batch_size=4, steps=150, eval_fraction=0.25, noise_std=0.02, warmup_steps=5),
    )
    result = train(target, data, tmp_path / "draft", config)
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    assert result.eval["samples"] == 4 and result.eval["accuracy"][0] > 0.3, result.eval
    trained = Draft.from_pretrained(tmp_path / "draft")
    untrained = Draft.for_target(target, DraftConfig(k=2))
    trained_tau, untrained_tau = _mean_tau(target, trained), _mean_tau(target, untrained)
    print(
        f"loss {first:.3f} -> {last:.3f}; held-out top-1 {result.eval['accuracy']}; "
        f"tau untrained {untrained_tau:.2f}, trained {trained_tau:.2f}"
    )
    assert trained_tau > untrained_tau + 0.3


def test_training_with_compression_on_a_visual_target(tmp_path):
    target = qwen()
    batch = qwen_inputs(images=1, video_frames=4)
    extended, mask = extend_with_generation(target, batch, 6)
    write_dump(target, lambda n: record_from_inputs(target, extended, mask), 2, tmp_path / "data", {"data": "q"})
    config = RunConfig(DraftConfig(k=2, latents=4), TrainConfig(batch_size=2, steps=3, eval_fraction=0.0))
    result = train(target, tmp_path / "data", tmp_path / "draft", config)
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    draft = Draft.from_pretrained(tmp_path / "draft")
    assert draft.compressor is not None
    plain = autoregressive_generate(target, batch, max_new_tokens=6).new_token_ids
    assert SpeculativeGenerator(target, draft).generate(batch, max_new_tokens=6).new_token_ids == plain


def test_group_pass_adds_its_loss_and_reports_its_accuracy(tmp_path):
    target = llama()
    data = _distilled_dump(target, tmp_path / "data")
    settings = {"lr": 3e-3, "batch_size": 4, "steps": 2, "eval_fraction": 0.25}
    plain = train(target, data, tmp_path / "plain", RunConfig(DraftConfig(k=2), TrainConfig(**settings)))
    rehearsed = train(
        target, data, tmp_path / "group", RunConfig(DraftConfig(k=2), TrainConfig(**settings, group_pass_weight=0.5))
    )
    # Same initialisation and first batch: the first loss differs by the weighted group loss only.
    assert rehearsed.losses[0] > plain.losses[0]
    assert "group_accuracy" not in plain.eval and len(rehearsed.eval["group_accuracy"]) == 2
    logged = json.loads((tmp_path / "group" / "metrics.jsonl").read_text().splitlines()[0])
    assert len(logged["group_accuracy"]) == 2


def test_training_refuses_user_mistakes(tmp_path):
    target = llama()
    data = _distilled_dump(target, tmp_path / "data")
    with pytest.raises(ValueError, match="another target"):
        train(llava(), data, tmp_path / "a")
    with pytest.raises(ValueError, match="slot_weights"):
        train(target, data, tmp_path / "b", RunConfig(DraftConfig(k=2), TrainConfig(slot_weights=[1.0], steps=1)))
    with pytest.raises(ValueError, match="not a feature dump"):
        train(target, tmp_path, tmp_path / "c")
    train(target, data, tmp_path / "d", RunConfig(train=TrainConfig(steps=1)))
    with pytest.raises(ValueError, match="--resume"):
        train(target, data, tmp_path / "d", RunConfig(train=TrainConfig(steps=1)))
    (tmp_path / "bad.toml").write_text("[train]\nlearning_rate = 1\n")
    result = runner.invoke(
        app,
        [
            "train",
            "--target",
            "x",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "e"),
            "--config",
            str(tmp_path / "bad.toml"),
        ],
    )
    assert result.exit_code == 2 and "unknown keys ['learning_rate']" in result.output


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[train]\nlr = "fast"\n', "[train]: lr must be float, got 'fast'"),
        ("[draft]\nk = 2.5\n", "[draft]: k must be int, got 2.5"),
        ("[draft]\nheads = true\n", "[draft]: heads must be int, got True"),
        ("[train]\nseed = false\n", "[train]: seed must be int, got False"),
        ('[train]\nslot_weights = [1.0, "2"]\n', "[train]: slot_weights must be list[float], got [1.0, '2']"),
        ("[train]\nmixed_precision = 16\n", "[train]: mixed_precision must be str, got 16"),
        ("train = 3\n", "[train] must be a table, got 3"),
        ("[train]\nlr = nan\n", "[train]: lr must be finite, got nan"),
        ("[train]\nslot_weights = [1.0, inf]\n", "[train]: slot_weights must be finite, got [1.0, inf]"),
        ("[draft]\nrope_theta = inf\n", "[draft]: rope_theta must be finite, got inf"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_refused_before_any_work(tmp_path, toml, message):
    (tmp_path / "bad.toml").write_text(toml)
    args = ["--target", "never-loaded", "--data", str(tmp_path), "--out", str(tmp_path / "out")]
    result = runner.invoke(app, ["train", *args, "--config", str(tmp_path / "bad.toml")])
    assert result.exit_code == 2 and f"bad.toml {message}" in " ".join(result.output.split()), result.output


@pytest.mark.parametrize("train", [{"lr": math.nan}, {"grad_clip": math.inf}, {"slot_weights": [1.0, math.nan]}])
def test_a_train_config_number_that_is_not_finite_is_refused(train):
    with pytest.raises(ValueError, match=f"train.{next(iter(train))} must be finite"):
        TrainConfig(**train)


@pytest.mark.parametrize("draft", [{"rope_theta": 0}, {"rms_norm_eps": -1e-6}, {"rms_norm_eps": math.nan}])
def test_a_draft_config_float_that_is_not_a_positive_number_is_refused(draft):
    with pytest.raises(ValueError, match=f"DraftConfig.{next(iter(draft))} must be a finite number > 0"):
        DraftConfig(**draft)


def test_a_config_takes_an_int_for_a_float_and_leaves_sizes_open():
    config = RunConfig.from_dict(
        {"draft": {"rope_theta": 10000, "heads": None}, "train": {"lr": 1, "slot_weights": [1, 0.5]}}
    )
    assert config.train.lr == 1 and config.draft.rope_theta == 10000 and config.draft.heads is None


def test_resume_after_a_kill_repeats_the_uninterrupted_run(tmp_path):
    target = llama()
    target.model.save_pretrained(tmp_path / "target")
    data = _distilled_dump(target, tmp_path / "data")
    (tmp_path / "run.toml").write_text(
        "[draft]\nk = 2\n[train]\nlr = 1e-3\nbatch_size = 2\nsteps = 600\nsave_every = 25\nwarmup_steps = 10\n"
        "noise_std = 0.05\neval_fraction = 0.2\nseed = 3\n"
    )
    args = ["--target", str(tmp_path / "target"), "--data", str(data), "--config", str(tmp_path / "run.toml")]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "specflash.cli", "train", *args, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 90
    while not list((killed / "checkpoints").glob("step-*/trainer_state.json")):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    process.kill()
    process.wait()
    assert not (killed / "model.safetensors").exists(), "the run finished before it could be killed"
    reference = Target.from_pretrained(tmp_path / "target")
    resumed = runner.invoke(app, ["train", *args, "--out", str(killed), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    train(reference, data, tmp_path / "straight", RunConfig.from_json(killed / "run_config.json"))

    def log(run):
        return [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert [e["step"] for e in log("killed")] == list(range(1, 601))
    assert [e["samples"] for e in log("killed")] == [e["samples"] for e in log("straight")]
    assert [e["loss"] for e in log("killed")] == [e["loss"] for e in log("straight")]
    a, b = load_file(killed / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
