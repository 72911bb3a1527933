// generate(): the tensor of an initserve request computed locally, bit for bit (rng philox-v1 or philox-v2), following
// docs/reproducibility.md: the request rules (1.1), the stream (2), variates (3), distributions (5), schemes (6),
// slices (7), dtype rounding (8) and representability (9); philox-v2 (docs/philox-v2.md) keeps all of it but the
// stream, the draws and the samplers (generate2.js). Scheme names, parameters, defaults, ranges and choices come
// from the vectors file's `schemes`, like every constant.

import { mathFor } from './detmath.js';
import { float32Bits, float32BitsToBfloat16, float32BitsToHalf, littleEndianBytes, widen16 } from './dtypes.js';
import { cut, maskWords, normalReach, sampler } from './generate2.js';
import { deriveKey, streamBlock, toSeed } from './philox.js';
import { digestWords } from './philox2.js';
import { hexToFloat, spec } from './spec.js';

const TWO_POW_53 = 2 ** 53;
const MAX_U64 = (1n << 64n) - 1n;
const MAX_ELEMENTS = (1n << 63n) - 1n;
const COMMON = new Set(['shape', 'scheme', 'seed', 'name', 'dtype', 'layout', 'fan_in', 'fan_out', 'slice', 'rng']);
// `format` only chooses the container (section 10): accepted so that one request object serves fetch and generate.
const IGNORED = new Set(['format']);
const CASE_INSENSITIVE = new Set(['mode', 'distribution']);
const DTYPES = ['float32', 'float64', 'float16', 'bfloat16'];
const RNGS = ['philox-v1', 'philox-v2'];
// What generate() refuses though the service computes it: orthogonal is not bit-exact anywhere (section 5.3).
const REFUSED = { orthogonal: 'its QR runs in LAPACK and is not bit-exact across machines (spec section 5.3)' };
const GAINS = {
  linear: () => 1.0,
  conv1d: () => 1.0,
  conv2d: () => 1.0,
  conv3d: () => 1.0,
  conv_transpose1d: () => 1.0,
  conv_transpose2d: () => 1.0,
  conv_transpose3d: () => 1.0,
  sigmoid: () => 1.0,
  tanh: () => 5.0 / 3.0,
  relu: () => Math.sqrt(2.0),
  leaky_relu: (a) => Math.sqrt(2.0 / (1.0 + a * a)),
  selu: () => 3.0 / 4.0,
};

// Keras's named variance_scaling presets (section 6.4): [scale, mode]; `_normal` is the truncated normal.
const KERAS_PRESETS = { glorot: [1.0, 'fan_avg'], he: [2.0, 'fan_in'], lecun: [1.0, 'fan_in'] };

/** A request generate() refuses, as the service would with a 422 (or cannot reproduce): `loc` names the field. */
export class RequestError extends Error {
  constructor(loc, message) {
    super(`${loc.join('.')}: ${message}`);
    this.name = 'RequestError';
    this.loc = loc;
  }
}

const fail = (field, message) => {
  throw new RequestError(Array.isArray(field) ? field : [field], message);
};

function toBigInt(value, field, low) {
  if (typeof value === 'bigint' || (typeof value === 'number' && Number.isSafeInteger(value))) {
    const big = BigInt(value);
    if (big >= low && big <= MAX_U64) return big;
  }
  return fail(field, `${String(value)} is not an integer in [${low}, 2^64 - 1]`);
}

function checkName(name) {
  if (typeof name !== 'string') fail('name', 'must be a string');
  const length = [...name].length;
  if (length < 1 || length > 256) fail('name', `must have 1 to 256 characters (has ${length})`);
  if (name === '__metadata__') fail('name', "'__metadata__' is reserved by safetensors");
  return name;
}

