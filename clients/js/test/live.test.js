// generate() against the live service on seeded random requests, for each rng it computes (philox-v1, the default,
// and philox-v2): every scheme generate() computes, all dtypes, formats, shapes from 0-D to 5-D, slices (of huge
// tensors too), explicit fans, seeds up to 2^64 - 1 and non-ASCII names. A 200 must carry exactly generate()'s data
// bytes, and be exactly encode()'s whole body; a 422 must be refused by generate() too, at the same field.

import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { encode, fetchTensor, fetchTensors, generate, InitserveError, RequestError } from '../src/index.js';
import { spec } from '../src/spec.js';
import { startServer } from './server.js';

const MATCHES = Number(process.env.INITSERVE_JS_LIVE_REQUESTS ?? 1000); // successful comparisons required
const MAX_REQUESTS = Math.ceil(MATCHES * 1.4); // bounded: refused requests count too
const SEED = Number(process.env.INITSERVE_JS_LIVE_SEED ?? 12);
const IN_FLIGHT = 4;

let server;
let service; // the version the containers name (section 10), e.g. 'initserve 0.1.0'
before(async () => {
  server = await startServer();
  const probe = await fetchTensor(server.url, { shape: [], scheme: 'zeros', seed: 0 }, { format: 'json' });
  service = probe.metadata.service;
});
after(async () => {
  await server?.stop();
});

// mulberry32: a small seeded generator, so that a failure is reproducible from INITSERVE_JS_LIVE_SEED.
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function requests(seed, rng) {
  const rand = random(seed);
  const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
  const pick = (list) => list[int(0, list.length - 1)];
  const chance = (p) => rand() < p;
  const u64 = () => (BigInt(int(0, 2 ** 32 - 1)) << 32n) | BigInt(int(0, 2 ** 32 - 1));
  const { schemes } = spec();
  const names = Object.keys(schemes).filter((name) => name !== 'orthogonal');
  const NAMES = [
    'weight',
    'fc1.bias',
    'w/é x',
    'слой.вес',
    '重み',
    '🧠.weight',
    'e\u0301\u0327',
    'quote"back\\slash\nnewline\ttab',
    '😀'.repeat(256),
    'x'.repeat(256),
  ];
  const anyNumber = () =>
    pick([
      () => rand() * 6 - 3,
      () => int(-3, 3),
      () => (rand() - 0.5) * 10 ** int(-8, 6),
      () => pick([0.1, 0.5, 1 / 3, Math.SQRT2, -0.0, 5e-324, 1e5, 7e4, 1e38, 3.5e38, 1e300]),
      // Edges of the dtypes (their largest values; a bfloat16 step at 1; 0.05, which bfloat16 rounds up)
      () => pick([65504, 3.3895313892515355e38, 3.4028234663852886e38, 1.0078125, -0.05, 0.05]),
    ])();
  const positive = () => pick([() => rand() * 3, () => 10 ** int(-6, 3) * rand(), () => pick([0.01, 1, 2, 0.05])])();

  function params(name, scheme, dims) {
    const out = {};
    for (const [key, rule] of Object.entries(scheme.params)) {
      if (rule.default !== null && chance(0.4)) continue;
      if (rule.choices) {
        const choice = pick(rule.choices);
        out[key] = chance(0.2) ? choice.toUpperCase() : choice;
      } else if (rule.type === 'integer') {
        out[key] = dims.length ? pick([1, 2, 3, Number(dims[0])]) : 1;
      } else if (key === 'sparsity') {
        out[key] = pick([0, 1, rand(), 0.1, 0.5]);
      } else if (rule.ge !== undefined || rule.gt !== undefined) {
        out[key] = chance(0.03) ? -positive() : positive();
      } else {
        out[key] = anyNumber();
      }
    }
    if (name === 'trunc_normal' && out.a !== undefined && out.b !== undefined && out.a > out.b && chance(0.9)) {
      [out.a, out.b] = [out.b, out.a];
    }
    return out;
  }

  function shapeFor(name) {
    let rank;
    if (['eye', 'identity', 'sparse'].includes(name)) rank = chance(0.95) ? 2 : int(1, 3);
    else if (name === 'dirac') rank = chance(0.95) ? int(3, 5) : 2;
    else rank = pick([0, 1, 2, 2, 2, 3, 4]);
    const budget = 3000;
    const dims = [];
    for (let d = 0; d < rank; d++) dims.push(int(1, rank <= 2 ? 60 : 9));
    while (dims.reduce((a, b) => a * b, 1) > budget) dims[int(0, rank - 1)] = 1;
    return dims;
  }

  const list = [];
  for (let i = 0; i < MAX_REQUESTS; i++) {
    const name = pick(names);
    const scheme = schemes[name];
    const huge = chance(0.04) && !['sparse', 'dirac'].includes(name);
    const shape = huge ? [2 ** int(20, 40) + int(0, 99), int(2, 2 ** 20)] : shapeFor(name);
    const request = { shape, scheme: name, ...params(name, scheme, shape) };
    if (rng) request.rng = rng;
    request.seed = pick([() => int(0, 9), () => int(0, 2 ** 53 - 1), u64, () => (1n << 64n) - 1n])();
    if (chance(0.6)) request.name = pick(NAMES);
    request.dtype = pick(['float32', 'float64', 'float16', 'bfloat16']);
    if (chance(0.15)) request.layout = pick(['torch', 'keras']);
    if (chance(0.1)) request.fan_in = pick([1, int(1, 5000), u64() || 1n]);
    if (chance(0.1)) request.fan_out = pick([1, int(1, 5000), u64() || 1n]);
    if (huge || (shape.length && chance(0.4))) {
      request.slice = shape.map((dim) => {
        const start = huge ? int(0, Math.min(dim, 2 ** 53) - 4) : int(0, dim - 1);
        return [start, Math.min(dim, start + int(1, huge ? 3 : dim))];
      });
    }
    const format = pick(['safetensors', 'json', 'npy']);
    list.push({ request, format: format === 'npy' && request.dtype === 'bfloat16' ? 'json' : format });
  }
  return list;
}

