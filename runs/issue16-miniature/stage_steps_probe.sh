#!/bin/bash
# Where does a few-step sampler lose the background? The teacher with one step in some pyramid stages and its full
# schedule in the others, 64 MiniBench prompts (eleventh sitting). Usage: stage_steps_probe.sh PIPE [PROMPTS]
set -e
cd "$(dirname "$0")/../.."
pipe=$1; n=${2:-64}
for s in "20,20,20 10,10,10" "20,20,1 10,10,1" "1,1,20 1,1,10" "1,20,20 1,10,10" "1,1,1 1,1,1"; do
  set -- $s
  echo "== first $1 later $2"
  .venv/bin/neocompress eval "$pipe" --prompts "$n" --first-steps "$1" --later-steps "$2" --json 2>&1 | grep '^{' \
    | .venv/bin/python -c "import json,sys; d=json.loads(sys.stdin.read()); print(round(d['total'],3), {k: round(v,3) for k,v in d['parts'].items()})"
done
