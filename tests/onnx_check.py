#!/usr/bin/python3
"""onnx_check.py MODEL.onnx [--expect-op OP ...] [--meta KEY ...] [--json]

Checks an exported model with Debian's python3-onnx, the reference checker:
onnx.checker.check_model(full_check=True) and strict shape inference (which
must give `logits` the shape [N, classes] with the batch still symbolic).
Prints one line per fact ("ops: Conv=12 Add=3 ...", "opset: 17", "meta: key") and
exits 0 when the model passes, 1 with the reason on stderr when it does not.
Run with /usr/bin/python3: the python3 first on PATH may lack Debian's onnx.
"""
import sys

import onnx
from onnx import shape_inference


def dims(vi):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in vi.type.tensor_type.shape.dim]


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    path = argv[1]
    expect_ops, expect_meta = [], []
    i = 2
    while i < len(argv):
        if argv[i] == "--expect-op" and i + 1 < len(argv):
            expect_ops.append(argv[i + 1]); i += 2
        elif argv[i] == "--meta" and i + 1 < len(argv):
            expect_meta.append(argv[i + 1]); i += 2
        else:
            print(f"onnx_check: unknown argument {argv[i]}", file=sys.stderr)
            return 2
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    g = inferred.graph
    if [i.name for i in g.input] != ["input"] or [o.name for o in g.output] != ["logits"]:
        raise SystemExit(f"{path}: inputs {[i.name for i in g.input]}, outputs "
                         f"{[o.name for o in g.output]}; expected ['input'] and ['logits']")
    din, dout = dims(g.input[0]), dims(g.output[0])
    if din[0] != "N" or dout[0] != "N" or len(din) != 4 or len(dout) != 2:
        raise SystemExit(f"{path}: input {din}, logits {dout}: the batch must be symbolic 'N'")
    # Every intermediate value must have a fully inferred shape with the same batch.
    for vi in g.value_info:
        d = dims(vi)
        if not d or d[0] != "N" or any(isinstance(x, str) and x != "N" or x == 0 for x in d[1:]):
            raise SystemExit(f"{path}: value {vi.name} has shape {d} after inference")
    # Depthwise weights must be [C, 1, k, k] with group C (the checker lets a wrong one through).
    inits = {t.name: list(t.dims) for t in g.initializer}
    for n in g.node:
        if n.op_type != "Conv":
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        w = inits.get(n.input[1])
        if w is None or (group > 1 and (w[0] != group or w[1] != 1)):
            raise SystemExit(f"{path}: Conv {n.name}: weight {w} with group {group}")
    counts = {}
    for n in g.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    for op in expect_ops:
        if op not in counts:
            raise SystemExit(f"{path}: no {op} node (ops: {sorted(counts)})")
    meta = {p.key: p.value for p in model.metadata_props}
    for k in expect_meta:
        if k not in meta or not meta[k]:
            raise SystemExit(f"{path}: metadata {k} missing (have {sorted(meta)})")
    print("ops: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    print(f"opset: {model.opset_import[0].version} ir: {model.ir_version}")
    print(f"input: {din} logits: {dout}")
    for k in sorted(meta):
        print(f"meta: {k}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except SystemExit:
        raise
    except Exception as e:  # the checker's own errors: one line, exit 1
        print(f"onnx_check: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
