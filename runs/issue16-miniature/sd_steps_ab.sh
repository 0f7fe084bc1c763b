#!/bin/bash
# step_distill's training length, A/B on 64 MiniBench prompts (ninth sitting). Usage: sd_steps_ab.sh STEPS SAMPLES [GUIDANCE] [CAUCHY] [NAME]
# GUIDANCE may be a per-stage list, e.g. "[3.5, 3.5, 2.0]" (then give NAME)
set -e
cd "$(dirname "$0")/../.."
export STEPS=$1 SAMPLES=$2 GUIDANCE=${3:-3.5} CAUCHY=${4:-0.5}
name=${5:-sd-steps$STEPS-n$SAMPLES-g$GUIDANCE-c$CAUCHY}
envsubst < runs/issue16-miniature/sd-steps.yaml > /tmp/$name.yaml
.venv/bin/neocompress apply /tmp/$name.yaml -o out/$name --force --time --no-progress
.venv/bin/python runs/issue16-miniature/chain_scores.py out/$name
