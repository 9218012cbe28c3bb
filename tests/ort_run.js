#!/usr/bin/env node
// ort_run.js MODEL.onnx INPUT.f32 BATCH OUTPUT.f32 [THREADS]
//
// Runs an exported model in ONNX Runtime (onnxruntime-node, CPU): reads BATCH
// images as raw little-endian float32 in the model's NCHW layout from INPUT.f32,
// runs `input` -> `logits`, writes the logits as raw float32 to OUTPUT.f32 and
// prints "logits: B x K" on stdout. Exit 1 with the reason on stderr on failure.
'use strict';
const fs = require('fs');
const path = require('path');

function loadOrt() {
    // The repository's node_modules (installed by scripts/setup.sh), wherever we run from.
    const root = path.resolve(__dirname, '..');
    try {
        return require(require.resolve('onnxruntime-node', { paths: [root, process.cwd()] }));
    } catch (e) {
        console.error('ort_run: onnxruntime-node is not installed (run scripts/setup.sh): ' + e.message);
        process.exit(1);
    }
}

async function main() {
    const [model, inFile, batchArg, outFile, threadsArg] = process.argv.slice(2);
    if (!outFile) {
        console.error('usage: ort_run.js MODEL.onnx INPUT.f32 BATCH OUTPUT.f32 [THREADS]');
        process.exit(2);
    }
    const ort = loadOrt();
    const threads = threadsArg ? parseInt(threadsArg, 10) : 1;
    const session = await ort.InferenceSession.create(model, {
        intraOpNumThreads: threads, interOpNumThreads: 1, executionProviders: ['cpu'],
    });
    const shape = session.inputMetadata[0].shape;   // ['N', C, H, W]
    const buf = fs.readFileSync(inFile);
    const x = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
    const batch = parseInt(batchArg, 10);
    const per = x.length / batch;
    const dims = [batch, shape[1], shape[2], shape[3]];
    if (dims[1] * dims[2] * dims[3] !== per)
        throw new Error(`input has ${per} floats per image, the model wants ${dims.slice(1).join('x')}`);
    const out = await session.run({ input: new ort.Tensor('float32', x, dims) });
    const y = out.logits;
    fs.writeFileSync(outFile, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
    console.log(`logits: ${y.dims.join(' x ')}`);
}

main().catch((e) => { console.error('ort_run: ' + (e && e.message ? e.message : e)); process.exit(1); });