function parameter(schemeName, key, rule, value) {
  if (value === undefined || value === null) {
    if (rule.default === null || rule.default === undefined) fail(key, `is required by ${schemeName}`);
    return rule.default;
  }
  if (rule.type === 'number') {
    const number = typeof value === 'bigint' ? Number(value) : value;
    if (typeof number !== 'number' || !Number.isFinite(number)) fail(key, 'must be a finite number');
    if (rule.ge !== undefined && !(number >= rule.ge)) fail(key, `must be >= ${rule.ge}`);
    if (rule.gt !== undefined && !(number > rule.gt)) fail(key, `must be > ${rule.gt}`);
    if (rule.le !== undefined && !(number <= rule.le)) fail(key, `must be <= ${rule.le}`);
    return number;
  }
  if (rule.type === 'integer') {
    if (!Number.isSafeInteger(value)) fail(key, 'must be an integer');
    if (rule.ge !== undefined && !(value >= rule.ge)) fail(key, `must be >= ${rule.ge}`);
    return value;
  }
  if (typeof value !== 'string') fail(key, 'must be a string');
  const chosen = CASE_INSENSITIVE.has(key) ? value.toLowerCase() : value;
  if (rule.choices && !rule.choices.includes(chosen)) fail(key, `must be one of ${rule.choices.join(', ')}`);
  return chosen;
}

/** Section 1.1 and the scheme's table: the request with every default filled in, or a RequestError. */
export function normalize(request) {
  if (request === null || typeof request !== 'object' || Array.isArray(request)) fail('body', 'must be an object');
  const { schemes, namespaced } = spec();
  const schemeName = request.scheme;
  if (typeof schemeName === 'string' && Object.hasOwn(namespaced, schemeName)) {
    fail('scheme', `generate() cannot compute ${schemeName}: the specification defines the bare names' bits only (fetch it from the service)`);
  }
  if (typeof schemeName !== 'string' || !Object.hasOwn(schemes, schemeName)) {
    fail('scheme', `unknown scheme ${JSON.stringify(schemeName)} (one of ${Object.keys(schemes).join(', ')})`);
  }
  if (REFUSED[schemeName]) fail('scheme', `generate() cannot compute ${schemeName}: ${REFUSED[schemeName]}`);
  const scheme = schemes[schemeName];
  for (const key of Object.keys(request)) {
    if (!COMMON.has(key) && !IGNORED.has(key) && !Object.hasOwn(scheme.params, key)) {
      fail(key, `unknown field for scheme ${schemeName}`);
    }
  }
  const rng = request.rng ?? 'philox-v1';
  if (!RNGS.includes(rng)) fail('rng', `generate() computes ${RNGS.join(' and ')} (not ${JSON.stringify(rng)})`);
  if (request.seed === undefined || request.seed === null) {
    fail('seed', 'generate() needs a seed (the service draws one at random when it is omitted)');
  }
  let seed;
  try {
    seed = toSeed(request.seed);
  } catch (error) {
    fail('seed', error.message.replace(/^seed: /, ''));
  }

  const shape = request.shape;
  if (!Array.isArray(shape) || shape.length > 8) fail('shape', 'must be a list of 0 to 8 integers');
  const dims = shape.map((d, i) => toBigInt(d, ['shape', i], 1n));
  // Section 1.1: flat indices are signed 64-bit, so a tensor has at most 2^63 - 1 elements.
  if (dims.reduce((a, b) => a * b, 1n) > MAX_ELEMENTS) fail('shape', 'at most 2^63 - 1 elements can be addressed');

  const dtype = request.dtype ?? 'float32';
  if (!DTYPES.includes(dtype)) fail('dtype', `must be one of ${DTYPES.join(', ')}`);
  const layout = request.layout ?? scheme.default_layout;
  if (layout !== 'torch' && layout !== 'keras') fail('layout', 'must be torch or keras');
  const params = {};
  const shown = {}; // the metadata's params: `mode` and `distribution` echoed as given (section 6.4)
  for (const [key, rule] of Object.entries(scheme.params)) {
    params[key] = parameter(schemeName, key, rule, request[key]);
    shown[key] = rule.type === 'string' && request[key] != null ? request[key] : params[key];
  }

  let slice = null;
  if (request.slice !== undefined && request.slice !== null) {
    if (!Array.isArray(request.slice) || request.slice.length !== dims.length) {
      fail('slice', `must have one [start, stop] per dimension (${dims.length})`);
    }
    slice = request.slice.map((bounds, d) => {
      if (!Array.isArray(bounds) || bounds.length !== 2) fail(['slice', d], 'must be [start, stop]');
      const [start, stop] = bounds.map((b, j) => (b === 0 ? 0n : toBigInt(b, ['slice', d, j], 0n)));
      if (!(start < stop && stop <= dims[d])) fail(['slice', d], `needs 0 <= start < stop <= ${dims[d]}`);
      return [start, stop];
    });
  }
  return {
    rng,
    scheme: schemeName,
    family: scheme.family,
    aliasOf: scheme.alias_of,
    params,
    shown,
    seed,
    name: checkName(request.name ?? 'weight'),
    dtype,
    layout,
    dims,
    fanIn: request.fan_in === undefined || request.fan_in === null ? null : toBigInt(request.fan_in, 'fan_in', 1n),
    fanOut: request.fan_out === undefined || request.fan_out === null ? null : toBigInt(request.fan_out, 'fan_out', 1n),
    slice,
  };
}

