// Section 8 of docs/reproducibility.md (float64 -> float32 -> float16 / bfloat16, each to nearest, ties to even)
// and the decoding of 16-bit floats for readers.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float32 encoding of x rounded to float32. */
export function float32Bits(x) {
  f32[0] = x;
  return u32[0];
}

/** float32 encoding -> float16 encoding, to nearest, ties to even (overflow to infinity, NaN kept quiet). */
export function float32BitsToHalf(b) {
  const sign = (b >>> 16) & 0x8000;
  const exponent = (b >>> 23) & 0xff;
  const mantissa = b & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal (2^-25): rounds to zero
    return sign | roundShift(mantissa | 0x800000, 14 - e);
  }
  return sign | roundShift((e << 23) | mantissa, 13); // a carry out of the mantissa bumps the exponent, as it should
}

function roundShift(value, shift) {
  const kept = value >>> shift;
  const rest = value & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rest > half || (rest === half && (kept & 1) === 1) ? kept + 1 : kept;
}

/** float32 encoding -> bfloat16 encoding (the formula of section 8; no NaN or infinity reaches it). */
export const float32BitsToBfloat16 = (b) => (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;

/** A float16 encoding as a number (exact). */
export function halfToFloat(h) {
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

/** A bfloat16 encoding as a number (exact). */
export function bfloat16ToFloat(h) {
  u32[0] = h << 16;
  return f32[0];
}

/** Uint16Array of float16 or bfloat16 encodings -> Float32Array of their (exact) values. */
export function widen16(raw, dtype) {
  const out = new Float32Array(raw.length);
  if (dtype === 'bfloat16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < raw.length; i++) bits[i] = raw[i] << 16;
  } else {
    for (let i = 0; i < raw.length; i++) out[i] = halfToFloat(raw[i]);
  }
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** A typed array's values as little-endian bytes (a view of it on little-endian platforms, the usual ones). */
export function littleEndianBytes(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  if (LITTLE_ENDIAN) return bytes;
  const swapped = new Uint8Array(bytes.length);
  const width = typed.BYTES_PER_ELEMENT;
  for (let i = 0; i < bytes.length; i++) swapped[i] = bytes[i - (i % width) + width - 1 - (i % width)];
  return swapped;
}

/** The byte arrays one after the other. */
export function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
