#!/usr/bin/python3
"""cv_run.py MODEL.onnx INPUT.f32 BATCH OUTPUT.f32 [MODEL INPUT BATCH OUTPUT ...]

Runs exported models in OpenCV's DNN module (Debian's python3-opencv), the
second deployment runtime test_onnx checks exports against, with the contract
of ort_run.js: BATCH images of raw float32 NCHW from INPUT, `logits` written as
raw float32 to OUTPUT, "MODEL: logits B x K" printed. Exit 1 with the reason at
the first model OpenCV refuses or fails on, 2 on bad usage."""
import sys


def run_one(cv2, np, model, in_file, batch, out_file):
    net = cv2.dnn.readNetFromONNX(model)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    x = np.fromfile(in_file, dtype="<f4")
    per = x.size // batch
    if per * batch != x.size:
        raise ValueError(f"{in_file}: {x.size} floats is not {batch} images")
    # The channel count and size come from the model file itself: its input
    # is N x C x H x W with H == W (nas exports square inputs).
    import onnx
    dims = [d.dim_value for d in onnx.load(model, load_external_data=False).graph.input[0].type.tensor_type.shape.dim]
    if dims[1] * dims[2] * dims[3] != per:
        raise ValueError(f"{in_file}: {per} floats per image, the model wants {dims[1:]}")
    # One image at a time: OpenCV 4.6 imports the squeeze-excite gate's
    # broadcasting Mul (N x C x H x W by N x C x 1 x 1) as a per-channel scale
    # that holds only at batch 1; at batch 3 it fails its shape check.
    x = x.reshape(batch, dims[1], dims[2], dims[3])
    ys = []
    for b in range(batch):
        net.setInput(x[b:b + 1])
        ys.append(np.array(net.forward(), dtype="<f4"))
    y = np.ascontiguousarray(np.concatenate(ys, axis=0))
    y.tofile(out_file)
    print(f"{model}: logits {' x '.join(str(d) for d in y.shape)}")


def main():
    args = sys.argv[1:]
    if not args or len(args) % 4:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    try:
        import cv2
        import numpy as np
    except ImportError as e:
        print(f"cv_run: OpenCV's python module is not installed (scripts/setup.sh installs "
              f"python3-opencv): {e}", file=sys.stderr)
        return 1
    for i in range(0, len(args), 4):
        try:
            run_one(cv2, np, args[i], args[i + 1], int(args[i + 2]), args[i + 3])
        except Exception as e:   # cv2.error and file errors alike: name the model
            print(f"cv_run: {args[i]}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
