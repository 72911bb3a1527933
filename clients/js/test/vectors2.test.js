// Every vector of docs/vectors/philox-v2.json, group by group in the order of its spec's section 10.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { mathFor } from '../src/detmath.js';
import { generate, RequestError } from '../src/generate.js';
import { firstAtLeast, lastAtMost, nextFloat, normalReach, sampler } from '../src/generate2.js';
import { keyInput } from '../src/philox.js';
import { digestWords, philox4x32, retryBlock, streamWords } from '../src/philox2.js';
import { hexToFloat, spec, useSpec } from '../src/spec.js';
import { hex64, sha256 } from './hex.js';

const FILE = new URL('../../../docs/vectors/philox-v2.json', import.meta.url);
const { constants, vectors } = JSON.parse(readFileSync(FILE, 'utf8'));
const math = mathFor(spec());
const DTYPES = ['float64', 'float32', 'float16', 'bfloat16'];

const hex32 = (words) => Array.from(words, (w) => w.toString(16).padStart(8, '0'));
const word = (hex) => parseInt(hex, 16) >>> 0;
// Indices and seeds are decimal strings in the file (they pass 2^53): numbers below it, BigInts above.
const index = (text) => (BigInt(text) > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(text) : Number(text));

test('the constants are read from the vectors file: Philox4x32-10 and the ziggurat tables', () => {
  const compiled = spec('philox-v2');
  assert.deepEqual(hex32(compiled.philox.multipliers), constants.philox4x32_10.multipliers);
  assert.deepEqual(hex32(compiled.philox.keyIncrements), constants.philox4x32_10.key_increments);
  assert.equal(compiled.philox.rounds, 10);
  assert.deepEqual(Array.from(compiled.ziggurat.X, hex64), constants.ziggurat.X);
  assert.deepEqual(Array.from(compiled.ziggurat.F, hex64), constants.ziggurat.F);
  // Section 7: |z| stays below r + 53 ln 2 / r = 13.71.
  assert.ok(normalReach(math) > 13.7 && normalReach(math) < 13.71);
});

test('philox_blocks: Philox4x32-10 known answers (section 4)', () => {
  for (const v of vectors.philox_blocks) {
    const out = philox4x32(...v.key.map(word), ...v.counter.map(word), new Uint32Array(4));
    assert.deepEqual(hex32(out), v.output, JSON.stringify(v));
  }
});

test('key_derivation: the SHA-256 input and the digest words d0..d7 (section 3)', () => {
  for (const v of vectors.key_derivation) {
    const input = keyInput(v.seed, v.name, spec('philox-v2').domain);
    assert.equal(Buffer.from(input).toString('hex'), v.sha256_input_hex, `${v.seed} ${v.name}`);
    assert.deepEqual(hex32(digestWords(v.seed, v.name)), v.words, `${v.seed} ${v.name}`);
  }
});

test('stream_blocks: values and mask streams, a block beyond 2^32 (section 3)', () => {
  for (const v of vectors.stream_blocks) {
    const out = streamWords(digestWords(v.seed, v.name), v.purpose, index(v.block), 1, new Uint32Array(4));
    assert.deepEqual(hex32(out), v.output, `block ${v.block} purpose ${v.purpose}`);
  }
  // A run of blocks crossing 2^32 carries into the counter's second word, as block-by-block computation does.
  const digest = digestWords(7, 'weight');
  const run = streamWords(digest, 0, 2 ** 32 - 1, 2, new Uint32Array(8));
  assert.deepEqual(run.subarray(4), streamWords(digest, 0, 2 ** 32, 1, new Uint32Array(4)));
  assert.deepEqual(run.subarray(0, 4), streamWords(digest, 0, 2n ** 32n - 1n, 1, new Uint32Array(4)));
});

test('retry_blocks: an element\'s own retry stream, one element beyond 2^32 (section 3)', () => {
  for (const v of vectors.retry_blocks) {
    const out = retryBlock(digestWords(v.seed, v.name), index(v.element), v.n, new Uint32Array(4));
    assert.deepEqual(hex32(out), v.output, `element ${v.element} block ${v.n}`);
  }
});

test('cuts: first_at_least in every dtype, strict and not (section 6)', () => {
  for (const v of vectors.cuts) {
    const bound = hexToFloat(v.bound);
    assert.equal(hex64(firstAtLeast(bound, v.dtype, v.strict)), v.first_at_least, JSON.stringify(v));
    if (!v.strict) {
      // Its definition, checked directly: the cut rounds to at least the bound and its predecessor does not.
      const cut = hexToFloat(v.first_at_least);
      const round = (x) => generate({ shape: [], scheme: 'constant', val: x, seed: 0, dtype: v.dtype }).data[0];
      if (v.dtype !== 'float64') assert.ok(round(cut) >= bound && !(round(nextFloat(cut, false)) >= bound));
    }
  }
  assert.equal(lastAtMost(3, 'float64'), 3);
  assert.equal(lastAtMost(3, 'float32'), 3 + 2 ** -23); // 3 + 2^-23, the float32 midpoint above 3, ties to even: 3
});

