// Every vector of docs/vectors/philox-v1.json, group by group in the order of the spec's section 12.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { mathFor } from '../src/detmath.js';
import { float32Bits } from '../src/dtypes.js';
import { encode, formatFloat } from '../src/encode.js';
import { RequestError, generate, normalPair, uniform01, uniformOpen } from '../src/generate.js';
import { parseJson } from '../src/json.js';
import { deriveKey, keyInput, philoxBlock, streamBlock } from '../src/philox.js';
import { hexToFloat, hexToWords, spec, useSpec } from '../src/spec.js';
import { hex64, sha256 } from './hex.js';

const FILE = new URL('../../../docs/vectors/philox-v1.json', import.meta.url);
const { vectors } = parseJson(readFileSync(FILE, 'utf8'));
const math = mathFor(spec());
const DTYPES = ['float64', 'float32', 'float16', 'bfloat16'];

/** Limbs [h0, l0, h1, l1, ...] as 16-hex-digit words. */
const wordsHex = (limbs) =>
  Array.from({ length: limbs.length / 2 }, (_, i) =>
    ((BigInt(limbs[2 * i]) << 32n) | BigInt(limbs[2 * i + 1])).toString(16).padStart(16, '0'),
  );
// The file writes seeds and fans as decimal strings (they reach 2^64 - 1, beyond what JSON.parse keeps exact);
// a request takes them as integers.
const DECIMAL_FIELDS = new Set(['seed', 'fan_in', 'fan_out']);
const integer = (text) => (BigInt(text) > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(text) : Number(text));
const sent = (request) =>
  Object.fromEntries(Object.entries(request).map(([k, v]) => [k, DECIMAL_FIELDS.has(k) ? integer(v) : v]));
const hex = (bytes) => Buffer.from(bytes).toString('hex');

test('the constants are read from the vectors file, every one of them', () => {
  const { constants } = parseJson(readFileSync(FILE, 'utf8'));
  const compiled = spec();
  assert.deepEqual(Object.keys(compiled.constants), Object.keys(constants.float64));
  assert.deepEqual(Object.keys(compiled.polynomials), Object.keys(constants.polynomials));
  assert.deepEqual(Object.keys(compiled.highWords), Object.keys(constants.high_word_thresholds));
  // Section 9's Box-Muller radius, computed (it is not in the file): the value the spec prints.
  assert.equal(math.normalRadius, 8.571674348652905);
});

test('key_derivation: the SHA-256 input and the key (section 2.1)', () => {
  for (const v of vectors.key_derivation) {
    assert.equal(hex(keyInput(v.seed, v.name)), v.sha256_input_hex, `${v.seed} ${v.name}`);
    assert.deepEqual(wordsHex(deriveKey(v.seed, v.name)), v.key, `${v.seed} ${v.name}`);
  }
});

test('philox_blocks: Philox4x64-10 for any key and counter (section 2.2)', () => {
  for (const v of vectors.philox_blocks) {
    const key = Uint32Array.from(v.key.flatMap(hexToWords));
    const counter = Uint32Array.from(v.counter.flatMap(hexToWords));
    assert.deepEqual(wordsHex(philoxBlock(key, counter, new Uint32Array(8))), v.output);
  }
});

test('stream_blocks: blocks of a tensor stream by index and purpose, one index >= 2^64', () => {
  for (const v of vectors.stream_blocks) {
    const block = BigInt(v.block);
    const index = block > BigInt(Number.MAX_SAFE_INTEGER) ? block : Number(block);
    const out = streamBlock(deriveKey(v.seed, v.name), index, v.purpose, new Uint32Array(8));
    assert.deepEqual(wordsHex(out), v.output, `block ${v.block} purpose ${v.purpose}`);
  }
});

describe('variates (section 3)', () => {
  test('uniform01 and uniform_open', () => {
    for (const [name, f] of [['uniform01', uniform01], ['uniform_open', uniformOpen]]) {
      for (const [word, expected] of vectors.variates[name]) {
        assert.equal(hex64(f(...hexToWords(word))), expected, `${name}(${word})`);
      }
    }
  });
  test('normal_pair', () => {
    for (const [w0, w1, z0, z1] of vectors.variates.normal_pair) {
      const out = normalPair(...hexToWords(w0), ...hexToWords(w1), math, new Float64Array(2));
      assert.deepEqual([hex64(out[0]), hex64(out[1])], [z0, z1], `normal_pair(${w0}, ${w1})`);
    }
  });
});

describe('elementary functions (section 4)', () => {
  const functions = {
    log: math.log,
    exp: math.exp,
    erfc: math.erfc,
    ndtr: math.ndtr,
    ndtri: math.ndtri,
    sincos_turns: (t) => Array.from(math.sincosTurns(t)),
  };
  for (const [name, rows] of Object.entries(vectors.elementary)) {
    test(name, () => {
      assert.ok(functions[name], `no implementation of ${name}`);
      for (const [x, ...expected] of rows) {
        const got = [functions[name](hexToFloat(x))].flat().map(hex64);
        assert.deepEqual(got, expected, `${name}(${x} = ${hexToFloat(x)})`);
      }
    });
  }
});

