#!/bin/bash
# block_prune alone on builtin:tiny, kept blocks as the variable (ninth sitting).
# Usage: bp_keep_ab.sh KEEP STEPS REAL SAMPLES EVAL   (the demo's budget: 150 128 24; the quality recipe's: 600 512 128)
set -e
cd "$(dirname "$0")/../.."
export KEEP=$1 S=$2 REAL=$3 SAMPLES=$4 EVAL=${5:-64}
name=bp-keep$KEEP-s$S
envsubst < runs/issue16-miniature/bp-keep.yaml > /tmp/$name.yaml
.venv/bin/neocompress apply /tmp/$name.yaml -o out/$name --force --time --no-progress
.venv/bin/python runs/issue16-miniature/chain_scores.py out/$name
