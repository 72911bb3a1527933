// Section 2 of docs/reproducibility.md: the key (2.1) and Philox4x64-10 (2.2). A uint64 is two uint32 limbs
// (high, low): exact integer arithmetic on plain numbers, far faster than BigInt in the per-block loop.

import { sha256 } from './sha256.js';
import { spec } from './spec.js';

const TWO32 = 4294967296;
const MAX_SEED = (1n << 64n) - 1n;

// The 64-bit product of two uint32 is split into limbs without BigInt: Math.imul gives the low limb exactly, and
// the float product is within 2^11 of the exact one, so rounding (product - low) / 2^32 recovers the high limb.
/** The high 32 bits of the product of the uint32 x and y, whose low 32 bits are `low`. */
export const mulHigh = (x, y, low) => Math.round((x * y - low) / TWO32);

let mulHi = 0;
let mulLo = 0;
function mul32(x, y) {
  mulLo = Math.imul(x, y) >>> 0;
  mulHi = mulHigh(x, y, mulLo);
}

// The 128-bit product (ah:al) * (bh:bl) as four limbs, most significant first, into out[at..at+4).
function mul64(ah, al, bh, bl, out, at) {
  mul32(al, bl);
  const llHi = mulHi;
  const r0 = mulLo;
  mul32(al, bh);
  const lhHi = mulHi;
  const lhLo = mulLo;
  mul32(ah, bl);
  const hlHi = mulHi;
  const hlLo = mulLo;
  mul32(ah, bh);
  const s1 = llHi + lhLo + hlLo;
  const s2 = lhHi + hlHi + mulLo + Math.floor(s1 / TWO32);
  out[at] = mulHi + Math.floor(s2 / TWO32);
  out[at + 1] = s2 >>> 0;
  out[at + 2] = s1 >>> 0;
  out[at + 3] = r0;
}

const products = new Uint32Array(8);

/**
 * One Philox4x64-10 block. key: Uint32Array [k0 high, k0 low, k1 high, k1 low]; counter: Uint32Array(8), the words
 * c0..c3 as (high, low) limbs; the output words go to `out` (Uint32Array(8), may be `counter`).
 */
export function philoxBlock(key, counter, out) {
  const { multipliers, keyIncrements, rounds } = spec().philox;
  const [m0h, m0l] = multipliers[0];
  const [m1h, m1l] = multipliers[1];
  const [i0h, i0l] = keyIncrements[0];
  const [i1h, i1l] = keyIncrements[1];
  let k0h = key[0];
  let k0l = key[1];
  let k1h = key[2];
  let k1l = key[3];
  let c0h = counter[0];
  let c0l = counter[1];
  let c1h = counter[2];
  let c1l = counter[3];
  let c2h = counter[4];
  let c2l = counter[5];
  let c3h = counter[6];
  let c3l = counter[7];
  for (let round = 0; round < rounds; round++) {
    if (round > 0) {
      let low = k0l + i0l;
      k0h = (k0h + i0h + (low >= TWO32 ? 1 : 0)) >>> 0;
      k0l = low >>> 0;
      low = k1l + i1l;
      k1h = (k1h + i1h + (low >= TWO32 ? 1 : 0)) >>> 0;
      k1l = low >>> 0;
    }
    mul64(m0h, m0l, c0h, c0l, products, 0); // hi0 = products[0..2), lo0 = products[2..4)
    mul64(m1h, m1l, c2h, c2l, products, 4); // hi1, lo1
    const n0h = (products[4] ^ c1h ^ k0h) >>> 0;
    const n0l = (products[5] ^ c1l ^ k0l) >>> 0;
    const n2h = (products[0] ^ c3h ^ k1h) >>> 0;
    const n2l = (products[1] ^ c3l ^ k1l) >>> 0;
    c1h = products[6];
    c1l = products[7];
    c3h = products[2];
    c3l = products[3];
    c0h = n0h;
    c0l = n0l;
    c2h = n2h;
    c2l = n2l;
  }
  out[0] = c0h;
  out[1] = c0l;
  out[2] = c1h;
  out[3] = c1l;
  out[4] = c2h;
  out[5] = c2l;
  out[6] = c3h;
  out[7] = c3l;
  return out;
}

/** A seed as a BigInt in [0, 2^64 - 1]: a safe integer, a BigInt or a decimal string. */
export function toSeed(seed) {
  let value;
  if (typeof seed === 'bigint') value = seed;
  else if (typeof seed === 'number' && Number.isSafeInteger(seed)) value = BigInt(seed);
  else if (typeof seed === 'string' && /^[0-9]+$/.test(seed)) value = BigInt(seed);
  else {
    throw new TypeError(
      `seed: ${String(seed)} is not an integer (pass a BigInt or a decimal string above 2^53 - 1)`,
    );
  }
  if (value < 0n || value > MAX_SEED) throw new RangeError(`seed: ${value} is outside [0, 2^64 - 1]`);
  return value;
}

/**
 * The SHA-256 input of section 2.1: the domain (philox-v1's unless another rng's is given), the seed (8 bytes
 * little-endian), the name in UTF-8.
 */
export function keyInput(seed, name, domain = spec().domain) {
  const nameBytes = new TextEncoder().encode(name);
  const input = new Uint8Array(domain.length + 8 + nameBytes.length);
  input.set(domain);
  new DataView(input.buffer).setBigUint64(domain.length, toSeed(seed), true);
  input.set(nameBytes, domain.length + 8);
  return input;
}

/** The key (k0, k1) of a tensor's stream, as the limbs [k0 high, k0 low, k1 high, k1 low]. */
export function deriveKey(seed, name) {
  const digest = new DataView(sha256(keyInput(seed, name)).buffer);
  const limbs = [4, 0, 12, 8].map((offset) => digest.getUint32(offset, true));
  return Uint32Array.from(limbs);
}

/** Block `block` (a number or, at and above 2^53, a BigInt) of stream `purpose` under `key`, into `out`. */
export function streamBlock(key, block, purpose, out) {
  if (typeof block === 'bigint') {
    const limb = (i) => Number((block >> BigInt(32 * i)) & 0xffffffffn);
    [out[0], out[1], out[2], out[3]] = [limb(1), limb(0), limb(3), limb(2)]; // c0 = b mod 2^64, c1 = b >> 64
  } else {
    out[0] = Math.floor(block / TWO32);
    out[1] = block >>> 0;
    out[2] = 0;
    out[3] = 0;
  }
  out[4] = 0;
  out[5] = purpose;
  out[6] = 0;
  out[7] = 0;
  return philoxBlock(key, out, out);
}