test('truncated_normal: derived numbers and the first 8 values of seed 1, name t (section 5.1)', () => {
  for (const v of vectors.truncated_normal) {
    const [mean, std, a, b] = [v.mean, v.std, v.a, v.b].map(hexToFloat);
    const request = { shape: [8], scheme: 'trunc_normal', mean, std, a, b, seed: v.seed, name: v.name };
    const g = generate({ ...request, dtype: 'float64' });
    const d = g.distribution;
    const label = `[${a}, ${b}]`;
    assert.equal(d.mirrored, v.mirrored, label);
    for (const key of ['lo', 'hi', 'p_lo', 'mass']) assert.equal(hex64(d[key]), v[key], `${label} ${key}`);
    assert.deepEqual(Array.from(g.data, hex64), v.first_8, label);
  }
});

describe('requests: distribution, fans, float64 elements and the SHA-256 of every dtype (sections 6-8)', () => {
  for (const v of vectors.requests) {
    test(JSON.stringify(v.request), () => {
      const request = sent(v.request);
      const first = generate({ ...request, dtype: 'float64' });
      const { kind, ...numbers } = v.distribution;
      assert.equal(first.distribution.kind, kind);
      for (const [key, bits] of Object.entries(numbers)) assert.equal(hex64(first.distribution[key]), bits, key);
      assert.deepEqual(
        Object.fromEntries(Object.entries(first.fans).map(([k, n]) => [k, String(n)])),
        v.fans,
        'fans read',
      );
      for (const [index, bits] of Object.entries(v.float64)) assert.equal(hex64(first.data[index]), bits, index);
      for (const dtype of DTYPES) {
        assert.equal(sha256(generate({ ...request, dtype }).bytes), v.sha256[dtype], dtype);
      }
    });
  }
});

test('double_rounding: float16 and bfloat16 go through float32 (section 8)', () => {
  const request = sent(vectors.double_rounding.request);
  for (const e of vectors.double_rounding.elements) {
    const slice = [[Number(e.index), Number(e.index) + 1]];
    const wide = generate({ ...request, dtype: 'float64', slice }).data[0];
    assert.equal(hex64(wide), e.float64);
    assert.equal(float32Bits(wide).toString(16).padStart(8, '0'), e.float32);
    const narrow = generate({ ...request, dtype: e.dtype, slice }, { raw: true }).data[0];
    assert.equal(narrow.toString(16).padStart(4, '0'), e.right, `${e.dtype} element ${e.index}`);
    assert.notEqual(narrow.toString(16).padStart(4, '0'), e.wrong_direct);
  }
});

test('admission: refused at the field the service names, or computed (sections 1.1 and 9)', () => {
  for (const { request, refused_at: field } of vectors.admission) {
    const label = JSON.stringify(request);
    if (field === null) {
      assert.doesNotThrow(() => generate(sent(request)), label);
    } else {
      assert.throws(() => generate(sent(request)), (e) => e instanceof RequestError && e.loc.join() === field, label);
    }
  }
});

test('float_text: shortest digits, exact ties to the even digit (section 10)', () => {
  for (const [dtype, bits, text] of vectors.float_text) {
    const single = dtype === 'float32';
    const value = single ? new Float32Array(Uint32Array.of(parseInt(bits, 16)).buffer)[0] : hexToFloat(bits);
    assert.equal(formatFloat(value, single), text, `${dtype} ${bits}`);
  }
});

test('useSpec: the constants can be given as the parsed file, and anything else is refused', () => {
  const before = spec();
  assert.throws(() => useSpec({ rng: 'philox-v2' }), /not a vectors file of philox-v1 or philox-v2/);
  assert.throws(() => useSpec({ rng: 'philox-v1', constants: {} }), /not the philox-v1 vectors file/);
  assert.equal(spec(), before, 'a refused file leaves the loaded constants in place');
  useSpec(parseJson(readFileSync(FILE, 'utf8')));
  assert.equal(generate({ shape: [64, 33], scheme: 'kaiming_normal', seed: 0, dtype: 'float64' }).data[156],
    hexToFloat(vectors.requests[0].float64['156']));
});

test('bodies: whole response bodies (section 10) for the service version named', () => {
  const { service, cases } = vectors.bodies;
  for (const { request, length, sha256: digest } of cases) {
    const body = encode(sent(request), { service });
    assert.equal(body.length, length, JSON.stringify(request));
    assert.equal(sha256(body), digest, JSON.stringify(request));
  }
});

test('float text (section 10): shortest digits, ties to even, positional or exponent by the dtype', () => {
  const cases = [
    [0.314453125, true, '0.31445312'], // float32 tie between ...312 and ...313: the even digit
    [1e-7, false, '1e-7'],
    [0.00001, false, '0.00001'],
    [123.5, false, '123.5'],
    [1e16, false, '1e+16'],
    [1e15, false, '1000000000000000.0'],
    [1.2345678901234568e17, false, '1.2345678901234568e+17'],
    [Math.fround(1e13), true, '1e+13'],
    [Math.fround(1e12), true, '1000000000000.0'],
    [Math.fround(1e-6), true, '0.000001'],
    [Math.fround(1e-7), true, '1e-7'],
    [-0, false, '-0.0'],
    [2 ** -149, true, '1e-45'],
    [Math.fround(3.4028234663852886e38), true, '3.4028235e+38'],
  ];
  for (const [value, single, text] of cases) assert.equal(formatFloat(value, single), text, `${value} ${single}`);
});
