// Sections 3 and 4 of docs/philox-v2.md: the digest words, Philox4x32-10, the values and mask streams and the
// normal's per-element retry stream. A 32x32 -> 64-bit product is Math.imul (low word) and a rounded float product
// (high word), as for philox-v1: no BigInt in the block loop; BigInt only to split indices of 2^53 and more.

import { keyInput, mulHigh } from './philox.js';
import { sha256 } from './sha256.js';
import { spec } from './spec.js';

const TWO32 = 4294967296;
const HIGH_BIT = 0x80000000;

/** The eight little-endian uint32 words d0..d7 of SHA-256("initserve/philox-v2" || 0 || seed || name). */
export function digestWords(seed, name) {
  const digest = new DataView(sha256(keyInput(seed, name, spec('philox-v2').domain)).buffer);
  return Uint32Array.from({ length: 8 }, (_, i) => digest.getUint32(4 * i, true));
}

/** A non-negative integer (a number below 2^53, or a BigInt) as its [low, high] 32-bit words (high below 2^32). */
export function limbs(value) {
  if (typeof value === 'bigint') return [Number(value & 0xffffffffn), Number((value >> 32n) & 0xffffffffn)];
  return [value >>> 0, Math.floor(value / TWO32)];
}

// Philox4x32-10 under the vectors file's constants, read once per call site rather than once per block.
function kernel() {
  const { multipliers, keyIncrements, rounds } = spec('philox-v2').philox;
  const [m0, m1] = multipliers;
  const [w0, w1] = keyIncrements;
  return (k0, k1, c0, c1, c2, c3, out, at) => {
    for (let round = 0; round < rounds; round++) {
      if (round > 0) {
        k0 = (k0 + w0) >>> 0;
        k1 = (k1 + w1) >>> 0;
      }
      const lo0 = Math.imul(m0, c0) >>> 0;
      const hi0 = mulHigh(m0, c0, lo0);
      const lo1 = Math.imul(m1, c2) >>> 0;
      const hi1 = mulHigh(m1, c2, lo1);
      c0 = (hi1 ^ c1 ^ k0) >>> 0;
      c1 = lo1;
      c2 = (hi0 ^ c3 ^ k1) >>> 0;
      c3 = lo0;
    }
    out[at] = c0;
    out[at + 1] = c1;
    out[at + 2] = c2;
    out[at + 3] = c3;
    return out;
  };
}

/** One Philox4x32-10 block of the counter (c0, c1, c2, c3) under the key (k0, k1), into out[at .. at + 4). */
export const philox4x32 = (k0, k1, c0, c1, c2, c3, out, at = 0) => kernel()(k0, k1, c0, c1, c2, c3, out, at);

/**
 * `count` consecutive blocks of stream `purpose` (0 values, 1 the sparse mask) from block `first` (a number, or a
 * BigInt at 2^53 and above; below 2^62), into out[0 .. 4 * count): words w[4 * first ..].
 */
export function streamWords(digest, purpose, first, count, out) {
  let [low, high] = limbs(first);
  const d0 = digest[0];
  const d1 = digest[1];
  const d2 = digest[2];
  const d3 = digest[3];
  const tag = purpose * HIGH_BIT;
  const block = kernel();
  for (let b = 0; b < count; b++) {
    block(d0, d1, low, high + tag, d2, d3, out, 4 * b);
    low += 1;
    if (low === TWO32) {
      low = 0;
      high += 1;
    }
  }
  return out;
}

/** Block `n` of element `element`'s retry stream (element a number or a BigInt below 2^63), into out[0 .. 4). */
export function retryBlock(digest, element, n, out) {
  const [low, high] = limbs(element);
  return philox4x32(digest[4], digest[5], low, high, n >>> 0, digest[6], out);
}