// Section 6.1: the fans a scheme reads, computed from the shape unless given; `fans` records what was read.
function fanReader(n) {
  const { dims, layout } = n;
  const fans = {};
  const computed = (which) => {
    const product = (list) => list.reduce((a, b) => a * b, 1n);
    if (layout === 'keras') {
      if (dims.length === 0) return 1n;
      if (dims.length === 1) return dims[0];
      const rf = product(dims.slice(0, -2));
      return (which === 'fan_in' ? dims.at(-2) : dims.at(-1)) * rf;
    }
    if (dims.length < 2) fail('shape', `the torch layout needs at least 2 dimensions to compute ${which}`);
    return (which === 'fan_in' ? dims[1] : dims[0]) * product(dims.slice(2));
  };
  const read = (which) => {
    const given = which === 'fan_in' ? n.fanIn : n.fanOut;
    fans[which] = given ?? computed(which);
    return fans[which];
  };
  return { read, fans };
}

/**
 * Both fans of the shape, or the explicit ones, null where the torch layout has fewer than 2 dimensions: what
 * metadata version 2 (philox-v2's responses) reports beside `fans_used`, the fans the scheme read.
 */
export function shapeFans(n) {
  const both = {};
  for (const which of ['fan_in', 'fan_out']) {
    const { read } = fanReader(n);
    try {
      both[which] = read(which);
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      both[which] = null;
    }
  }
  return both;
}

function gain(nonlinearity, a) {
  if (!Object.hasOwn(GAINS, nonlinearity)) fail('nonlinearity', `unsupported nonlinearity ${nonlinearity}`);
  return GAINS[nonlinearity](a);
}

// Section 6.3.
function varianceScaling(scale, mode, distribution, read, constants) {
  let n;
  if (mode === 'fan_in') n = Number(read('fan_in'));
  else if (mode === 'fan_out') n = Number(read('fan_out'));
  else if (mode === 'fan_avg') n = Number(read('fan_in') + read('fan_out')) / 2.0;
  else n = Math.sqrt(Number(read('fan_in')) * Number(read('fan_out')));
  const variance = scale / Math.max(1.0, n);
  if (distribution === 'uniform') {
    const bound = Math.sqrt(3.0 * variance);
    return { kind: 'uniform', low: -bound, high: bound };
  }
  if (distribution === 'untruncated_normal') return { kind: 'normal', mean: 0.0, std: Math.sqrt(variance) };
  const std = Math.sqrt(variance) / constants.TRUNCATED_NORMAL_STD_2;
  return { kind: 'truncated_normal', mean: 0.0, std, a: -2.0 * std, b: 2.0 * std };
}

function requireRank(n, ranks, what) {
  if (!ranks.includes(n.dims.length)) fail('shape', `${n.scheme} needs a ${what} shape (got ${n.dims.length}-D)`);
}