const show = (request) =>
  JSON.stringify(request, (k, v) => (typeof v === 'bigint' ? `${v}n` : Object.is(v, -0) ? '-0.0' : v));

async function check({ request, format }) {
  let fetched;
  let refusal;
  let body; // the whole response body, kept by a fetch that reads a copy
  const keepBody = async (url, init) => {
    const response = await fetch(url, init);
    body = new Uint8Array(await response.clone().arrayBuffer());
    return response;
  };
  try {
    fetched = await fetchTensor(server.url, request, { format, raw: true, fetch: keepBody });
  } catch (error) {
    if (!(error instanceof InitserveError)) throw error;
    refusal = error;
  }
  let local;
  let localRefusal;
  try {
    local = generate(request, { raw: true });
  } catch (error) {
    if (!(error instanceof RequestError)) throw error;
    localRefusal = error;
  }
  if (refusal) {
    // 413 is the server's size settings, not the contract: generate() may compute such a tensor.
    if (refusal.status === 413) return 'too large';
    assert.equal(refusal.status, 422, `${show(request)}: ${refusal.message}`);
    assert.ok(localRefusal, `the service refused what generate() computed: ${show(request)}: ${refusal.message}`);
    assert.deepEqual(localRefusal.loc, refusal.detail[0].loc.slice(1), `${show(request)}: ${refusal.message}`);
    return 'refused';
  }
  assert.ok(!localRefusal, `generate() refused what the service computed: ${show(request)}: ${localRefusal?.message}`);
  assert.deepEqual(local.shape, fetched.shape, show(request));
  assert.equal(local.dtype, fetched.dtype, show(request));
  assert.ok(Buffer.from(local.bytes).equals(Buffer.from(fetched.bytes)), `bytes differ (${format}): ${show(request)}`);
  const encoded = encode(request, { service, format });
  assert.ok(Buffer.from(encoded).equals(Buffer.from(body)), `body differs (${format}): ${show(request)}`);
  return 'matched';
}

