// Types of the initserve client (src/index.js).

/** A seed in [0, 2^64 - 1]: a safe integer, a BigInt, or (generate() only) a decimal string. */
export type Seed = number | bigint | string;
export type Dtype = 'float32' | 'float64' | 'float16' | 'bfloat16';
export type Format = 'safetensors' | 'npy' | 'json';

/** A single-tensor request body of POST /init; a scheme's parameters are further fields (e.g. `mode`, `gain`). */
export interface TensorRequest {
  shape: Array<number | bigint>;
  scheme: string;
  seed?: Seed;
  name?: string;
  dtype?: Dtype;
  layout?: 'torch' | 'keras';
  fan_in?: number | bigint;
  fan_out?: number | bigint;
  slice?: Array<[number | bigint, number | bigint]>;
  /** `philox-v1` (the default) or `philox-v2` (docs/philox-v2.md); the service knows more (e.g. `torch-2.13`). */
  rng?: 'philox-v1' | 'philox-v2' | string;
  format?: Format;
  [parameter: string]: unknown;
}

/** A many-tensor ("tensors") or model ("model") request body (docs/models.md). */
export interface ManyRequest {
  seed?: Seed;
  rng?: string;
  tensors?: Record<string, Omit<TensorRequest, 'seed' | 'format'> & Record<string, unknown>>;
  model?: Record<string, unknown>;
  format?: 'safetensors' | 'json' | 'npz';
  [field: string]: unknown;
}

/** Values: float16/bfloat16 as Float32Array (exact), or Uint16Array encodings with `raw`; int64 as BigInt64Array. */
export type TensorData = Float64Array | Float32Array | Uint16Array | BigInt64Array;

export interface Tensor {
  data: TensorData;
  shape: number[];
  dtype: Dtype | 'int64';
  /** The tensor's metadata as the service wrote it (numbers above 2^53 as BigInt). */
  metadata: Record<string, unknown>;
  /** The raw little-endian data bytes, as sent. */
  bytes: Uint8Array;
}

export interface FetchedTensor extends Tensor {
  format: Format;
}

export interface FetchedTensors {
  /** Request-level fields (seed, rng, service, count, numel, framework); a single tensor's own metadata otherwise. */
  metadata: Record<string, unknown>;
  tensors: Record<string, Tensor>;
  format: 'safetensors' | 'json' | 'npz' | 'npy';
}

export interface FetchOptions {
  /** The response format; default: the request's `format`, else safetensors. */
  format?: string;
  /** float16/bfloat16 data as Uint16Array encodings instead of Float32Array values. */
  raw?: boolean;
  headers?: Record<string, string>;
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  signal?: AbortSignal;
  /** A fetch implementation (default: globalThis.fetch). */
  fetch?: typeof fetch;
}

/** POST a single-tensor request to `${baseUrl}/init` and decode the answer. */
export function fetchTensor(baseUrl: string, request: TensorRequest, options?: FetchOptions): Promise<FetchedTensor>;

/** POST a many-tensor, model or single-tensor request and decode every tensor, in the response's order. */
export function fetchTensors(
  baseUrl: string,
  request: ManyRequest | TensorRequest,
  options?: FetchOptions,
): Promise<FetchedTensors>;

/** A non-2xx answer of the service. */
export class InitserveError extends Error {
  status: number;
  /** The service's `detail`: [{loc, msg, type}] (undefined when the body was not the service's JSON). */
  detail: Array<{ loc: Array<string | number>; msg: string; type: string }> | undefined;
}

export interface Generated {
  data: Float64Array | Float32Array | Uint16Array;
  shape: number[];
  dtype: Dtype;
  /** The little-endian data bytes the service sends for the same request. */
  bytes: Uint8Array;
  /** The scheme's distribution (kind and its float64 numbers; for a truncated normal also lo, hi, p_lo, mass). */
  distribution: Record<string, unknown>;
  /** The fans the scheme read (BigInt). */
  fans: { fan_in?: bigint; fan_out?: bigint };
}

/**
 * The tensor of a seeded single-tensor request computed locally, bit for bit with the service (rng philox-v1, the
 * default, or philox-v2). Refuses (RequestError) what the service refuses, a missing seed, another rng, and
 * `orthogonal` (not bit-exact anywhere).
 */
export function generate(request: TensorRequest, options?: { raw?: boolean }): Generated;

/** A request generate() refuses; `loc` names the field. */
export class RequestError extends Error {
  loc: Array<string | number>;
}

/**
 * Give generate() an rng's constants (the parsed philox-v1.json or philox-v2.json, which names its rng) where the
 * module cannot read the packaged files. philox-v2 needs both (its log, ndtr and ndtri are philox-v1's).
 */
export function useSpec(json: unknown): void;

export interface Decoded {
  metadata: Record<string, unknown>;
  tensors: Record<string, Tensor>;
}

/** Decode a response body of the given format (safetensors, npy, npz, json). */
export function decode(bytes: Uint8Array, format: string, options?: { raw?: boolean }): Decoded;
export function decodeSafetensors(bytes: Uint8Array, options?: { raw?: boolean }): Decoded;
export function decodeNpy(
  bytes: Uint8Array,
  options?: { raw?: boolean },
): { data: TensorData; shape: number[]; dtype: string; bytes: Uint8Array };
export function decodeNpz(bytes: Uint8Array, options?: { raw?: boolean }): Decoded;
export function decodeJson(body: Uint8Array | string, options?: { raw?: boolean }): Decoded;

/**
 * The whole response body of POST /init for a seeded single-tensor request, byte for byte as the service of
 * version `service` (e.g. 'initserve 0.1.0': containers name it) writes it; format: safetensors (default), npy, json.
 */
export function encode(
  request: TensorRequest,
  options: { service: string; format?: Format },
): Uint8Array;
