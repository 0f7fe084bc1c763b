#!/bin/bash
# decoder_swap on the demo's world clips AND the teacher's own samples (native decode as their target), probed on
# real and sampled latents (ninth sitting). Usage: ds_mix_ab.sh NAME SAMPLES STEPS
set -e
cd "$(dirname "$0")/../.."
export NAME=$1 SAMPLES=$2 STEPS=$3
envsubst < runs/issue16-miniature/ds-mix.yaml > /tmp/ds-$NAME.yaml
.venv/bin/neocompress apply /tmp/ds-$NAME.yaml --force --time --no-progress
echo "== $NAME (clips 260 + teacher samples $SAMPLES, $STEPS steps)"
KINDS=real,sampled .venv/bin/python runs/issue16-miniature/taehv_probe.py out/ds-$NAME/taehv_decoder 64
