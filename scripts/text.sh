#!/usr/bin/env bash
# Text to image on the emoji sprites (docs/guide/text.md): the project's own text encoder, an emoji category
# classifier, a UNet trained for 30 minutes to attend to the encoder, and the held-out names drawn at several
# guidance scales. Needs the shared folder's emoji (DIFFUSE_DATA or ../shared/data).
set -euo pipefail
BIN=${DIFFUSE_BIN:-target/release/diffuse}
OUT=${1:-runs/text}
mkdir -p "$OUT"
[ -e "$OUT/emoji-text" ] || $BIN text train --data emoji --out "$OUT/emoji-text" --steps 1500
[ -e "$OUT/emoji-clf" ] || $BIN classifier train --data emoji --out "$OUT/emoji-clf" --steps 1000
[ -e "$OUT/emoji-words/checkpoint.safetensors" ] ||
    $BIN train --data emoji --text "$OUT/emoji-text" --out "$OUT/emoji-words" --time-budget 1800 --quiet
$BIN text eval --encoder "$OUT/emoji-text" --run "$OUT/emoji-words" --split test --per 2 --guidance 0,1,3 \
    --classifier "$OUT/emoji-clf" --grid "$OUT/held-out.png" --json-out "$OUT/held-out.json"
$BIN text eval --encoder "$OUT/emoji-text" --run "$OUT/emoji-words" --split train --limit 190 --per 2 --guidance 3 \
    --classifier "$OUT/emoji-clf" --grid "$OUT/train.png" --json-out "$OUT/train.json"
