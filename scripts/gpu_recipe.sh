#!/usr/bin/env bash
# The GPU recipe: small world targets, their drafts, the bench at temperature 0 and 1, the profile of
# real-size shapes, one step per call:
#   bash scripts/gpu_recipe.sh targets|drafts|bench|profile
# Where a call is capped (a lent GPU's 10 minutes), run `targets` and `drafts` one target at a time
# (TARGETS below); their times on a GPU are not measured yet.
# Results land under $OUT (default runs/gpu); record them in docs/results.md with the hardware named.
# SIZE (small), N (bench samples per task, 100), NDUMP (dump conversations per task, 4000) scale it;
# STEPS and VISION_STEPS override the recipes' training steps; TARGETS (default: all three) narrows a
# step to some targets, e.g. one call per target where a device session caps a call's time.
# SIZE=tiny STEPS=2 VISION_STEPS=2 N=2 NDUMP=4 DEVICE=cpu smoke-tests the whole recipe on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:?usage: gpu_recipe.sh targets|drafts|bench|profile}
out=${OUT:-runs/gpu}
size=${SIZE:-small}
n=${N:-100}
ndump=${NDUMP:-4000}
device=${DEVICE:-cuda}
steps=()
[ -n "${STEPS:-}" ] && steps+=(--steps "$STEPS")
[ -n "${VISION_STEPS:-}" ] && steps+=(--vision-steps "$VISION_STEPS")
targets=${TARGETS:-world-llava-tiny world-qwen-tiny world-text-tiny}
cli=.venv/bin/specflash

case "$step" in
  targets)
    for t in $targets; do
      $cli world train --target "$t" --size "$size" --out "$out/targets/$t" --device "$device" ${steps[@]+"${steps[@]}"} \
        --threads "$(nproc)"
    done ;;
  drafts)
    for t in $targets; do
      bash scripts/world_drafts.sh "$out/targets/$t" "$out/drafts" "$ndump" "$device"
    done ;;
  bench)
    for t in $targets; do
      case "$t" in *text*) tasks=text; parts="eagle sar" ;; *qwen*) tasks=caption,instruct,video; parts="eagle latents sar flash" ;;
        *) tasks=caption,instruct; parts="eagle latents sar flash" ;; esac
      args=()
      for p in $parts; do args+=(--draft "$p=$out/drafts/$t-$p"); done
      for temperature in 0 1; do
        $cli bench --target "$out/targets/$t" "${args[@]}" --tasks "$tasks" --n "$n" --temperature "$temperature" \
          --device "$device" --out "$out/bench/$t-T$temperature"
      done
    done ;;
  profile)
    $cli bench --profile --shape llava-1.5-7b --kind image --device "$device" --out "$out/profile/llava-1.5-7b-image"
    $cli bench --profile --shape qwen2.5-vl-7b --kind image --device "$device" --out "$out/profile/qwen2.5-vl-7b-image"
    $cli bench --profile --shape qwen2.5-vl-7b --kind video --device "$device" --out "$out/profile/qwen2.5-vl-7b-video" ;;
  *)
    echo "unknown step $step: use targets, drafts, bench or profile" >&2
    exit 2 ;;
esac