/** Section 6: the scheme's distribution and the fans it read. */
export function distributionOf(n) {
  const { constants } = spec();
  const { read, fans } = fanReader(n);
  const p = n.params;
  const vs = (scale, mode, distribution) => varianceScaling(scale, mode, distribution, read, constants);
  let schemeGain = null; // the metadata's `gain` (section 10)
  const kaiming = (distribution) => {
    const g = gain(p.nonlinearity, p.a);
    schemeGain = g;
    return vs(g * g, p.mode, distribution);
  };
  let d;
  switch (n.scheme) {
    case 'uniform':
      if (!(p.a <= p.b)) fail('a', 'must be <= b');
      d = { kind: 'uniform', low: p.a, high: p.b };
      break;
    case 'normal':
      d = { kind: 'normal', mean: p.mean, std: p.std };
      break;
    case 'trunc_normal':
      d = { kind: 'truncated_normal', mean: p.mean, std: p.std, a: p.a, b: p.b };
      break;
    case 'constant':
      d = { kind: 'constant', value: p.val };
      break;
    case 'zeros':
      d = { kind: 'constant', value: 0.0 };
      break;
    case 'ones':
      d = { kind: 'constant', value: 1.0 };
      break;
    case 'eye':
      requireRank(n, [2], '2-D');
      d = { kind: 'eye', gain: 1.0 };
      break;
    case 'identity':
      requireRank(n, [2], '2-D');
      schemeGain = p.gain;
      d = { kind: 'eye', gain: p.gain };
      break;
    case 'dirac':
      // The layout first, then the rank, as the service checks them (the spec does not order them).
      if (n.layout !== 'torch') fail('layout', 'dirac needs the torch layout');
      requireRank(n, [3, 4, 5], '3-, 4- or 5-D');
      if (n.dims[0] % BigInt(p.groups) !== 0n) fail('groups', `must divide shape[0] (${n.dims[0]})`);
      d = { kind: 'dirac', groups: p.groups };
      break;
    case 'xavier_uniform':
      schemeGain = p.gain;
      d = vs(p.gain * p.gain, 'fan_avg', 'uniform');
      break;
    case 'xavier_normal':
      schemeGain = p.gain;
      d = vs(p.gain * p.gain, 'fan_avg', 'untruncated_normal');
      break;
    case 'kaiming_uniform':
      d = kaiming('uniform');
      break;
    case 'kaiming_normal':
    case 'msra':
      d = kaiming('untruncated_normal');
      break;
    case 'torch_default': {
      const a = Math.sqrt(5.0);
      const g = gain('leaky_relu', a);
      schemeGain = g;
      d = vs(g * g, 'fan_in', 'uniform');
      break;
    }
    case 'sparse':
      if (n.layout !== 'torch') fail('layout', 'sparse needs the torch layout');
      requireRank(n, [2], '2-D');
      d = { kind: 'sparse', std: p.std, sparsity: p.sparsity };
      break;
    case 'variance_scaling':
      d = vs(p.scale, p.mode, p.distribution);
      break;
    case 'glorot_uniform':
    case 'glorot_normal':
    case 'he_uniform':
    case 'he_normal':
    case 'lecun_uniform':
    case 'lecun_normal': {
      const [scale, mode] = KERAS_PRESETS[n.scheme.split('_')[0]];
      d = vs(scale, mode, n.scheme.endsWith('uniform') ? 'uniform' : 'truncated_normal');
      break;
    }
    case 'random_normal':
      d = { kind: 'normal', mean: p.mean, std: p.stddev };
      break;
    case 'random_uniform':
      if (!(p.minval <= p.maxval)) fail('minval', 'must be <= maxval');
      d = { kind: 'uniform', low: p.minval, high: p.maxval };
      break;
    case 'truncated_normal':
      d = {
        kind: 'truncated_normal',
        mean: p.mean,
        std: p.stddev,
        a: p.mean - 2.0 * p.stddev,
        b: p.mean + 2.0 * p.stddev,
      };
      break;
    case 'uniform_unit_scaling': {
      const inputSize = n.dims.length >= 2 || n.fanIn !== null ? Number(read('fan_in')) : 1.0;
      const bound = Math.abs(Math.sqrt(3.0 / Math.max(inputSize, 1.0)) * p.factor);
      d = { kind: 'uniform', low: -bound, high: bound };
      break;
    }
    default:
      fail('scheme', `generate() does not know ${n.scheme}`);
  }
  return { distribution: d, fans, gain: schemeGain };
}

// Section 9, step 1: the computations of the distribution's mean and variance that must not overflow float64.
function moments(d, dims, math) {
  switch (d.kind) {
    case 'uniform':
      return [d.low + d.high, (d.high - d.low) * (d.high - d.low)];
    case 'normal':
      return [d.std * d.std];
    case 'truncated_normal': {
      const sqrt2pi = spec().constants.SQRT_2PI;
      const pdfLo = math.exp(-0.5 * (d.lo * d.lo)) / sqrt2pi;
      const pdfHi = math.exp(-0.5 * (d.hi * d.hi)) / sqrt2pi;
      const shift = (pdfLo - pdfHi) / d.mass;
      const v = 1.0 + (d.lo * pdfLo - d.hi * pdfHi) / d.mass - shift * shift;
      return [d.mean + d.std * (d.mirrored ? -shift : shift), d.std * d.std * (v > 0.0 ? v : 0.0)];
    }
    case 'eye': {
      const diagonal = Number(dims[0] < dims[1] ? dims[0] : dims[1]);
      return [d.gain * d.gain * diagonal];
    }
    case 'sparse': {
      const rows = Number(dims[0]);
      const kept = 1.0 - Math.min(Math.ceil(d.sparsity * rows), rows) / rows; // not (rows - zeros) / rows
      return [kept * d.std * d.std];
    }
    default:
      return [];
  }
}

