#!/usr/bin/env bash
# setup-ort.sh — ONNX Runtime (CPU) for the export tests and `make bench-infer`,
# installed from npm into the repository's node_modules (ignored by git).
# --ignore-scripts keeps its install script from fetching GPU parts; the CPU
# binary ships in the package. Does nothing when it already loads. Never fails
# the build: without network it warns, and tests/test_onnx.c then says what is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
ORT_VERSION=1.30.0
if node -e "require('onnxruntime-node').listSupportedBackends()" >/dev/null 2>&1; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "setup-ort: npm is missing (scripts/setup.sh installs it); ONNX Runtime not installed" >&2
    exit 0
fi
echo "setup-ort: npm install onnxruntime-node@$ORT_VERSION" >&2
npm install --ignore-scripts --no-save --no-package-lock --no-audit --no-fund \
    "onnxruntime-node@$ORT_VERSION" >&2 ||
    echo "setup-ort: warning: onnxruntime-node could not be installed; the ONNX tests need it" >&2
node -e "require('onnxruntime-node').listSupportedBackends()" >/dev/null 2>&1 ||
    echo "setup-ort: warning: onnxruntime-node does not load here" >&2
exit 0
