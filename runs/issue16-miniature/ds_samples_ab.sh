#!/bin/bash
# decoder_swap on the teacher's own samples (native decoder as the target), probed on real and sampled latents.
# Usage: ds_samples_ab.sh NAME COUNT STEPS [RECIPE]   (RECIPE in runs/issue16-miniature: ds-samples.yaml, whose
# variable is COUNT, or ds-mix.yaml, the world clips besides, whose variable is SAMPLES)
set -e
cd "$(dirname "$0")/../.."
export NAME=$1 COUNT=$2 SAMPLES=$2 STEPS=$3
envsubst < "runs/issue16-miniature/${4:-ds-samples.yaml}" > /tmp/ds-$NAME.yaml
.venv/bin/neocompress apply /tmp/ds-$NAME.yaml --force --time --no-progress
echo "== $NAME (${4:-ds-samples.yaml}, teacher samples $COUNT, $STEPS steps)"
KINDS=real,sampled .venv/bin/python runs/issue16-miniature/taehv_probe.py out/ds-$NAME/taehv_decoder 64