// Section 5.1's numbers of a truncated normal on [a, b] (computed once per tensor), and its condition mass > 0.
function truncate(d, a, b, math) {
  const alpha = (a - d.mean) / d.std;
  const beta = (b - d.mean) / d.std;
  d.mirrored = alpha + beta > 0;
  [d.lo, d.hi] = d.mirrored ? [-beta, -alpha] : [alpha, beta];
  d.p_lo = math.ndtr(d.lo);
  d.mass = math.ndtr(d.hi) - d.p_lo;
  if (!(d.mass > 0)) fail('b', `the interval [${a}, ${b}] has no probability mass in float64`);
}

// Section 5.1's conditions on a truncated normal, then section 9: float64 overflow refused at the scheme's first
// parameter (`field`), the dtype's range at `dtype`. philox-v2 (its section 7) makes the same checks on the same
// numbers (its normal's reach is r + 53 ln 2 / r), then cuts: the uniform is sampled on [lo, hi), the truncated
// normal on [a', b'] (section 5.1's numbers again, from a' and b'). The service checks in this order.
function prepare(d, dtype, dims, math, field, rng) {
  const v2 = rng === 'philox-v2';
  if (d.kind === 'truncated_normal') {
    if (!(d.std > 0)) fail('std', 'a truncated normal needs std > 0');
    if (!(d.a < d.b)) fail('b', 'a truncated normal needs a < b');
    truncate(d, d.a, d.b, math);
  }
  const numbers = Object.entries(d).filter(([, v]) => typeof v === 'number');
  for (const [key, value] of numbers) {
    if (!Number.isFinite(value)) fail(field, `the distribution's ${key} is not finite (${value})`);
  }
  let largest;
  switch (d.kind) {
    case 'uniform':
      largest = Math.max(Math.abs(d.low), Math.abs(d.high));
      break;
    case 'normal':
    case 'sparse':
      largest = Math.abs(d.mean ?? 0.0) + d.std * (v2 ? normalReach(math) : math.normalRadius);
      break;
    case 'truncated_normal':
      largest = Math.max(Math.abs(d.a), Math.abs(d.b));
      break;
    case 'constant':
      largest = Math.abs(d.value);
      break;
    case 'eye':
      largest = Math.abs(d.gain);
      break;
    default:
      largest = 1.0;
  }
  if (!moments(d, dims, math).every(Number.isFinite) || !Number.isFinite(largest)) {
    fail(field, 'the parameters overflow float64 (values, their range or their variance)');
  }
  const max = hexToFloat(spec().json.constants.dtype_max[dtype].bits);
  if (largest > max) fail('dtype', `values up to ${largest} exceed ${dtype}'s largest finite value ${max}`);
  if (!v2) return;
  cut(d, dtype, RequestError);
  if (d.kind === 'truncated_normal') truncate(d, d.cutA, d.cutB, math);
}

// Section 3, on words given as their limbs (high, low).
const high53 = (hi, lo) => hi * 2097152 + (lo >>> 11); // w >> 11, exact
export const uniform01 = (hi, lo) => high53(hi, lo) * 2 ** -53;
export const uniformOpen = (hi, lo) => (hi * 1048576 + (lo >>> 12) + 0.5) * 2 ** -52;

/** normal_pair(w0, w1) into out[0], out[1] (elements 2k and 2k + 1). */
export function normalPair(h0, l0, h1, l1, math, out) {
  const u1 = (high53(h0, l0) + 1.0) * 2 ** -53;
  const t = uniform01(h1, l1);
  const r = Math.sqrt(-2.0 * math.log(u1));
  const sc = math.sincosTurns(t);
  out[0] = r * sc[1];
  out[1] = r * sc[0];
  return out;
}

