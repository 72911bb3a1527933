// Section 4 of docs/reproducibility.md: the elementary functions, built from correctly rounded + - * / and sqrt
// only (the platform's Math.log/exp/sin/cos differ in their last bits between engines). Operation order and
// parenthesisation follow the spec's pseudo-code exactly; JavaScript never fuses a multiply-add.

const float = new Float64Array(1);
const words = new Uint32Array(float.buffer);
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
const HIGH = LITTLE_ENDIAN ? 1 : 0;
const LOW = 1 - HIGH;

/** The high 32 bits of x's encoding (sign included). */
export function highWord(x) {
  float[0] = x;
  return words[HIGH];
}

/** hw(x): the high word without the sign. */
const hw = (x) => highWord(x) & 0x7fffffff;

/** The float64 with encoding high:low. */
export function fromWords(high, low) {
  words[HIGH] = high;
  words[LOW] = low;
  return float[0];
}

const clearLow = (x) => {
  float[0] = x;
  words[LOW] = 0;
  return float[0];
};

/** 2^k for -1022 <= k <= 1023, exact. */
const pow2 = (k) => fromWords((k + 1023) * 0x100000, 0);

function ldexp(y, k) {
  if (k < -1022) return y * pow2(k + 1000) * pow2(-1000);
  if (k > 1023) return y * pow2(1023) * pow2(k - 1023);
  return y * pow2(k);
}

