#!/usr/bin/env bash
# The README's main job: a real energy-aware search on Fashion-MNIST
# (jobs/fashion-small.yaml: 20 evaluations with multi-fidelity and a 10-epoch final training, 6-9 minutes on 2 cores), then its
# report. A run already in runs.db under the same name is resumed, not repeated;
# `rm runs.db` starts afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

./nas run jobs/fashion-small.yaml
./nas report fashion-small --db runs.db --out out/fashion-small/report