// What the matched requests covered: each must have come up, or the comparison proved less than it says.
function coverage(request, format) {
  const seed = BigInt(request.seed);
  const full = request.shape.reduce((a, b) => a * BigInt(b), 1n);
  return [
    `scheme ${request.scheme}`,
    `dtype ${request.dtype}`,
    `format ${format}`,
    `rank ${request.shape.length}`,
    request.slice && 'slice',
    full >= 2n ** 53n && 'slice of a tensor of 2^53 elements or more',
    seed >= 2n ** 53n && 'seed >= 2^53',
    seed === 2n ** 64n - 1n && 'seed 2^64 - 1',
    /[^\x00-\x7f]/.test(request.name ?? '') && 'non-ASCII name',
    (request.fan_in ?? request.fan_out) !== undefined && 'explicit fan',
  ].filter(Boolean);
}

async function compareLive(rng) {
  const counts = { matched: 0, refused: 0, 'too large': 0 };
  const covered = new Set();
  const pending = requests(SEED, rng);
  while (counts.matched < MATCHES && pending.length) {
    const batch = pending.splice(0, IN_FLIGHT);
    const outcomes = await Promise.all(batch.map(check));
    outcomes.forEach((outcome, i) => {
      counts[outcome] += 1;
      if (outcome === 'matched') for (const item of coverage(batch[i].request, batch[i].format)) covered.add(item);
    });
  }
  console.log(`live ${rng ?? 'default rng'}: ${JSON.stringify(counts)}`);
  assert.ok(counts.matched >= MATCHES, `only ${counts.matched} of ${MATCHES} requests were answered 200`);
  assert.ok(counts.refused > 0, 'no refused request was compared');
  const wanted = [
    ...Object.keys(spec().schemes).filter((name) => name !== 'orthogonal').map((name) => `scheme ${name}`),
    ...['float64', 'float32', 'float16', 'bfloat16'].map((dtype) => `dtype ${dtype}`),
    ...['safetensors', 'json', 'npy'].map((format) => `format ${format}`),
    ...[0, 1, 2, 3, 4, 5].map((rank) => `rank ${rank}`),
    ...['slice', 'slice of a tensor of 2^53 elements or more', 'seed >= 2^53', 'seed 2^64 - 1', 'non-ASCII name'],
    'explicit fan',
  ];
  assert.deepEqual(wanted.filter((item) => !covered.has(item)), [], 'never matched');
}

const title = (rng) => `generate() == the live service on ${MATCHES} random requests of ${rng} (seed ${SEED})`;
test(title('the default rng, philox-v1'), { timeout: 600_000 }, () => compareLive(undefined));
test(title('philox-v2'), { timeout: 600_000 }, () => compareLive('philox-v2'));

test(
  'philox-v2: parameters that differ only in the sign of a zero give each request its own bits, in any order',
  async () => {
    // Each request alone on a fresh server gives what generate() does (the spec's section 7): U[a, a) is a, so
    // -0.0 or +0.0; mean + std * z with std 0 is -0.0 where z < 0 only if mean is -0.0.
    const base = { shape: [6], rng: 'philox-v2', seed: 424242, dtype: 'float64' };
    const pairs = [
      [{ scheme: 'constant', val: -0.0 }, { scheme: 'zeros' }],
      [{ scheme: 'uniform', a: -0.0, b: 0.0 }, { scheme: 'uniform', a: 0.0, b: -0.0 }],
      [{ scheme: 'normal', mean: 0.0, std: 0.0 }, { scheme: 'normal', mean: -0.0, std: 0.0 }],
    ];
    const failures = [];
    for (const pair of pairs) {
      for (const params of pair) {
        const request = { ...base, ...params };
        const served = Array.from((await fetchTensor(server.url, request)).data, (x) => Object.is(x, -0));
        const local = Array.from(generate(request).data, (x) => Object.is(x, -0));
        if (served.join() !== local.join()) failures.push(show(request));
      }
    }
    assert.deepEqual(failures, []);
  },
);

test(
  'philox-v2 sparse is refused where its normals\' reach (13.71 std, spec section 7) overflows the dtype',
  async () => {
    const request = { shape: [4, 4], scheme: 'sparse', sparsity: 0.5, std: 7000, rng: 'philox-v2', seed: 1 };
    const refused = (e) => e instanceof RequestError && e.loc[0] === 'dtype';
    assert.throws(() => generate({ ...request, dtype: 'float16' }), refused);
    await assert.rejects(fetchTensor(server.url, { ...request, dtype: 'float16' }), (e) => e.status === 422);
  },
);

