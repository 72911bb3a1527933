// rng philox-v2 (docs/philox-v2.md): the cuts (section 6), the refusals they add, and the samplers of section 7 on
// whole runs of consecutive elements: the run's stream blocks are computed at once into a typed array, then turned
// into values; only the ziggurat's rare retries compute blocks one by one. Everything a distribution shares with
// philox-v1 (schemes, fans, parameters, checks, constant/eye/dirac values, log/ndtr/ndtri) is philox-v1's code.

import { bfloat16ToFloat, float32Bits, float32BitsToBfloat16, float32BitsToHalf, halfToFloat } from './dtypes.js';
import { retryBlock, streamWords } from './philox2.js';
import { spec } from './spec.js';

const TWO_POW_M23 = 2 ** -23;
const TWO_POW_M32 = 2 ** -32;
const TWO_POW_M52 = 2 ** -52;
const TWO_POW_M53 = 2 ** -53;
const SIGN = 1n << 63n;
const MAX_RANK = 0x7fefffffffffffffn; // the largest finite float64's encoding
const view = new DataView(new ArrayBuffer(8));

/** R_D (section 2): float64 -> the dtype, float16 and bfloat16 through float32, as a float64 number. */
const ROUND = {
  float64: (x) => x,
  float32: Math.fround,
  float16: (x) => halfToFloat(float32BitsToHalf(float32Bits(x))),
  bfloat16: (x) => bfloat16ToFloat(float32BitsToBfloat16(float32Bits(x))),
};

/** The float64 just above (`up`) or just below x (C nextafter; x finite). */
export function nextFloat(x, up) {
  if (x === 0) return up ? Number.MIN_VALUE : -Number.MIN_VALUE;
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  view.setBigUint64(0, (x > 0) === up ? bits + 1n : bits - 1n);
  return view.getFloat64(0);
}

// Section 6's order of the finite float64 values: rank bits(x) for x >= 0, -(bits(x) without its sign) below.
function fromRank(rank) {
  view.setBigUint64(0, rank >= 0n ? rank : -rank | SIGN);
  return view.getFloat64(0);
}

/** Section 6: the least float64 x with R_D(x) >= v (`strict`: R_D(x) > v), by bisection over the ranks. */
export function firstAtLeast(v, dtype, strict = false) {
  if (dtype === 'float64') return strict ? nextFloat(v, true) : v;
  const round = ROUND[dtype];
  const holds = strict ? (x) => round(x) > v : (x) => round(x) >= v;
  let below = -MAX_RANK; // invariant: the least rank that holds is in (below, at], or below itself
  let at = MAX_RANK;
  if (holds(fromRank(below))) return fromRank(below);
  while (at - below > 1n) {
    const middle = (below + at) >> 1n;
    if (holds(fromRank(middle))) at = middle;
    else below = middle;
  }
  return fromRank(at);
}

/** Section 6: the greatest float64 x with R_D(x) <= v. */
export const lastAtMost = (v, dtype) => (dtype === 'float64' ? v : nextFloat(firstAtLeast(v, dtype, true), false));

/** The ziggurat's largest |z| (section 7: the tail's r + a with the least U, 2^-53): r - log(2^-53) / r. */
export function normalReach(math) {
  const r = spec('philox-v2').ziggurat.X[1];
  return r + -math.log(TWO_POW_M53) / r;
}

const fail = (RequestError, field, message) => {
  throw new RequestError([field], message);
};

/**
 * Section 7's cuts, after philox-v1's checks of section 9 passed: a uniform's [lo, hi), a truncated normal's
 * [a', b'] (its alpha, beta, lo, hi, p_lo and mass are then computed from them by the caller).
 */
export function cut(d, dtype, RequestError) {
  if (d.kind === 'uniform' && d.low < d.high) {
    const strict = d.low === -d.high;
    d.cutLow = firstAtLeast(d.low, dtype, strict);
    d.cutHigh = firstAtLeast(d.high, dtype);
    if (!(d.cutLow < d.cutHigh)) {
      const interval = `[${d.low}, ${d.high})`;
      fail(RequestError, 'dtype', `no ${dtype} value lies in the uniform's interval ${interval} after rounding`);
    }
  } else if (d.kind === 'truncated_normal') {
    d.cutA = firstAtLeast(d.a, dtype);
    d.cutB = lastAtMost(d.b, dtype);
    if (!(d.cutA < d.cutB)) {
      fail(RequestError, 'dtype', `no ${dtype} values lie in the truncation interval [${d.a}, ${d.b}] to sample`);
    }
  }
}

// A draw's 64-bit word W as its high and low 32 bits: W >> 12 and W >> 11, exact below 2^53.
const top52 = (high, low) => high * 1048576 + (low >>> 12);
const top53 = (high, low) => high * 2097152 + (low >>> 11);

/**
 * The ziggurat of section 7 for one tensor's digest: z(words, first, wide, start, t) is the standard normal of element
 * start + t, whose draw is the word(s) at words[first] (narrow: one 32-bit word; wide: high, low).
 */
