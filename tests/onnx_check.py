#!/usr/bin/python3
"""onnx_check.py MODEL.onnx [MODEL.onnx ...] [--expect-op OP ...] [--meta KEY ...]

Checks an exported model with Debian's python3-onnx, the reference checker:
onnx.checker.check_model(full_check=True) and strict shape inference (which
must give `logits` the shape [N, classes] with the batch still symbolic).
Prints per model one line per fact ("ops: Conv=12 Add=3 ...", "opset: 17",
"meta: key") and exits 0 when every model passes, 1 with the model and the
reason on stderr at the first that does not, 2 on bad usage.
Run with /usr/bin/python3: the python3 first on PATH may lack Debian's onnx.
"""
import sys

import onnx
from onnx import shape_inference


def dims(vi):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in vi.type.tensor_type.shape.dim]


def check(path, expect_ops, expect_meta):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    g = inferred.graph
    if [i.name for i in g.input] != ["input"] or [o.name for o in g.output] != ["logits"]:
        raise ValueError(f"inputs {[i.name for i in g.input]}, outputs "
                         f"{[o.name for o in g.output]}; expected ['input'] and ['logits']")
    din, dout = dims(g.input[0]), dims(g.output[0])
    if len(din) != 4 or len(dout) != 2 or din[0] != "N" or dout[0] != "N":
        raise ValueError(f"input {din}, logits {dout}: the batch must be symbolic 'N'")
    inits = {t.name: list(t.dims) for t in g.initializer}
    # An int8 (QDQ) model dequantizes its weights and biases: those values are
    # constants (no batch), and a Conv's weight is its DequantizeLinear's input.
    const = {n.output[0]: inits[n.input[0]] for n in g.node
             if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    # Every intermediate value must have a fully inferred shape with the same batch.
    for vi in g.value_info:
        if vi.name in const:
            continue
        d = dims(vi)
        if not d or d[0] != "N" or any(isinstance(x, str) or x <= 0 for x in d[1:]):
            raise ValueError(f"value {vi.name} has shape {d} after inference")
    if len(g.value_info) + 1 < len(g.node) - len(const):
        raise ValueError(f"shape inference typed {len(g.value_info)} values of {len(g.node)} nodes")
    # Depthwise weights must be [C, 1, k, k] with group C (the checker lets a wrong one through).
    for n in g.node:
        if n.op_type != "Conv":
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        w = inits.get(n.input[1], const.get(n.input[1]))
        if w is None or (group > 1 and (w[0] != group or w[1] != 1)):
            raise ValueError(f"Conv {n.name}: weight {w} with group {group}")
    counts = {}
    for n in g.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    for op in expect_ops:
        if op not in counts:
            raise ValueError(f"no {op} node (ops: {sorted(counts)})")
    meta = {p.key: p.value for p in model.metadata_props}
    for k in expect_meta:
        if k not in meta or not meta[k]:
            raise ValueError(f"metadata {k} missing (have {sorted(meta)})")
    print(f"model: {path}")
    print("ops: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    print(f"opset: {model.opset_import[0].version} ir: {model.ir_version}")
    print(f"input: {din} logits: {dout}")
    for k in sorted(meta):
        print(f"meta: {k}")


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    paths, expect_ops, expect_meta = [], [], []
    i = 1
    while i < len(argv):
        if argv[i] == "--expect-op" and i + 1 < len(argv):
            expect_ops.append(argv[i + 1]); i += 2
        elif argv[i] == "--meta" and i + 1 < len(argv):
            expect_meta.append(argv[i + 1]); i += 2
        elif argv[i].startswith("--"):
            print(f"onnx_check: unknown option {argv[i]}", file=sys.stderr)
            return 2
        else:
            paths.append(argv[i]); i += 1
    for p in paths:
        try:
            check(p, expect_ops, expect_meta)
        except Exception as e:  # the checker's own errors too: one line, exit 1
            print(f"onnx_check: {p}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