describe('normal_paths: the standard normal z on each way through the ziggurat (section 7)', () => {
  for (const v of vectors.normal_paths) {
    test(`${v.draw} ${v.path}: elements ${v.elements.join(', ')}`, () => {
      const dtype = v.draw === '64-bit' ? 'float64' : 'float32';
      const fill = sampler({ kind: 'normal', mean: 0.0, std: 1.0 }, digestWords(v.seed, v.name), dtype, math);
      const got = v.elements.map((element) => {
        const out = new Float64Array(1);
        fill(index(element), 1, out, 0);
        return hex64(out[0]);
      });
      assert.deepEqual(got, v.z);
    });
  }
});

// A vector's request is a flat request body, as the service takes it, with its seed in decimal.
const asRequest = (r) => ({ ...r, seed: index(String(r.seed)) });

describe('tensors: the first values of uniform, kaiming_uniform, normal, trunc_normal in every dtype', () => {
  for (const { request, values } of vectors.tensors) {
    test(JSON.stringify(request), () => {
      assert.deepEqual(Array.from(generate(asRequest(request)).data, hex64), values);
    });
  }
});

describe('requests: the SHA-256 of whole tensors in every dtype', () => {
  for (const { request, sha256: hashes } of vectors.requests) {
    test(JSON.stringify(request), () => {
      for (const dtype of DTYPES) {
        assert.equal(sha256(generate({ ...asRequest(request), dtype }).bytes), hashes[dtype], dtype);
      }
    });
  }
});

test('the spec\'s refusals: the field and the rule (sections 6 and 7)', () => {
  const refused = (request, field, rule) =>
    assert.throws(
      () => generate({ rng: 'philox-v2', seed: 1, shape: [4], ...request }),
      (e) => e instanceof RequestError && e.loc.join() === field && rule.test(e.message),
      JSON.stringify(request),
    );
  // The example: no bfloat16 value in [1.004, 1.0078125).
  refused({ scheme: 'uniform', a: 1.004, b: 1.0078125, dtype: 'bfloat16' }, 'dtype', /no bfloat16 value/);
  refused({ scheme: 'trunc_normal', a: 1.004, b: 1.0078, dtype: 'bfloat16' }, 'dtype', /truncation interval/);
  // A normal whose tail (13.71 std) overflows the dtype; philox-v1's Box-Muller reaches only 8.57 std.
  const std = 65504 / 10;
  refused({ scheme: 'normal', std, dtype: 'float16' }, 'dtype', /exceed float16/);
  assert.doesNotThrow(() => generate({ scheme: 'normal', std, dtype: 'float16', seed: 1, shape: [4] }));
  refused({ scheme: 'orthogonal', shape: [4, 4] }, 'scheme', /LAPACK/);
  refused({ scheme: 'jax.he_normal', shape: [4, 4] }, 'scheme', /bare names' bits only/);
  refused({ scheme: 'normal', rng: 'philox-v3' }, 'rng', /philox-v1 and philox-v2/);
  // Which check comes first where several fail: the service's order, which neither spec states (found by comparing
  // refusals with the live service): dirac's and sparse's layout before their rank; a truncated normal's philox-v1
  // checks (mass, float64, dtype range) on [a, b] before the cut; a uniform's a > b at a.
  refused({ scheme: 'sparse', sparsity: 0.1, shape: [3, 4, 5], layout: 'keras' }, 'layout', /torch layout/);
  refused({ scheme: 'dirac', shape: [4, 4], layout: 'keras' }, 'layout', /torch layout/);
  refused({ scheme: 'trunc_normal', mean: 1e300, std: 0.5, b: 1e300, dtype: 'bfloat16' }, 'dtype', /exceed bfloat16/);
  refused({ scheme: 'trunc_normal', a: 1.0001, b: 1.0002, std: 1e300, dtype: 'float16' }, 'b', /no probability mass/);
  refused({ scheme: 'uniform', a: 1, b: 0 }, 'a', /<= b/);
  refused({ scheme: 'random_uniform', minval: 1, maxval: 0 }, 'minval', /<= maxval/);
  // U[a, a) gives a (philox-v1's rule), whatever the dtype holds near a.
  const same = { rng: 'philox-v2', seed: 1, shape: [3], scheme: 'uniform', a: 1.001, b: 1.001, dtype: 'bfloat16' };
  assert.deepEqual(Array.from(generate(same).data), [1, 1, 1]);
});

test('useSpec: the parsed philox-v2.json replaces its constants; a broken one is refused and changes nothing', () => {
  const before = spec('philox-v2');
  assert.throws(() => useSpec({ rng: 'philox-v2', constants: {} }), /not the philox-v2 vectors file/);
  assert.equal(spec('philox-v2'), before, 'a refused file leaves the loaded constants in place');
  useSpec(JSON.parse(readFileSync(FILE, 'utf8')));
  assert.notEqual(spec('philox-v2'), before);
  const { request, values } = vectors.tensors.at(-1);
  assert.deepEqual(Array.from(generate(asRequest(request)).data, hex64), values);
});
