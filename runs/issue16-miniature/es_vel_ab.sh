#!/bin/bash
# A/B of encoder_substitution's denoiser-output term at the demo's budget, 64 MiniBench prompts (eighth sitting).
# Usage: bash runs/issue16-miniature/es_vel_ab.sh NAME VEL STEPS VPROMPTS ROWS EVERY
set -e
cd "$(dirname "$0")/../.."
NAME=$1; export VEL=$2 STEPS=$3 VPROMPTS=$4 ROWS=$5 EVERY=$6 MB=${MB:-64}
envsubst < runs/issue16-miniature/es-vel.yaml > /tmp/es-$NAME.yaml
.venv/bin/neocompress apply /tmp/es-$NAME.yaml -o out/es-$NAME --force --time --no-progress
.venv/bin/python - "$NAME" <<'PY'
import json, sys
d = json.load(open(f"out/es-{sys.argv[1]}/neocompress.json")); r = d["pass_log"][0]; rep = r["report"]; mb = rep["minibench"]
print(sys.argv[1], "seconds", round(r["seconds"]), "train", rep["train"]["wall_time_s"])
for k in ("before", "after"):
    print(k, round(mb[k]["total"], 3), {p: round(v, 3) for p, v in mb[k]["parts"].items()})
print("difference", mb["difference"]["total"])
print("heldout", rep["heldout_embeddings"]["after"], "velocity", rep["denoiser_velocity"]["after"])
PY
