#!/usr/bin/env bash
# Snakemake runs this once after creating the lca environment. NeuroX 1.0.9 (the latest release) pins
# torch==1.8.1, numpy==1.19.5 and transformers==4.6.1, which cannot install next to this stack; the parts the
# analysis uses (extraction, probe, ranking, ablation, top words) run on current versions, so it is installed
# without its dependencies (envs/lca.yaml lists the ones it really needs).
set -euo pipefail
pip install --no-deps "neurox==1.0.9"