/**
 * The value of the element whose flat index is `flat` and coordinates `at` (numbers, or BigInts for tensors of 2^53
 * elements or more), for one distribution; blocks are cached so neighbouring elements share them.
 */
function elementFunction(d, key, dims, math) {
  const block = new Uint32Array(8);
  let cached = -1;
  const load = (flat) => {
    const b = typeof flat === 'bigint' ? flat >> 2n : Math.floor(flat / 4);
    if (b !== cached) {
      streamBlock(key, b, 0, block);
      cached = b;
      pairOf = -1;
    }
    return typeof flat === 'bigint' ? Number(flat & 3n) : flat % 4;
  };
  const pair = new Float64Array(2);
  let pairOf = -1; // which pair of the cached block `pair` holds (0 or 2: its first word)
  const normal = (flat) => {
    const j = load(flat);
    const w0 = j & 2; // element i draws on the pair (w[2k], w[2k+1]), k = i // 2
    if (pairOf !== w0) {
      normalPair(block[2 * w0], block[2 * w0 + 1], block[2 * w0 + 2], block[2 * w0 + 3], math, pair);
      pairOf = w0;
    }
    return pair[j & 1];
  };
  switch (d.kind) {
    case 'uniform': {
      const width = d.high - d.low;
      return (flat) => {
        const j = load(flat);
        return d.low + width * uniform01(block[2 * j], block[2 * j + 1]);
      };
    }
    case 'normal':
      return (flat) => d.mean + d.std * normal(flat);
    case 'sparse':
      return (flat) => 0.0 + d.std * normal(flat);
    case 'truncated_normal':
      return (flat) => {
        const j = load(flat);
        const u = uniformOpen(block[2 * j], block[2 * j + 1]);
        let z = math.ndtri(d.p_lo + u * d.mass);
        if (d.mirrored) z = -z;
        let x = d.mean + d.std * z;
        x = x > d.a ? x : d.a;
        return x < d.b ? x : d.b;
      };
    case 'constant':
      return () => d.value;
    case 'eye':
      return (flat, at) => (at[0] === at[1] ? d.gain : 0.0);
    case 'dirac': {
      const per = dims[0] / BigInt(d.groups);
      const reach = per < dims[1] ? per : dims[1];
      return (flat, at) => {
        const c = BigInt(at[1]);
        if (!(c < reach && BigInt(at[0]) % per === c)) return 0.0;
        for (let k = 2; k < dims.length; k++) if (BigInt(at[k]) !== dims[k] / 2n) return 0.0;
        return 1.0;
      };
    }
    default:
      throw new Error(`no element function for ${d.kind}`);
  }
}

// Section 5.4 (philox-v2: its section 7): the whole [rows, cols] matrix of Normal(0, std) `values`, then in each
// column the rows with the smallest mask words (stable: ties to the lower row) set to 0.0. A mask word is
// (maskHigh, maskLow): philox-v1's 64-bit purpose-1 words; philox-v2's are 32-bit (maskLow null).
function zeroSmallest(d, dims, values, maskHigh, maskLow) {
  const rows = Number(dims[0]);
  const cols = Number(dims[1]);
  const zeros = Math.min(Math.ceil(d.sparsity * rows), rows);
  const order = Array.from({ length: rows }, (_, r) => r);
  const low = maskLow ?? { length: 0 };
  for (let c = 0; c < cols; c++) {
    const word = (r) => r * cols + c;
    order.sort(
      (x, y) => maskHigh[word(x)] - maskHigh[word(y)] || (low[word(x)] ?? 0) - (low[word(y)] ?? 0) || x - y,
    );
    for (let z = 0; z < zeros; z++) values[word(order[z])] = 0.0;
  }
  return values;
}

function sparseMatrix(d, key, dims, valueAt) {
  const values = new Float64Array(Number(dims[0] * dims[1]));
  for (let i = 0; i < values.length; i++) values[i] = valueAt(i);
  const maskHigh = new Uint32Array(values.length);
  const maskLow = new Uint32Array(values.length);
  const block = new Uint32Array(8);
  for (let b = 0; 4 * b < values.length; b++) {
    streamBlock(key, b, 1, block);
    for (let j = 0; j < 4 && 4 * b + j < values.length; j++) {
      maskHigh[4 * b + j] = block[2 * j];
      maskLow[4 * b + j] = block[2 * j + 1];
    }
  }
  return zeroSmallest(d, dims, values, maskHigh, maskLow);
}

