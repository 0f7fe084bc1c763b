#!/bin/bash
# DMD2's GAN term in step_distill, A/B on 64 MiniBench prompts with the background per caption (eleventh sitting).
# Usage: sd_gan_ab.sh GAN_WEIGHT [STEPS]
set -e
cd "$(dirname "$0")/../.."
export GAN=$1 STEPS=${2:-300}
name=sd-gan$GAN-s$STEPS
envsubst < runs/issue16-miniature/sd-gan.yaml > /tmp/$name.yaml
.venv/bin/neocompress apply /tmp/$name.yaml -o out/$name --force --time --no-progress
.venv/bin/python runs/issue16-miniature/chain_scores.py out/$name
.venv/bin/python runs/issue16-miniature/background_probe.py out/$name 64 1,1,1/1,1,1
