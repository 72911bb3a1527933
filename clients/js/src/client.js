// fetchTensor / fetchTensors: POST /init and decode the answer. Only the platform's fetch (Node >= 18, browsers,
// edge runtimes); no dependencies.

import { decode, formatOf } from './decode.js';
import { parseJson, stringifyJson } from './json.js';

/** A non-2xx answer: `status`, and the service's JSON `detail` ([{loc, msg, type}]) when it sent one. */
export class InitserveError extends Error {
  constructor(status, detail, body) {
    const messages = Array.isArray(detail)
      ? detail.map((d) => (d.loc?.length ? `${d.loc.join('.')}: ${d.msg}` : d.msg))
      : [typeof detail === 'string' ? detail : body || `HTTP ${status}`];
    super(`initserve: HTTP ${status}: ${messages.join('; ')}`);
    this.name = 'InitserveError';
    this.status = status;
    this.detail = detail;
  }
}

const integerHeader = (value) => (value === null ? undefined : parseJson(value));

async function post(baseUrl, request, options) {
  if (request === null || typeof request !== 'object') throw new TypeError('request must be an object');
  const body = { ...request };
  if (options.format !== undefined) body.format = options.format;
  const headers = { 'content-type': 'application/json', ...options.headers };
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const url = `${String(baseUrl).replace(/\/+$/, '')}/init`;
  const response = await fetchImpl(url, { method: 'POST', headers, body: stringifyJson(body), signal: options.signal });
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (!response.ok) {
    const textBody = new TextDecoder().decode(bytes);
    let detail;
    try {
      detail = JSON.parse(textBody).detail;
    } catch {
      detail = undefined;
    }
    throw new InitserveError(response.status, detail, textBody.slice(0, 500));
  }
  const format = formatOf(response.headers.get('content-type'));
  if (!format) throw new Error(`initserve: unexpected content type ${response.headers.get('content-type')}`);
  const decoded = decode(bytes, format, options);
  decoded.format = format;
  decoded.seed = integerHeader(response.headers.get('x-initserve-seed'));
  return decoded;
}

/**
 * POST `request` (a single-tensor body: shape, scheme, seed, ...) to `${baseUrl}/init` and decode the answer:
 * { data, shape, dtype, metadata, format, bytes }. options: format (safetensors, npy, json; default the request's
 * or safetensors), raw (float16/bfloat16 as Uint16Array encodings), headers, apiKey, signal, fetch.
 */
export async function fetchTensor(baseUrl, request, options = {}) {
  if (request && (request.tensors !== undefined || request.model !== undefined)) {
    throw new TypeError('fetchTensor takes a single-tensor request: use fetchTensors for "tensors" and "model"');
  }
  const decoded = await post(baseUrl, request, options);
  const [tensor] = Object.values(decoded.tensors);
  // npy carries no metadata: the response headers give the seed and the rng.
  const metadata = tensor.metadata ?? { seed: decoded.seed, rng: request.rng ?? 'philox-v1' };
  return { data: tensor.data, shape: tensor.shape, dtype: tensor.dtype, metadata, format: decoded.format,
    bytes: tensor.bytes };
}

/**
 * POST a many-tensor ("tensors") or model ("model") request, or a single-tensor one, and decode every tensor:
 * { metadata (request-level), tensors: { name: { data, shape, dtype, metadata } }, format }, in the response's
 * order. Formats: safetensors (default), json, npz. Options as fetchTensor's.
 */
export async function fetchTensors(baseUrl, request, options = {}) {
  const decoded = await post(baseUrl, request, options);
  return { metadata: decoded.metadata, tensors: decoded.tensors, format: decoded.format };
}
