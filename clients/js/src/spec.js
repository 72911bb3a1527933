// The philox-v1 contract's constants come from its machine-readable companion (docs/vectors/philox-v1.json, shipped
// in the package as philox-v1.json) and are never copied into code: one table serves the service and every client.

const PACKAGED = new URL('../philox-v1.json', import.meta.url);
// A checkout of the repository has no packaged copy (npm pack makes it): read the one the spec ships.
const IN_REPOSITORY = new URL('../../../docs/vectors/philox-v1.json', import.meta.url);

let current = null;
let loadError = null;

async function readText(url) {
  if (typeof process !== 'undefined' && process.versions && process.versions.node) {
    const fs = await import(/* webpackIgnore: true */ /* @vite-ignore */ 'node:fs');
    return fs.readFileSync(url, 'utf8');
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.text();
}

const bitsBuffer = new DataView(new ArrayBuffer(8));

/** The float64 whose encoding is the 16 hex digits `hex`. */
export function hexToFloat(hex) {
  bitsBuffer.setUint32(0, parseInt(hex.slice(0, 8), 16));
  bitsBuffer.setUint32(4, parseInt(hex.slice(8, 16), 16));
  return bitsBuffer.getFloat64(0);
}

/** 16 hex digits as [high 32 bits, low 32 bits], both unsigned. */
export function hexToWords(hex) {
  const padded = hex.padStart(16, '0');
  return [parseInt(padded.slice(0, 8), 16) >>> 0, parseInt(padded.slice(8, 16), 16) >>> 0];
}

function compile(json) {
  if (!json || json.rng !== 'philox-v1' || !json.constants) {
    throw new Error('not the philox-v1 vectors file (docs/vectors/philox-v1.json)');
  }
  const c = json.constants;
  const constants = {};
  for (const [name, entry] of Object.entries(c.float64)) constants[name] = hexToFloat(entry.bits);
  const polynomials = {};
  for (const [name, coefficients] of Object.entries(c.polynomials)) {
    polynomials[name] = Float64Array.from(coefficients, (entry) => hexToFloat(entry.bits));
  }
  const highWords = {};
  for (const [name, hex] of Object.entries(c.high_word_thresholds)) highWords[name] = parseInt(hex, 16);
  const domain = Uint8Array.from(c.key_domain_hex.match(/../g), (byte) => parseInt(byte, 16));
  const philox = {
    multipliers: c.philox4x64_10.multipliers.map(hexToWords),
    keyIncrements: c.philox4x64_10.key_increments.map(hexToWords),
    rounds: c.philox4x64_10.rounds,
  };
  return { json, constants, polynomials, highWords, domain, philox, schemes: json.schemes };
}

/**
 * Use `json` (the parsed docs/vectors/philox-v1.json, e.g. `import spec from 'initserve/philox-v1.json'` in a
 * bundler) as the contract's constants: for environments where this module cannot read the file next to it.
 */
export function useSpec(json) {
  current = compile(json);
  loadError = null;
  return current;
}

/** The compiled constants; throws with the reason when they could not be loaded. */
export function spec() {
  if (current) return current;
  throw new Error(
    `initserve: the philox-v1 constants (philox-v1.json) could not be loaded (${loadError}); ` +
      'pass the parsed file to useSpec(json)',
  );
}

async function load() {
  const reasons = [];
  for (const url of [PACKAGED, IN_REPOSITORY]) {
    try {
      return useSpec(JSON.parse(await readText(url)));
    } catch (error) {
      reasons.push(`${url.href}: ${error.message}`);
    }
  }
  loadError = reasons.join('; ');
  return null;
}

await load();
