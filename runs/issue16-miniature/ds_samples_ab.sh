#!/bin/bash
# decoder_swap on the teacher's own samples (native decoder as the target), probed on real and sampled latents.
# Usage: ds_samples_ab.sh NAME COUNT STEPS
set -e
cd "$(dirname "$0")/../.."
export NAME=$1 COUNT=$2 STEPS=$3
envsubst < runs/issue16-miniature/ds-samples.yaml > /tmp/ds-$NAME.yaml
.venv/bin/neocompress apply /tmp/ds-$NAME.yaml --force --time --no-progress
echo "== $NAME (teacher samples $COUNT, $STEPS steps)"
KINDS=real,sampled .venv/bin/python runs/issue16-miniature/taehv_probe.py out/ds-$NAME/taehv_decoder 64
