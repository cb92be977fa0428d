#!/usr/bin/env bash
# Train the drafts of one world target: dump self-distilled features of its training split, then train
# one draft per config in configs/ (eagle, latents, sar, flash by default), writing <out>/<target>-<name>.
#   bash scripts/world_drafts.sh TARGET [OUT] [N] [DEVICE]
# TARGET: a shipped world name or a directory; N: conversations per task (default 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
target=$1
out=${2:-runs/drafts}
n=${3:-2000}
device=${4:-cpu}
drafts=${DRAFTS:-eagle latents sar flash}
name=$(basename "$target")
case "$name" in
  *text*) tasks=text ;;
  *qwen*) tasks=caption,instruct,video ;;
  *) tasks=caption,instruct,video ;;
esac
mkdir -p "$out"
.venv/bin/specflash dump --target "$target" --data "world:$tasks:$n" --out "$out/$name-dump" \
  --self-distill --max-new-tokens 192 --device "$device"
for draft in $drafts; do
  .venv/bin/specflash train --target "$target" --data "$out/$name-dump" --out "$out/$name-$draft" \
    --config "configs/$draft.toml"
done
