#!/usr/bin/env bash
# The README's main job: a real energy-aware search on the MNIST digits
# (jobs/mnist-small.yaml: 24 candidates, about two minutes on 2 cores), then its
# report. A run already in runs.db under the same name is resumed, not repeated;
# `rm runs.db` starts afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d data/mnist ] || bash scripts/fetch-mnist.sh
./nas run jobs/mnist-small.yaml
./nas report mnist-small --db runs.db --out out/mnist-small/report
