#!/usr/bin/env node
// ort_run.js [--threads T] MODEL.onnx INPUT.f32 BATCH OUTPUT.f32 [MODEL INPUT BATCH OUTPUT ...]
//
// Runs exported models in ONNX Runtime (onnxruntime-node, CPU provider): for
// each job, reads BATCH images as raw little-endian float32 in the model's NCHW
// layout from INPUT, runs `input` -> `logits`, writes the logits as raw float32
// to OUTPUT and prints "MODEL: logits B x K". Several jobs share one process,
// because starting node costs more than running a small model.
// Exit 1 with the reason on stderr at the first failure, 2 on bad usage.
'use strict';
const fs = require('fs');
const path = require('path');

function loadOrt() {
    // The repository's node_modules (scripts/setup.sh installs it), wherever we run from.
    const root = path.resolve(__dirname, '..');
    try {
        return require(require.resolve('onnxruntime-node', { paths: [root, process.cwd()] }));
    } catch (e) {
        console.error('ort_run: onnxruntime-node is not installed (run scripts/setup.sh): ' + e.message);
        process.exit(1);
    }
}

async function runOne(ort, threads, model, inFile, batch, outFile) {
    const session = await ort.InferenceSession.create(model, {
        intraOpNumThreads: threads, interOpNumThreads: 1, executionProviders: ['cpu'],
    });
    const shape = session.inputMetadata[0].shape;   // ['N', C, H, W]
    const buf = fs.readFileSync(inFile);
    const x = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
    const dims = [batch, shape[1], shape[2], shape[3]];
    if (dims[1] * dims[2] * dims[3] * batch !== x.length)
        throw new Error(`${inFile}: ${x.length} floats, the model wants ${dims.join(' x ')}`);
    const out = await session.run({ input: new ort.Tensor('float32', x, dims) });
    const y = out.logits;
    fs.writeFileSync(outFile, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
    console.log(`${model}: logits ${y.dims.join(' x ')}`);
}

async function main() {
    let args = process.argv.slice(2);
    let threads = 1;
    if (args[0] === '--threads') {
        threads = parseInt(args[1], 10);
        args = args.slice(2);
    }
    if (args.length === 0 || args.length % 4 !== 0 || !(threads >= 1)) {
        console.error('usage: ort_run.js [--threads T] MODEL.onnx INPUT.f32 BATCH OUTPUT.f32 [...]');
        process.exit(2);
    }
    const ort = loadOrt();
    for (let i = 0; i < args.length; i += 4)
        await runOne(ort, threads, args[i], args[i + 1], parseInt(args[i + 2], 10), args[i + 3]);
}

main().catch((e) => { console.error('ort_run: ' + (e && e.message ? e.message : e)); process.exit(1); });
