#!/usr/bin/python3
"""onnx_check.py MODEL.onnx [MODEL.onnx ...] [--expect-op OP ...] [--meta KEY ...] [--qdq-gemm]

Checks an exported model with Debian's python3-onnx, the reference checker:
onnx.checker.check_model(full_check=True) and strict shape inference (which
must give `logits` the shape [N, classes] with the batch still symbolic).
Prints per model one line per fact ("ops: Conv=12 Add=3 ...", "opset: 17",
"meta: key") and exits 0 when every model passes, 1 with the model and the
reason on stderr at the first that does not, 2 on bad usage.
--qdq-gemm (int8 models): every Gemm must read a DequantizeLinear output, and
its weight and bias must be DequantizeLinear (axis 0) of an int8 [out, in]
and an int32 [out] initializer with [out] scales, its output float (no
QuantizeLinear reads the logits); prints "gemm: NAME int8 [out, in]" per Gemm,
and fails unless the file is smaller than the same model with float32 Gemm
weights and biases (the export before the Gemms were quantized).
Run with /usr/bin/python3: the python3 first on PATH may lack Debian's onnx.
"""
import sys

import onnx
from onnx import shape_inference


def dims(vi):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in vi.type.tensor_type.shape.dim]


def check_qdq_gemms(g):
    """The head's Gemms in an int8 model, as ONNX Runtime's quantizer writes them."""
    inits = {t.name: t for t in g.initializer}
    made_by = {n.output[0]: n for n in g.node}
    T = onnx.TensorProto
    gemms = [n for n in g.node if n.op_type == "Gemm"]
    if not gemms:
        raise ValueError("--qdq-gemm: the model has no Gemm")
    for n in gemms:
        x = made_by.get(n.input[0])
        if x is None or x.op_type != "DequantizeLinear":
            raise ValueError(f"Gemm {n.name}: input {n.input[0]} is not dequantized")
        trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
        for k, dtype, ndim in ((1, T.INT8, 2), (2, T.INT32, 1)):
            dq = made_by.get(n.input[k]) if len(n.input) > k else None
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
                raise ValueError(f"Gemm {n.name}: input {k} is not a DequantizeLinear of an initializer")
            q, s = inits[dq.input[0]], inits.get(dq.input[1])
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            if q.data_type != dtype or len(q.dims) != ndim or axis != 0 or s is None \
                    or list(s.dims) != [q.dims[0]] or (k == 1 and trans_b != 1):
                raise ValueError(f"Gemm {n.name}: input {k} is {T.DataType.Name(q.data_type)} "
                                 f"{list(q.dims)}, axis {axis}, scale {list(s.dims) if s else None}, "
                                 f"transB {trans_b}")
            if k == 1:
                print(f"gemm: {n.name} int8 {list(q.dims)}")
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[0] == "logits":
            raise ValueError("the logits are quantized")


def float_gemm_size(model):
    """The model's size with each Gemm's weight and bias float32 initializers
    (their dequantized values) in place of the DequantizeLinear nodes."""
    from onnx import numpy_helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    made_by = {n.output[0]: n for n in g.node}
    drop_nodes, drop_inits, n_weights = set(), set(), 0
    for n in [n for n in g.node if n.op_type == "Gemm"]:
        for k in (1, 2):
            dq = made_by[n.input[k]]
            q = numpy_helper.to_array(inits[dq.input[0]]).astype("float32")
            s = numpy_helper.to_array(inits[dq.input[1]]).astype("float32")
            v = q * s.reshape([-1] + [1] * (q.ndim - 1))
            g.initializer.append(numpy_helper.from_array(v, dq.output[0]))
            drop_nodes.add(dq.output[0])
            drop_inits.update(dq.input)
            n_weights += q.size if k == 1 else 0
    keep = [n for n in g.node if n.output[0] not in drop_nodes]
    del g.node[:]
    g.node.extend(keep)
    keep = [t for t in g.initializer if t.name not in drop_inits]
    del g.initializer[:]
    g.initializer.extend(keep)
    return m.ByteSize(), n_weights


def check(path, expect_ops, expect_meta, qdq_gemm=False):
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
    if qdq_gemm:
        check_qdq_gemms(model.graph)
        size, before, n_w = model.ByteSize(), *float_gemm_size(model)
        print(f"gemm: {size} bytes, {before} with float32 Gemm weights ({n_w} of them)")
        if size >= before:
            raise ValueError(f"--qdq-gemm: {size} bytes, not smaller than {before} with float32 Gemms")
    print("ops: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    print(f"opset: {model.opset_import[0].version} ir: {model.ir_version}")
    print(f"input: {din} logits: {dout}")
    for k in sorted(meta):
        print(f"meta: {k}")


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    paths, expect_ops, expect_meta, qdq_gemm = [], [], [], False
    i = 1
    while i < len(argv):
        if argv[i] == "--expect-op" and i + 1 < len(argv):
            expect_ops.append(argv[i + 1]); i += 2
        elif argv[i] == "--meta" and i + 1 < len(argv):
            expect_meta.append(argv[i + 1]); i += 2
        elif argv[i] == "--qdq-gemm":
            qdq_gemm = True; i += 1
        elif argv[i].startswith("--"):
            print(f"onnx_check: unknown option {argv[i]}", file=sys.stderr)
            return 2
        else:
            paths.append(argv[i]); i += 1
    for p in paths:
        try:
            check(p, expect_ops, expect_meta, qdq_gemm)
        except Exception as e:  # the checker's own errors too: one line, exit 1
            print(f"onnx_check: {p}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
