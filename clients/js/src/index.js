// initserve: reproducible neural-network weights, fetched from the service or computed locally (rngs philox-v1
// and philox-v2).

export { fetchTensor, fetchTensors, InitserveError } from './client.js';
export { decode, decodeJson, decodeNpy, decodeNpz, decodeSafetensors } from './decode.js';
export { encode } from './encode.js';
export { generate, RequestError } from './generate.js';
export { useSpec } from './spec.js';
