#!/usr/bin/env bash
# ort-measure.sh [MODEL.onnx] SPEC.json [ort-measure.js options]
#
# The external measuring command for calibrating nas's predictor on ONNX Runtime:
#   nas calibrate --measure-cmd 'scripts/ort-measure.sh {spec}'
#   nas calibrate --measure-cmd 'scripts/ort-measure.sh {onnx} {spec}'
# With only a spec, the network is exported first (untrained: latency does not
# depend on the weights) with `nas export --spec`. Prints the key=value lines of
# scripts/ort-measure.js (latency_ms=, latency_spread=, energy_mj=, energy_source=,
# energy_quality=). Options such as --threads 2 are passed on.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
nas="${NAS_BIN:-}"
[ -n "$nas" ] || { [ -x "$root/nas" ] && nas="$root/nas"; } || nas="$root/build/nas"
[ $# -ge 1 ] || { echo "usage: ort-measure.sh [MODEL.onnx] SPEC.json [options]" >&2; exit 2; }

model=""
if [[ "$1" == *.onnx ]]; then
    model="$1"; shift
    # The spec, when given, describes the model already exported: nothing to do with it.
    if [ $# -ge 1 ] && [[ "$1" != --* ]]; then shift; fi
else
    spec="$1"; shift
    tmp="$(mktemp -d /tmp/nas-ort-measure-XXXXXX)"
    trap 'rm -rf "$tmp"' EXIT
    model="$tmp/model.onnx"
    "$nas" export --spec "$spec" --out "$model" --force >/dev/null 2>"$tmp/err" ||
        { cat "$tmp/err" >&2; exit 1; }
fi
exec node "$root/scripts/ort-measure.js" "$model" "$@"
