#!/bin/bash
# DMD2's GAN term in step_distill, A/B on 64 MiniBench prompts with the background per caption (eleventh sitting).
# and DMD's paired regression; CAUCHY=<w> sets the unpaired Cauchy regression (default 0.5, the pass's);
# TARGET="1, 1, 2" the student's steps per stage (default 1, 1, 1; a multi-step stage samples on the uniform grid),
# TARGET_LATER the later units' (default: TARGET); GUIDANCE="3.5, 3.5, 2.0" the real score's CFG per stage.
# Usage: sd_gan_ab.sh GAN_WEIGHT [STEPS] [PAIRED_WEIGHT]  (TAG=... names a variant)
set -e
cd "$(dirname "$0")/../.."
export GAN=$1 STEPS=${2:-300} PAIRED=${3:-0} CAUCHY=${CAUCHY:-0.5} TARGET=${TARGET:-1, 1, 1}
export TARGET_LATER=${TARGET_LATER:-$TARGET} GUIDANCE=${GUIDANCE:-3.5, 3.5, 2.0}
name=sd-gan$GAN-s$STEPS-p$PAIRED${TAG:+-$TAG}
envsubst < runs/issue16-miniature/sd-gan.yaml > /tmp/$name.yaml
.venv/bin/neocompress apply /tmp/$name.yaml -o out/$name --force --time --no-progress
.venv/bin/python runs/issue16-miniature/chain_scores.py out/$name
.venv/bin/python runs/issue16-miniature/background_probe.py out/$name 64 "${TARGET// /}/${TARGET_LATER// /}/${GRID:-upstream}"
