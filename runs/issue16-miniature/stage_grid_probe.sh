#!/bin/bash
# Few steps in the last pyramid stage on the uniform grid (1, 1/2 ...) against upstream's (1, 0.001): the undistilled
# pipeline, 64 MiniBench prompts (eleventh sitting). Usage: stage_grid_probe.sh PIPE [PROMPTS] "FIRST LATER GRID" ...
set -e
cd "$(dirname "$0")/../.."
pipe=$1; n=$2; shift 2
for s in "$@"; do
  set -- $s
  echo "== first $1 later $2 grid $3"
  .venv/bin/neocompress eval "$pipe" --prompts "$n" --first-steps "$1" --later-steps "$2" --grid "$3" --json 2>&1 \
    | grep '^{' | .venv/bin/python -c "import json,sys; d=json.loads(sys.stdin.read()); print(round(d['total'],3), {k: round(v,3) for k,v in d['parts'].items()})"
done
