#!/bin/bash
# step_distill's student noise levels, A/B on 64 MiniBench prompts (eighth sitting). Usage: sd_levels_ab.sh LEVELS
set -e
cd "$(dirname "$0")/../.."
export LEVELS=$1
envsubst < runs/issue16-miniature/sd-levels.yaml > /tmp/sd-$LEVELS.yaml
.venv/bin/neocompress apply /tmp/sd-$LEVELS.yaml -o out/sd-levels-$LEVELS --force --time --no-progress
.venv/bin/python - "$LEVELS" <<'PY'
import json, sys
d = json.load(open(f"out/sd-levels-{sys.argv[1]}/neocompress.json")); r = d["pass_log"][0]; rep = r["report"]
print("levels", sys.argv[1], "seconds", round(r["seconds"]))
mb = rep["minibench"]
for k, v in mb.items():
    if isinstance(v, dict) and "total" in v:
        print(k, round(v["total"], 3), {p: round(x, 3) for p, x in v["parts"].items()})
    elif isinstance(v, dict):
        print(k, {a: b for a, b in v.items() if a == "total"})
PY
