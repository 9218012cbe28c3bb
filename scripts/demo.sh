#!/usr/bin/env bash
# The README's main job. Until the search lands it shows the search space on the
# MNIST input shape; it becomes a real search on the MNIST digits.
set -euo pipefail
cd "$(dirname "$0")/.."
./nas space sample -n 3 --seed 1 --resolution 28 --in-channels 1 --classes 10 --max-width 0.5
