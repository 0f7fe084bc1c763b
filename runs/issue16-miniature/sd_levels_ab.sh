#!/bin/bash
# step_distill's student noise levels, A/B on 64 MiniBench prompts (eighth sitting). Usage: sd_levels_ab.sh LEVELS [GUIDANCE]
set -e
cd "$(dirname "$0")/../.."
export LEVELS=$1 GUIDANCE=${2:-2.0}
envsubst < runs/issue16-miniature/sd-levels.yaml > /tmp/sd-$LEVELS-g$GUIDANCE.yaml
.venv/bin/neocompress apply /tmp/sd-$LEVELS-g$GUIDANCE.yaml -o out/sd-levels-$LEVELS-g$GUIDANCE --force --time --no-progress
.venv/bin/python - "out/sd-levels-$LEVELS-g$GUIDANCE" <<'PY'
import json, sys
d = json.load(open(sys.argv[1] + "/neocompress.json")); r = d["pass_log"][0]; rep = r["report"]
print("levels", sys.argv[1], "seconds", round(r["seconds"]))
mb = rep["minibench"]
for k, v in mb.items():
    if isinstance(v, dict) and isinstance(v.get("total"), float):
        print(k, round(v["total"], 3), {p: round(x, 3) for p, x in v["parts"].items()})
    elif isinstance(v, dict):
        print(k, v.get("total"))
PY
