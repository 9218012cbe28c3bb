#!/usr/bin/env node
// ort-measure.js MODEL.onnx [SPEC.json] [--threads T] [--batch B] [--warmup N]
//                [--repeats R] [--min-seconds S] [--watts-per-core W]
//
// Measures inference latency of an ONNX model in ONNX Runtime (onnxruntime-node,
// CPU provider), the way nas's own benchmark does: warm-up runs, then R timed
// repeats that each loop for at least S seconds; the median over repeats of the
// time per inference. Prints key=value lines, the contract of the predictor's
// external measuring command (nas calibrate --measure-cmd):
//   latency_ms=<median ms per inference>  latency_spread=<(p90-p10)/median>
//   energy_mj=<mJ per inference>          energy_source=model:cpu-time  energy_quality=estimated
//   cpu_ms=<this process's CPU time per inference> (less sensitive than latency to other load)
//   latency_call_p10_ms=, latency_call_median_ms=, latency_call_p90_ms=: percentiles of single
//     calls over all repeats, the statistic nas's own benchmark gives (the search ranks by the
//     p10); latency_ms, latency_p10_ms and latency_p90_ms are over the repeats' means
// Energy is this process's CPU time per inference times a stated power per core
// (default 10 W, nas's model meter), so it is an estimate and says so.
// SPEC.json is accepted and ignored, so that 'ort-measure.js {onnx} {spec}' works.
// Defaults: 1 thread, batch 1, 20 warm-up runs, 5 repeats of at least 0.5 s.
'use strict';
const path = require('path');

function die(msg, code) {
    console.error('ort-measure: ' + msg);
    process.exit(code);
}

function parseArgs(argv) {
    const o = { threads: 1, batch: 1, warmup: 20, repeats: 5, minSeconds: 0.5,
                watts: parseFloat(process.env.NAS_WATTS_PER_CORE || '10'), files: [] };
    const num = (flag, v, lo) => {
        const x = Number(v);
        if (v === undefined || !Number.isFinite(x) || x < lo) die(`${flag}: '${v}' is not a number >= ${lo}`, 2);
        return x;
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === '--threads') o.threads = Math.floor(num(a, argv[++i], 1));
        else if (a === '--batch') o.batch = Math.floor(num(a, argv[++i], 1));
        else if (a === '--warmup') o.warmup = Math.floor(num(a, argv[++i], 0));
        else if (a === '--repeats') o.repeats = Math.floor(num(a, argv[++i], 1));
        else if (a === '--min-seconds') o.minSeconds = num(a, argv[++i], 0);
        else if (a === '--watts-per-core') o.watts = num(a, argv[++i], 0);
        else if (a === '-h' || a === '--help') {
            console.log(require('fs').readFileSync(__filename, 'utf8').split('\n')
                .filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n'));
            process.exit(0);
        } else if (a.startsWith('--')) die(`unknown option ${a}`, 2);
        else o.files.push(a);
    }
    if (o.files.length < 1 || o.files.length > 2 || !o.files[0].endsWith('.onnx'))
        die('usage: ort-measure.js MODEL.onnx [SPEC.json] [options] (--help)', 2);
    return o;
}

function loadOrt() {
    const root = path.resolve(__dirname, '..');
    try {
        return require(require.resolve('onnxruntime-node', { paths: [root, process.cwd()] }));
    } catch (e) {
        die('onnxruntime-node is not installed (run scripts/setup.sh): ' + e.message, 1);
    }
}

function quantile(sorted, q) {
    const pos = (sorted.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

async function main() {
    const o = parseArgs(process.argv.slice(2));
    const ort = loadOrt();
    const session = await ort.InferenceSession.create(o.files[0], {
        intraOpNumThreads: o.threads, interOpNumThreads: 1, executionMode: 'sequential',
        graphOptimizationLevel: 'all', executionProviders: ['cpu'],
    });
    const shape = session.inputMetadata[0].shape;
    const dims = [o.batch, shape[1], shape[2], shape[3]];
    const x = new Float32Array(dims.reduce((a, b) => a * b, 1));
    // Deterministic inputs in [-1, 1): latency must not depend on the data, but zeros could.
    let s = 12345;
    for (let i = 0; i < x.length; i++) {
        s = (s * 1103515245 + 12345) >>> 0;
        x[i] = s / 2147483648 - 1;
    }
    const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x, dims) };
    for (let i = 0; i < o.warmup; i++) await session.run(feeds);
    const per = [], calls = [];
    let cpuUs = 0, runs = 0;
    for (let r = 0; r < o.repeats; r++) {
        const c0 = process.cpuUsage();
        const t0 = process.hrtime.bigint();
        let n = 0, el = 0;
        do {
            const a = process.hrtime.bigint();
            await session.run(feeds);
            const t1 = process.hrtime.bigint();
            if (calls.length < (1 << 20)) calls.push(Number(t1 - a) / 1e6 / o.batch);
            n++;
            el = Number(t1 - t0) / 1e9;
        } while (el < o.minSeconds);
        const c = process.cpuUsage(c0);
        cpuUs += c.user + c.system;
        runs += n;
        per.push((el * 1e3) / n / o.batch);
    }
    per.sort((a, b) => a - b);
    calls.sort((a, b) => a - b);
    const med = quantile(per, 0.5);
    const energyMj = (cpuUs / 1e6 / runs / o.batch) * o.watts * 1e3;
    const version = require(require.resolve('onnxruntime-node/package.json',
        { paths: [path.resolve(__dirname, '..'), process.cwd()] })).version;
    console.log(`latency_ms=${med.toFixed(5)}`);
    console.log(`latency_spread=${((quantile(per, 0.9) - quantile(per, 0.1)) / med).toFixed(4)}`);
    console.log(`latency_p10_ms=${quantile(per, 0.1).toFixed(5)}`);
    console.log(`latency_p90_ms=${quantile(per, 0.9).toFixed(5)}`);
    console.log(`latency_call_p10_ms=${quantile(calls, 0.1).toFixed(5)}`);
    console.log(`latency_call_median_ms=${quantile(calls, 0.5).toFixed(5)}`);
    console.log(`latency_call_p90_ms=${quantile(calls, 0.9).toFixed(5)}`);
    console.log(`cpu_ms=${(cpuUs / 1e3 / runs / o.batch).toFixed(5)}`);
    console.log(`energy_mj=${energyMj.toFixed(5)}`);
    console.log(`energy_source=model:cpu-time`);
    console.log(`energy_quality=estimated`);
    console.log(`runtime=onnxruntime-node ${version} cpu threads=${o.threads} batch=${o.batch} ` +
                `repeats=${o.repeats} min_seconds=${o.minSeconds} watts_per_core=${o.watts}`);
}

main().catch((e) => die(e && e.message ? e.message : String(e), 1));
