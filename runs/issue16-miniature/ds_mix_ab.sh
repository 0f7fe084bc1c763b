#!/bin/bash
# decoder_swap on the demo's world clips AND the teacher's own samples (native decode as their target), probed on
# real and sampled latents (ninth sitting): ds_samples_ab.sh with runs/issue16-miniature/ds-mix.yaml.
# Usage: ds_mix_ab.sh NAME SAMPLES STEPS
exec bash "$(dirname "$0")/ds_samples_ab.sh" "$1" "$2" "$3" ds-mix.yaml
