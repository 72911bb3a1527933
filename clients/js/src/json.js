// JSON with integers beyond 2^53 (seeds and fans reach 2^64 - 1): JSON.parse would round them, JSON.stringify
// refuses BigInt. These keep them exact as BigInt, and leave every other value to the built-ins.

const NUMBER_CHARS = new Set(Array.from('0123456789eE.+-', (c) => c.charCodeAt(0)));

/** JSON.parse, except that integer literals outside the safe range come back as BigInt. */
export function parseJson(text) {
  if (!/\d{16}/.test(text)) return JSON.parse(text);
  // A string no JSON text can hold by accident: a NUL (escaped in the text) and a random nonce.
  const nonce = `bigint${Math.random().toString(36).slice(2)}:`;
  const marker = `\u0000${nonce}`;
  let out = '';
  let last = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c) i++; // skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) {
      inString = true;
    } else if (ch === 0x2d || (ch >= 0x30 && ch <= 0x39)) {
      let end = i + 1;
      while (end < text.length && NUMBER_CHARS.has(text.charCodeAt(end))) end++;
      const token = text.slice(i, end);
      if (/^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token))) {
        out += `${text.slice(last, i)}"\\u0000${nonce}${token}"`;
        last = end;
      }
      i = end - 1;
    }
  }
  out += text.slice(last);
  return JSON.parse(out, (key, value) =>
    typeof value === 'string' && value.startsWith(marker) ? BigInt(value.slice(marker.length)) : value,
  );
}

/** JSON.stringify that writes BigInt values as integer literals, and -0 as -0.0 (JSON.stringify writes 0). */
export function stringifyJson(value) {
  const nonce = `literal${Math.random().toString(36).slice(2)}:`;
  const literal = (v) => {
    if (typeof v === 'bigint') return `\u0000${nonce}${v}`;
    return Object.is(v, -0) ? `\u0000${nonce}-0.0` : v;
  };
  const text = JSON.stringify(value, (key, v) => literal(v));
  // JSON.stringify writes the marker's NUL as the six characters \u0000.
  return text.replaceAll(new RegExp(`"\\\\u0000${nonce}(-?[0-9.]+)"`, 'g'), '$1');
}