function sparseMatrixV2(d, digest, dims, fill) {
  const values = new Float64Array(Number(dims[0] * dims[1]));
  fill(0, values.length, values, 0);
  return zeroSmallest(d, dims, values, maskWords(digest, values.length), null);
}

/** float64 values -> the dtype's storage (section 8): Float64Array, Float32Array or Uint16Array of encodings. */
export function toDtype(values, dtype) {
  if (dtype === 'float64') return Float64Array.from(values);
  if (dtype === 'float32') return Float32Array.from(values);
  const round = dtype === 'float16' ? float32BitsToHalf : float32BitsToBfloat16;
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = round(float32Bits(values[i]));
  return out;
}

/**
 * The request's tensor in its dtype's storage (Float64Array, Float32Array, or Uint16Array encodings), with the
 * normalized request, its distribution, the fans read and the scheme's gain: what generate() and encode() need.
 */
export function compute(request) {
  const math = mathFor(spec());
  const n = normalize(request);
  const { distribution: d, fans, gain: schemeGain } = distributionOf(n);
  prepare(d, n.dtype, n.dims, math, Object.keys(spec().schemes[n.scheme].params)[0] ?? 'scheme', n.rng);
  const v2 = n.rng === 'philox-v2';
  const key = v2 ? digestWords(n.seed, n.name) : deriveKey(n.seed, n.name);
  const dims = n.dims;
  const full = dims.reduce((a, b) => a * b, 1n);
  const big = full >= BigInt(TWO_POW_53);
  // philox-v2 fills runs of consecutive elements (`fill`); its constant, eye and dirac are philox-v1's values.
  const fill = v2 ? sampler(d, key, n.dtype, math) : null;
  const valueAt = fill ? null : elementFunction(d, key, dims, math);

  // Indices are plain numbers unless the whole tensor (a slice may cut a small region of a huge one) reaches 2^53.
  const T = big ? BigInt : Number;
  const one = T(1);
  const region = (n.slice ?? dims.map((dim) => [0n, dim])).map(([start, stop]) => [T(start), T(stop)]);
  const count = Number(region.reduce((a, [start, stop]) => a * (stop - start), one));
  const strides = dims.map((_, k) => T(dims.slice(k + 1).reduce((a, b) => a * b, 1n)));
  const at = region.map(([start]) => start);
  const values = new Float64Array(count);
  let whole = null;
  if (d.kind === 'sparse') whole = v2 ? sparseMatrixV2(d, key, dims, fill) : sparseMatrix(d, key, dims, valueAt);
  // Element by element, or (philox-v2's samplers) one run per row of the region: its last dimension's elements
  // have consecutive flat indices.
  const byRun = fill !== null && whole === null;
  const last = dims.length - 1;
  const step = byRun && last >= 0 ? Number(region[last][1] - region[last][0]) : 1;
  const moving = byRun ? last - 1 : last; // the last dimension that the walk over the region advances
  for (let out = 0; out < count; out += step) {
    let flat = T(0);
    for (let k = 0; k < dims.length; k++) flat += at[k] * strides[k];
    if (byRun) fill(flat, step, values, out);
    else values[out] = whole ? whole[flat] : valueAt(flat, at);
    for (let k = moving; k >= 0; k--) {
      at[k] += one;
      if (at[k] < region[k][1]) break;
      at[k] = region[k][0];
    }
  }
  const shape = region.map(([start, stop]) => Number(stop - start));
  return { request: n, distribution: d, fans, gain: schemeGain, stored: toDtype(values, n.dtype), shape };
}

/**
 * The tensor of `request` computed locally: { data, shape, dtype, bytes, distribution, fans }. `bytes` are the
 * little-endian data bytes the service sends; `data` is a Float64Array / Float32Array, for float16 and bfloat16 a
 * Float32Array of their exact values, or with `options.raw` the Uint16Array of their encodings.
 */
export function generate(request, options = {}) {
  const { request: n, distribution, fans, stored, shape } = compute(request);
  const data = stored instanceof Uint16Array && !options.raw ? widen16(stored, n.dtype) : stored;
  return { data, shape, dtype: n.dtype, bytes: littleEndianBytes(stored), distribution, fans };
}
