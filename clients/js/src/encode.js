// encode(): the whole response body the service sends for a request (docs/reproducibility.md section 10), built
// locally: metadata, its JSON text, and the safetensors, npy or JSON container around generate()'s data. The
// container names the service version, so the caller says which one (`service`, e.g. 'initserve 0.1.0').

import { bfloat16ToFloat, concatBytes as concat, halfToFloat, littleEndianBytes } from './dtypes.js';
import { compute, shapeFans } from './generate.js';
import { spec } from './spec.js';

const SAFETENSORS_DTYPE = { float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16' };
const NPY_DESCR = { float64: '<f8', float32: '<f4', float16: '<f2' };

/** A float marker: written as the float64 (or float32) shortest decimal, never as an integer. */
class Float {
  constructor(value, single = false) {
    this.value = value;
    this.single = single;
  }
}

/** [digits, k] of a decimal text (value = d1.d2... x 10^k), trailing zeros dropped. */
function digitsOf(text) {
  const [mantissa, exponent = '0'] = text.split('e');
  const [whole, fraction = ''] = mantissa.split('.');
  const all = whole + fraction;
  const lead = all.length - all.replace(/^0+/, '').length;
  return [all.slice(lead).replace(/0+$/, ''), Number(exponent) + whole.length - 1 - lead];
}

const float32Parts = new DataView(new ArrayBuffer(4));

// |D x 10^K - x| for a float32 x, as an exact rational compared on a common denominator 2^a 10^b.
function distance(digits, k, x) {
  float32Parts.setFloat32(0, x);
  const bits = float32Parts.getUint32(0);
  const biased = (bits >>> 23) & 0xff;
  const mantissa = BigInt(biased ? (bits & 0x7fffff) | 0x800000 : bits & 0x7fffff);
  const e = (biased || 1) - 150; // x = mantissa * 2^e
  const K = k - (digits.length - 1); // candidate = D * 10^K
  const scale2 = e < 0 ? -e : 0;
  const scale10 = K < 0 ? -K : 0;
  const candidate = BigInt(digits) * 10n ** BigInt(K + scale10) * 2n ** BigInt(scale2);
  const exact = mantissa * 2n ** BigInt(e + scale2) * 10n ** BigInt(scale10);
  return candidate > exact ? candidate - exact : exact - candidate;
}

/**
 * [digits, k] of the shortest decimal that reads back to |x| as a float64 (ECMAScript's Number::toString: the
 * closest, ties to even) or, if `single`, as a float32 (the same rule, computed here: ECMAScript has no float32).
 */
function shortest(x, single) {
  const magnitude = Math.abs(x);
  if (!single) return digitsOf(String(magnitude));
  for (let precision = 1; precision <= 9; precision++) {
    const [digits, k] = digitsOf(magnitude.toExponential(precision - 1));
    const base = BigInt(digits.padEnd(precision, '0'));
    const exponent = k - precision + 1;
    // The closest decimal of this length, its neighbours (an uneven float32 gap at a power of 2, or a tie)
    const found = [base - 1n, base, base + 1n]
      .filter((d) => d > 0n && Math.fround(Number(`${d}e${exponent}`)) === magnitude)
      .map((d) => digitsOf(`${d}e${exponent}`));
    if (found.length) {
      found.sort((a, b) => {
        const [da, db] = [distance(...a, magnitude), distance(...b, magnitude)];
        if (da !== db) return da < db ? -1 : 1;
        return (Number(a[0].at(-1)) % 2) - (Number(b[0].at(-1)) % 2); // a tie: the even last digit
      });
      return found[0];
    }
  }
  throw new Error(`no float32 decimal for ${x}`);
}

/** Section 10's float text: positional within the dtype's exponent range, always with a fraction; else d.ddde±k. */
export function formatFloat(x, single = false) {
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [digits, k] = shortest(x, single);
  const [low, high] = single ? [-6, 12] : [-5, 15];
  if (k < low || k > high) {
    const fraction = digits.length > 1 ? `.${digits.slice(1)}` : '';
    return `${sign}${digits[0]}${fraction}e${k < 0 ? '-' : '+'}${Math.abs(k)}`;
  }
  if (k < 0) return `${sign}0.${'0'.repeat(-k - 1)}${digits}`;
  const whole = digits.slice(0, k + 1).padEnd(k + 1, '0');
  return `${sign}${whole}.${digits.slice(k + 1) || '0'}`;
}

/** Section 10's JSON text: compact, keys in insertion order, Float markers as floats, BigInt as integers. */
export function jsonText(value) {
  if (value instanceof Float) return formatFloat(value.value, value.single);
  if (typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Section 10's metadata of one tensor, in its order. */
export function metadataOf({ request: n, distribution: d, fans, gain }, service) {
  const rules = spec().schemes[n.scheme].params;
  const params = {};
  for (const [key, value] of Object.entries(n.shown)) {
    params[key] = rules[key].type === 'number' ? new Float(value) : value;
  }
  const bigToInt = (b) => (b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b);
  const meta = {
    name: n.name,
    scheme: n.scheme,
    family: n.family,
    params,
    seed: n.seed,
    shape: n.dims.map(bigToInt),
    dtype: n.dtype,
    layout: n.layout,
    // Metadata version 2 (every rng after philox-v1): both fans of the shape, then those the scheme read.
    ...(n.rng === 'philox-v1'
      ? { fan_in: fans.fan_in ?? null, fan_out: fans.fan_out ?? null }
      : { ...shapeFans(n), fans_used: ['fan_in', 'fan_out'].filter((which) => fans[which] !== undefined) }),
    gain: d.kind === 'eye' ? new Float(d.gain) : gain === null ? null : new Float(gain),
    distribution: d.kind,
  };
  const numbers = {
    uniform: d.low === -d.high ? ['bound'] : ['low', 'high'],
    normal: ['mean', 'std'],
    truncated_normal: ['mean', 'std', 'a', 'b'],
    constant: ['value'],
    eye: [],
    dirac: ['groups'],
    sparse: ['std', 'sparsity', 'zeros_per_column'],
  }[d.kind];
  const rows = Number(n.dims[0]);
  const derived = { bound: d.high, zeros_per_column: Math.min(Math.ceil(d.sparsity * rows), rows) };
  for (const key of numbers) {
    const value = derived[key] ?? d[key];
    meta[key] = ['groups', 'zeros_per_column'].includes(key) ? value : new Float(value);
  }
  meta.rng = n.rng;
  meta.service = service;
  if (n.aliasOf) meta.alias_of = n.aliasOf;
  if (n.slice) {
    meta.shape = n.slice.map(([start, stop]) => bigToInt(stop - start));
    meta.full_shape = n.dims.map(bigToInt);
    meta.slice = n.slice.map((bounds) => bounds.map(bigToInt));
  }
  return meta;
}

const utf8 = (text) => new TextEncoder().encode(text);

const byCodePoint = ([a], [b]) => {
  const x = [...a].map((c) => c.codePointAt(0));
  const y = [...b].map((c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
};
const sortedObject = (entries) => Object.fromEntries([...entries].sort(byCodePoint));

function safetensors(meta, tensor, dtype, data) {
  const metadata = sortedObject(
    Object.entries(meta)
      .filter(([, v]) => v !== null)
      .map(([k, v]) => [k, typeof v === 'string' ? v : jsonText(v)]),
  );
  const entry = { data_offsets: [0, data.length], dtype: SAFETENSORS_DTYPE[dtype], shape: tensor.shape };
  const header = jsonText(sortedObject([['__metadata__', metadata], [meta.name, entry]]));
  let bytes = utf8(header);
  bytes = concat(bytes, utf8(' '.repeat((8 - (bytes.length % 8)) % 8)));
  const length = new Uint8Array(8);
  new DataView(length.buffer).setBigUint64(0, BigInt(bytes.length), true);
  return concat(length, bytes, data);
}

function npy(tensor, dtype, data) {
  if (!NPY_DESCR[dtype]) throw new Error(`npy has no code for ${dtype}`);
  const shape = tensor.shape.length === 1 ? `(${tensor.shape[0]},)` : `(${tensor.shape.join(', ')})`;
  let header = `{'descr': '${NPY_DESCR[dtype]}', 'fortran_order': False, 'shape': ${shape}, }`;
  header += `${' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64)}\n`;
  const preamble = Uint8Array.of(0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8);
  return concat(preamble, utf8(header), data);
}

function json(meta, stored, dtype) {
  const widen = { float16: halfToFloat, bfloat16: bfloat16ToFloat }[dtype] ?? ((v) => v);
  const values = Array.from(stored, (v) => new Float(widen(v), dtype !== 'float64'));
  return utf8(jsonText({ ...meta, data: values }));
}

/**
 * The response body of POST /init for a seeded single-tensor request, bit for bit as the service of version
 * `options.service` (e.g. 'initserve 0.1.0') writes it, in `options.format` (else the request's, else safetensors).
 */
export function encode(request, options = {}) {
  if (!options.service) throw new TypeError("encode needs options.service, e.g. 'initserve 0.1.0'");
  const tensor = compute(request);
  const dtype = tensor.request.dtype;
  const format = options.format ?? request.format ?? 'safetensors';
  const meta = metadataOf(tensor, options.service);
  if (format === 'json') return json(meta, tensor.stored, dtype);
  const data = littleEndianBytes(tensor.stored);
  if (format === 'npy') return npy(tensor, dtype, data);
  if (format === 'safetensors') return safetensors(meta, tensor, dtype, data);
  throw new Error(`unknown format ${format}`);
}
