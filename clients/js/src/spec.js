// Each rng's constants come from its contract's machine-readable companion (docs/vectors/philox-v1.json and
// philox-v2.json, shipped in the package next to src/) and are never copied into code: one table serves the service
// and every client. philox-v2 also reads philox-v1's (its log, ndtr and ndtri are philox-v1's).

const RNGS = ['philox-v1', 'philox-v2'];
// A checkout of the repository has no packaged copy (npm pack makes it): read the one the spec ships.
const locations = (rng) => [
  new URL(`../${rng}.json`, import.meta.url),
  new URL(`../../../docs/vectors/${rng}.json`, import.meta.url),
];

const current = {};
const loadError = {};

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

function compileV1(json) {
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
  // namespaced: the service's framework names (jax.he_normal, ...), whose bits the spec leaves to the service
  const namespaced = json.namespaced_schemes ?? {};
  return { json, constants, polynomials, highWords, domain, philox, schemes: json.schemes, namespaced };
}

const words32 = (list) => Uint32Array.from(list, (hex) => parseInt(hex, 16) >>> 0);

function compileV2(json) {
  const c = json.constants;
  const { X, F, layers } = c.ziggurat;
  if (X.length !== layers + 1 || F.length !== layers + 1) throw new Error('ziggurat tables of the wrong length');
  return {
    json,
    domain: Uint8Array.from(c.key_domain_hex.match(/../g), (byte) => parseInt(byte, 16)),
    philox: {
      multipliers: words32(c.philox4x32_10.multipliers),
      keyIncrements: words32(c.philox4x32_10.key_increments),
      rounds: c.philox4x32_10.rounds,
    },
    ziggurat: { layers, X: Float64Array.from(X, hexToFloat), F: Float64Array.from(F, hexToFloat) },
  };
}

const COMPILERS = { 'philox-v1': compileV1, 'philox-v2': compileV2 };

function compile(json) {
  const compiler = json && json.constants && COMPILERS[json.rng];
  if (!compiler) throw new Error(`not a vectors file of ${RNGS.join(' or ')} (docs/vectors/<rng>.json)`);
  try {
    return compiler(json);
  } catch (error) {
    throw new Error(`not the ${json.rng} vectors file (docs/vectors/${json.rng}.json): ${error.message}`);
  }
}

/**
 * Use `json` (a parsed docs/vectors/philox-v1.json or philox-v2.json, e.g. `import spec from
 * 'initserve/philox-v1.json'` in a bundler) as that rng's constants: for environments where this module cannot read
 * the files next to it. The file's `rng` says which it is.
 */
export function useSpec(json) {
  const compiled = compile(json);
  current[json.rng] = compiled;
  delete loadError[json.rng];
  return compiled;
}

/** The compiled constants of `rng` (default philox-v1); throws with the reason when they could not be loaded. */
export function spec(rng = 'philox-v1') {
  if (current[rng]) return current[rng];
  throw new Error(
    `initserve: the ${rng} constants (${rng}.json) could not be loaded (${loadError[rng]}); ` +
      'pass the parsed file to useSpec(json)',
  );
}

async function load(rng) {
  const reasons = [];
  for (const url of locations(rng)) {
    try {
      const json = JSON.parse(await readText(url));
      if (json.rng !== rng) throw new Error(`holds ${json.rng}, not ${rng}`);
      return useSpec(json);
    } catch (error) {
      reasons.push(`${url.href}: ${error.message}`);
    }
  }
  loadError[rng] = reasons.join('; ');
  return null;
}

for (const rng of RNGS) await load(rng);
