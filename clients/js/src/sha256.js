// SHA-256 (FIPS 180-4), synchronous so that generate() needs no await: WebCrypto's digest is async only.

function firstPrimes(count) {
  const primes = [];
  for (let n = 2; primes.length < count; n += 1) {
    if (primes.every((p) => n % p !== 0)) primes.push(n);
  }
  return primes;
}

// The standard's words are the first 32 fractional bits of the square (H) and cube (K) roots of the first primes:
// floor(root(p * 2^(32 * degree))) mod 2^32, computed exactly in integers (a float estimate, then corrected).
function rootBits(p, degree) {
  const target = BigInt(p) << BigInt(32 * degree);
  let n = BigInt(Math.floor(p ** (1 / degree) * 2 ** 32));
  while (n ** BigInt(degree) > target) n -= 1n;
  while ((n + 1n) ** BigInt(degree) <= target) n += 1n;
  return Number(n & 0xffffffffn);
}

const PRIMES = firstPrimes(64);
const K = Uint32Array.from(PRIMES, (p) => rootBits(p, 3));
const H0 = Uint32Array.from(PRIMES.slice(0, 8), (p) => rootBits(p, 2));

const rotr = (x, n) => (x >>> n) | (x << (32 - n));

/** The 32-byte SHA-256 digest of `bytes` (a Uint8Array). */
export function sha256(bytes) {
  const bitLength = bytes.length * 8;
  const padded = new Uint8Array((((bytes.length + 8) >> 6) + 1) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLength / 2 ** 32));
  view.setUint32(padded.length - 4, bitLength >>> 0);

  const h = H0.slice();
  const w = new Uint32Array(64);
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let t = 0; t < 16; t++) w[t] = view.getUint32(offset + 4 * t);
    for (let t = 16; t < 64; t++) {
      const s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3);
      const s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let t = 0; t < 64; t++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }
  const digest = new Uint8Array(32);
  const out = new DataView(digest.buffer);
  for (let i = 0; i < 8; i++) out.setUint32(4 * i, h[i]);
  return digest;
}