test('many tensors and models: the formats agree, each tensor is generate() of its own request', async () => {
  const tensors = {
    'enc.weight': { shape: [7, 5], scheme: 'kaiming_uniform', a: 2.236, dtype: 'float16' },
    'enc.bias': { shape: [7], scheme: 'torch_default', fan_in: 5, dtype: 'float64' },
    'dé.kernel': { shape: [3, 4], scheme: 'glorot_normal' },
    steps: { shape: [], scheme: 'zeros', dtype: 'int64' },
  };
  const seed = 2n ** 64n - 2n;
  const answers = {};
  for (const format of ['safetensors', 'json', 'npz']) {
    answers[format] = await fetchTensors(server.url, { seed, tensors }, { format, raw: true });
  }
  for (const [name, tensor] of Object.entries(answers.safetensors.tensors)) {
    for (const format of ['json', 'npz']) {
      const other = answers[format].tensors[name];
      assert.deepEqual([other.shape, other.dtype], [tensor.shape, tensor.dtype], `${format} ${name}`);
      assert.ok(Buffer.from(other.bytes).equals(Buffer.from(tensor.bytes)), `${format} ${name}`);
      assert.deepEqual(other.metadata, tensor.metadata, `${format} ${name} metadata`);
    }
  }
  assert.deepEqual(Object.keys(answers.json.tensors), Object.keys(tensors));
  assert.equal(answers.npz.metadata.seed, seed);
  for (const [name, spec] of Object.entries(tensors)) {
    if (spec.dtype === 'int64') {
      assert.deepEqual(answers.safetensors.tensors[name].data, BigInt64Array.of(0n));
      continue;
    }
    const local = generate({ ...spec, seed, name }, { raw: true });
    assert.ok(Buffer.from(local.bytes).equals(Buffer.from(answers.safetensors.tensors[name].bytes)), name);
  }

  const model = {
    framework: 'torch',
    layers: ['embed: embedding(11, 4, padding_idx=0)', 'linear(4, 3)', 'batchnorm1d(3)'],
    rules: [{ layer: 'linear', param: 'weight', scheme: 'xavier_normal', dtype: 'bfloat16' }],
  };
  const file = await fetchTensors(server.url, { seed: 3, model });
  const json = await fetchTensors(server.url, { seed: 3, model }, { format: 'json' });
  assert.equal(file.metadata.framework, 'torch');
  assert.deepEqual(Object.keys(file.tensors), Object.keys(json.tensors));
  assert.equal(file.tensors['1.weight'].dtype, 'bfloat16');
  assert.ok(file.tensors['1.weight'].data instanceof Float32Array);
  assert.deepEqual(file.tensors['1.weight'].data, json.tensors['1.weight'].data);
  assert.equal(file.tensors['embed.weight'].data[0], 0); // the padding row
  assert.equal(file.tensors['2.num_batches_tracked'].dtype, 'int64');
});

test('the service refusing: InitserveError with its status and detail', async () => {
  const refused = fetchTensor(server.url, { shape: [2], scheme: 'kaiming_normal', seed: 1 });
  await assert.rejects(refused, (error) => {
    assert.ok(error instanceof InitserveError);
    assert.equal(error.status, 422);
    assert.deepEqual(error.detail[0].loc, ['body', 'shape']);
    return true;
  });
  const tooLarge = fetchTensor(server.url, { shape: [20000, 20000], scheme: 'normal', seed: 1 });
  await assert.rejects(tooLarge, (error) => error.status === 413 && /INITSERVE_MAX_ELEMENTS/.test(error.message));
});

test("the README's js examples run as written against the live server", async () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1]);
  assert.ok(blocks.length >= 4, `only ${blocks.length} examples found`);
  const index = new URL('../src/index.js', import.meta.url).href;
  for (const [i, block] of blocks.entries()) {
    const code = block
      .replaceAll("from 'initserve'", `from '${index}'`)
      .replaceAll('http://127.0.0.1:8000', server.url);
    const file = join(tmpdir(), `initserve-readme-${process.pid}-${i}.mjs`);
    writeFileSync(file, code);
    try {
      await import(pathToFileURL(file).href);
    } finally {
      rmSync(file);
    }
  }
});
