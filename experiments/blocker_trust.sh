#!/usr/bin/env bash
# How far a default Blocker can be trusted: labels of random play under the scripted rule from 3 label seeds,
# `saferl train-blocker` with its defaults, each Blocker evaluated on fresh stores of 3 other seeds and on the
# states of a policy that leans on one action (observe mode: the rule's verdicts are the labels).
#   bash experiments/blocker_trust.sh OUT [GAME] [TRAIN_STEPS] [LEAN]      e.g. runs/trust pong 8000 LEFT:0.5
# Writes OUT/eval.jsonl (one eval-blocker --json line per Blocker and store) and OUT/blocker-<seed>.json.
set -euo pipefail
OUT=${1:?give an output folder}; GAME=${2:-pong}; STEPS=${3:-8000}; LEAN=${4:-LEFT:0.5}
SAFERL=${SAFERL:-saferl}
mkdir -p "$OUT"
for s in 7 8 99; do
  [ -d "$OUT/fresh-$s" ] || $SAFERL oversee --game "$GAME" --overseer scripted --steps 4000 --seed $s \
    --out "$OUT/fresh-$s" --no-progress --json | tail -1
done
for s in 7 8 9; do
  [ -d "$OUT/lean-$s" ] || $SAFERL oversee --game "$GAME" --overseer scripted --mode observe --policy "lean:$LEAN" \
    --steps 3000 --seed $s --out "$OUT/lean-$s" --no-progress --json | tail -1
done
for t in 1 2 3; do
  [ -d "$OUT/train-$t" ] || $SAFERL oversee --game "$GAME" --overseer scripted --steps "$STEPS" --seed $t \
    --out "$OUT/train-$t" --no-progress --json | tail -1
  $SAFERL train-blocker "$OUT/train-$t" --game "$GAME" --out "$OUT/blocker-$t" --seed $t --no-progress --json \
    | tail -1 > "$OUT/blocker-$t.json"
  for store in fresh-7 fresh-8 fresh-99 lean-7 lean-8 lean-9; do
    echo "{\"blocker\": $t, \"store\": \"$store\", \"eval\": $($SAFERL eval-blocker "$OUT/blocker-$t" "$OUT/$store" \
      --json | tail -1)}" >> "$OUT/eval.jsonl"
  done
done