/** rint: halves to even (the spec's rint; Math.round rounds halves up). */
function rint(y) {
  const floor = Math.floor(y);
  const rest = y - floor;
  if (rest > 0.5) return floor + 1;
  if (rest < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function horner(z, c) {
  let p = c[c.length - 1];
  for (let i = c.length - 2; i >= 0; i--) p = c[i] + z * p;
  return p;
}

const cache = new WeakMap();

/** The elementary functions under the constants of `compiled` (spec()), built once per constants object. */
export function mathFor(compiled) {
  let math = cache.get(compiled);
  if (!math) {
    math = build(compiled);
    cache.set(compiled, math);
  }
  return math;
}

function build({ constants: K, polynomials: P, highWords: H }) {
  const TWO_POW_54 = pow2(54);
  const sign0p5 = (x) => (x < 0 ? -0.5 : 0.5); // copysign(0.5, x); x = -0.0 never reaches it (|x| < 2^-28)

  function exp(x) {
    if (x !== x) return NaN;
    if (x > K.EXP_O_THRESHOLD) return Infinity;
    if (x < K.EXP_U_THRESHOLD) return 0;
    const ix = hw(x);
    if (ix < H.EXP_TINY) return 1.0 + x;
    const t = ix > H.EXP_REDUCE ? Math.trunc(x * K.INVLN2 + sign0p5(x)) : 0;
    const hi = x - t * K.LN2_HI;
    const lo = t * K.LN2_LO;
    const r = hi - lo;
    const tt = r * r;
    const c = r - tt * horner(tt, P.EXP_P);
    const y = 1.0 - (lo - (r * c) / (2.0 - c) - hi);
    return ldexp(y, t);
  }

  function log(x) {
    if (x !== x || x < 0) return NaN;
    if (x === 0) return -Infinity;
    if (x === Infinity) return Infinity;
    let high = highWord(x);
    let low = words[LOW];
    let e = high >>> 20;
    if (e === 0) {
      high = highWord(x * TWO_POW_54);
      low = words[LOW];
      e = (high >>> 20) - 54;
    }
    const u = fromWords((high & 0x000fffff) | 0x3ff00000, low);
    let k = e - 1023;
    let f;
    if (u >= K.LOG_HALVE_AT) {
      f = u * 0.5 - 1.0;
      k += 1;
    } else {
      f = u - 1.0;
    }
    const dk = k;
    if (u < K.LOG_SMALL_LO || u >= K.LOG_SMALL_HI) {
      const R = f * f * (0.5 - K.THIRD * f);
      return dk * K.LN2_HI - (R - dk * K.LN2_LO - f);
    }
    const s = f / (2.0 + f);
    const z = s * s;
    const w = z * z;
    const t1 = w * horner(w, P.LG_EVEN);
    const t2 = z * horner(w, P.LG_ODD);
    const R = t2 + t1;
    if (K.LOG_HFSQ_LO <= u && u < K.LOG_HFSQ_HI) {
      const hfsq = 0.5 * f * f;
      return dk * K.LN2_HI - (hfsq - (s * (hfsq + R) + dk * K.LN2_LO) - f);
    }
    return dk * K.LN2_HI - (s * (f - R) - dk * K.LN2_LO - f);
  }

  const [S1, S2, S3, S4, S5, S6] = P.SIN_S;
  const [C1, C2, C3, C4, C5, C6] = P.COS_C;

  function kernelSin(x) {
    const z = x * x;
    const w = z * z;
    const r = S2 + z * (S3 + z * S4) + z * w * (S5 + z * S6);
    const v = z * x;
    return x + v * (S1 + z * r);
  }

  function kernelCos(x) {
    const z = x * x;
    const w = z * z;
    const r = z * (C1 + z * (C2 + z * C3)) + w * w * (C4 + z * (C5 + z * C6));
    const hz = 0.5 * z;
    const g = 1.0 - hz;
    return g + (1.0 - g - hz + z * r);
  }

  const turns = new Float64Array(2);
  /** [sin(2 pi t), cos(2 pi t)] for t in [0, 1), in a reused Float64Array. */
  function sincosTurns(t) {
    const y = t * 4.0;
    const q = rint(y);
    const x = (y - q) * K.PIO2;
    const s = kernelSin(x);
    const c = kernelCos(x);
    switch (q % 4) {
      case 0:
        turns[0] = s;
        turns[1] = c;
        break;
      case 1:
        turns[0] = c;
        turns[1] = 0.0 - s;
        break;
      case 2:
        turns[0] = 0.0 - s;
        turns[1] = 0.0 - c;
        break;
      default:
        turns[0] = 0.0 - c;
        turns[1] = s;
    }
    return turns;
  }

  // erfc_core of section 4.5; its tail exponent (the caller's of 4.6 or 4.7) is built from `tailOf`, scaled by
  // `half` (true for ndtr, whose exponent is halved).
  function erfcCore(v, tailOf, half) {
    if (v !== v) return NaN;
    const hv = highWord(v);
    const neg = hv >>> 31 === 1;
    const ix = hv & 0x7fffffff;
    if (ix >= H.ERFC_FAR) return neg ? 2.0 : 0.0;
    if (ix < H.ERFC_TINY) return 1.0 - v;
    if (ix < H.ERFC_ERF) {
      const z = v * v;
      const y = horner(z, P.ERF_PP) / horner(z, P.ERF_QQ);
      if (neg || ix < H.ERFC_QUARTER) return 1.0 - (v + v * y);
      return 0.5 - (v * y + (v - 0.5));
    }
    if (ix < H.ERFC_ERX) {
      const s = Math.abs(v) - 1.0;
      const pq = horner(s, P.ERF_PA) / horner(s, P.ERF_QA);
      return neg ? 1.0 + (K.ERX + pq) : K.ONE_MINUS_ERX - pq;
    }
    if (neg && ix >= H.ERFC_NEG_SIX) return 2.0;
    const a = Math.abs(v);
    const s = 1.0 / (a * a);
    const ratio =
      ix < H.ERFC_NEAR_TAIL
        ? horner(s, P.ERFC_RA) / horner(s, P.ERFC_SA)
        : horner(s, P.ERFC_RB) / horner(s, P.ERFC_SB);
    const ta = Math.abs(tailOf);
    const tt = clearLow(ta);
    let eHi;
    let eLo;
    if (half) {
      eHi = -tt * tt * 0.5 - 0.5625;
      eLo = (tt - ta) * (tt + ta) * 0.5;
    } else {
      eHi = -tt * tt - 0.5625;
      eLo = (tt - ta) * (tt + ta);
    }
    const r = exp(eHi) * exp(eLo + ratio);
    const qq = r / a;
    return neg ? 2.0 - qq : qq;
  }

  const erfc = (x) => erfcCore(x, x, false);
  const ndtr = (x) => 0.5 * erfcCore(0.0 - x * K.SQRT1_2, x, true);

  function ndtri(p) {
    if (p !== p || p < 0 || p > 1) return NaN;
    if (p === 0) return -Infinity;
    if (p === 1) return Infinity;
    const q = p - 0.5;
    if (Math.abs(q) <= 0.425) {
      const r = 0.180625 - q * q;
      return (q * horner(r, P.AS241_A)) / horner(r, P.AS241_B);
    }
    let r = Math.sqrt(0.0 - log(q < 0 ? p : 1.0 - p));
    let val;
    if (r <= 5.0) {
      r = r - 1.6;
      val = horner(r, P.AS241_C) / horner(r, P.AS241_D);
    } else {
      r = r - 5.0;
      val = horner(r, P.AS241_E) / horner(r, P.AS241_F);
    }
    return q < 0 ? -val : val;
  }

  // Section 9's largest Box-Muller radius, sqrt(-2 ln 2^-53): the smallest u1 is 2^-53.
  const normalRadius = Math.sqrt(-2.0 * log(2 ** -53));
  return { exp, log, sincosTurns, erfc, ndtr, ndtri, kernelSin, kernelCos, normalRadius };
}