function ziggurat(digest, math) {
  const { X, F } = spec('philox-v2').ziggurat;
  const r = X[1];
  const step23 = X.map((x) => x * TWO_POW_M23);
  const step52 = X.map((x) => x * TWO_POW_M52);
  const retry = new Uint32Array(4);
  let retryOf = null; // [element, n] of the block in `retry`
  // Retry word k of `element` as [high, low].
  const retryWord = (element, k) => {
    const n = k >>> 1;
    if (!retryOf || retryOf[0] !== element || retryOf[1] !== n) {
      retryBlock(digest, element, n, retry);
      retryOf = [element, n];
    }
    return (k & 1) === 0 ? [retry[0], retry[1]] : [retry[2], retry[3]];
  };
  const open = (word) => (top52(word[0], word[1]) + 0.5) * TWO_POW_M52; // U(W), in (0, 1)

  // The slow path: from a try (j, x, negative) off the fast path, until a point under the density; the signed z.
  function redo(element, j, x, negative) {
    let k = 0;
    for (;;) {
      if (x < X[j + 1]) return negative ? -x : x;
      if (j === 0) {
        for (;;) {
          const a = -math.log(open(retryWord(element, k))) / r;
          const b = -math.log(open(retryWord(element, k + 1)));
          k += 2;
          if (b + b > a * a) return negative ? -(r + a) : r + a;
        }
      }
      const y = F[j] + open(retryWord(element, k)) * (F[j + 1] - F[j]);
      k += 1;
      if (-2 * math.log(y) > x * x) return negative ? -x : x;
      const [high, low] = retryWord(element, k); // a new try: a new strip, sign and point
      k += 1;
      j = low & 0xff;
      negative = low & 0x100;
      x = (top52(high, low) + 0.5) * step52[j];
    }
  }

  return (words, first, wide, start, t) => {
    let j;
    let negative;
    let x;
    if (wide) {
      const high = words[first];
      const low = words[first + 1];
      j = low & 0xff;
      negative = low & 0x100;
      x = (top52(high, low) + 0.5) * step52[j];
    } else {
      const w = words[first];
      j = w & 0xff;
      negative = w & 0x100;
      x = ((w >>> 9) + 0.5) * step23[j];
    }
    if (!(x < X[j + 1])) return redo(typeof start === 'bigint' ? start + BigInt(t) : start + t, j, x, negative);
    return negative ? -x : x;
  };
}

/**
 * The sampler of distribution `d` (uniform, normal, truncated_normal, sparse's values) under philox-v2:
 * fill(start, count, out, at) writes the float64 values of the elements start .. start + count - 1 (start a number,
 * or a BigInt for tensors of 2^53 elements or more) to out[at ..]. Sparse's values are wide normals in any dtype.
 */
export function sampler(d, digest, dtype, math) {
  const wide = dtype === 'float64' || d.kind === 'sparse';
  const perElement = wide ? 2 : 1;
  let words = new Uint32Array(64);
  // The words of elements start .. start + count - 1: returns the index in `words` of element start's draw.
  const load = (start, count) => {
    const big = typeof start === 'bigint';
    const firstWord = big ? start * BigInt(perElement) : start * perElement;
    const firstBlock = big ? firstWord >> 2n : Math.floor(firstWord / 4);
    const offset = big ? Number(firstWord & 3n) : firstWord % 4;
    const blocks = Math.ceil((offset + count * perElement) / 4);
    if (words.length < 4 * blocks) words = new Uint32Array(4 * blocks);
    streamWords(digest, 0, firstBlock, blocks, words);
    return offset;
  };

  switch (d.kind) {
    case 'uniform': {
      if (!(d.low < d.high)) return (start, count, out, at) => out.fill(d.low, at, at + count); // U[a, a): a
      const lo = d.cutLow;
      const width = d.cutHigh - lo;
      const top = nextFloat(d.cutHigh, false);
      return (start, count, out, at) => {
        const first = load(start, count);
        for (let t = 0; t < count; t++) {
          const i = first + t * perElement;
          const u = wide ? top53(words[i], words[i + 1]) * TWO_POW_M53 : words[i] * TWO_POW_M32;
          const x = lo + width * u;
          out[at + t] = x > top ? top : x;
        }
      };
    }
    case 'truncated_normal':
      return (start, count, out, at) => {
        const first = load(start, count);
        for (let t = 0; t < count; t++) {
          const i = first + t * perElement;
          const u = wide ? (top52(words[i], words[i + 1]) + 0.5) * TWO_POW_M52 : (words[i] + 0.5) * TWO_POW_M32;
          let z = math.ndtri(d.p_lo + u * d.mass);
          if (d.mirrored) z = -z;
          let x = d.mean + d.std * z;
          // Section 7's clip, comparisons as written there: x = +0.0 with a' = -0.0 gives -0.0.
          x = x > d.cutA ? x : d.cutA;
          out[at + t] = x < d.cutB ? x : d.cutB;
        }
      };
    case 'normal':
    case 'sparse': {
      const z = ziggurat(digest, math);
      const mean = d.kind === 'normal' ? d.mean : 0.0;
      return (start, count, out, at) => {
        const first = load(start, count);
        for (let t = 0; t < count; t++) {
          out[at + t] = mean + d.std * z(words, first + t * perElement, wide, start, t);
        }
      };
    }
    default:
      return null;
  }
}

/** Sparse's mask words (section 7): the 32-bit words w'[0 .. count) of stream purpose 1. */
export function maskWords(digest, count) {
  const words = streamWords(digest, 1, 0, Math.ceil(count / 4), new Uint32Array(4 * Math.ceil(count / 4)));
  return words.subarray(0, count);
}
