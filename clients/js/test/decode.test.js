// The readers on bodies built here by hand (no server): every container, every dtype, the 16-bit conversions at
// their edges, and errors through an injected fetch.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decode, decodeNpy, decodeSafetensors, fetchTensor, fetchTensors, InitserveError } from '../src/index.js';
import {
  bfloat16ToFloat,
  concatBytes as concat,
  float32Bits,
  float32BitsToBfloat16,
  float32BitsToHalf,
  halfToFloat,
} from '../src/dtypes.js';

const encoder = new TextEncoder();
const bytesOf = (typed) => new Uint8Array(typed.buffer.slice(0));

function safetensors(header, data) {
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - ((8 + text.length) % 8)) % 8);
  const length = new Uint8Array(8);
  new DataView(length.buffer).setBigUint64(0, BigInt(encoder.encode(text).length), true);
  return concat(length, encoder.encode(text), data);
}

function npy(descr, shape, data) {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const preamble = Uint8Array.of(0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8);
  return concat(preamble, encoder.encode(header), data);
}

test('float16 and bfloat16: rounding from float32 at the edges, and exact decoding', () => {
  const cases = [
    [1.0, 0x3c00],
    [-0.0, 0x8000],
    [65504, 0x7bff],
    [65520, 0x7c00], // the first float32 that rounds past float16's largest
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // half of it: ties to even, down
    [3 * 2 ** -25, 0x0002], // 1.5 subnormal units: ties to even, up
    [Infinity, 0x7c00],
    [1 + 2 ** -11, 0x3c00], // a tie between 1 and the next float16: to even
    [1 + 3 * 2 ** -11, 0x3c02],
  ];
  for (const [value, half] of cases) assert.equal(float32BitsToHalf(float32Bits(value)), half, String(value));
  assert.equal(float32BitsToHalf(float32Bits(NaN)) & 0x7e00, 0x7e00);
  for (const half of [0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0x8001, 0xfbff]) {
    assert.equal(float32BitsToHalf(float32Bits(halfToFloat(half))), half);
  }
  assert.equal(float32BitsToBfloat16(float32Bits(1 + 2 ** -8)), 0x3f80); // a tie: to even
  assert.equal(float32BitsToBfloat16(float32Bits(1 + 3 * 2 ** -8)), 0x3f82);
  assert.equal(bfloat16ToFloat(0xc049), -3.140625);
});

test('safetensors: every dtype, metadata parsed, tensors in offset order, raw 16-bit encodings', () => {
  const f64 = Float64Array.of(0.1, -2.5);
  const f32 = Float32Array.of(1.5, -0.0, 3.25);
  const f16 = Uint16Array.of(0x3c00, 0xc000); // 1, -2
  const bf16 = Uint16Array.of(0x3f80, 0xc049); // 1, -3.140625
  const i64 = BigInt64Array.of(-(2n ** 63n));
  const parts = [f64, f32, f16, bf16, i64].map(bytesOf);
  const offsets = [];
  let at = 0;
  for (const part of parts) {
    offsets.push([at, at + part.length]);
    at += part.length;
  }
  const header = {
    __metadata__: { name: '123', seed: '18446744073709551615', shape: '[2]', params: '{"mean":0.0}', rng: 'philox-v1' },
    // written out of order on purpose: the reader orders by data offset
    i: { dtype: 'I64', shape: [], data_offsets: offsets[4] },
    d: { dtype: 'F64', shape: [2], data_offsets: offsets[0] },
    f: { dtype: 'F32', shape: [3, 1], data_offsets: offsets[1] },
    h: { dtype: 'F16', shape: [2], data_offsets: offsets[2] },
    b: { dtype: 'BF16', shape: [1, 2], data_offsets: offsets[3] },
  };
  const body = safetensors(header, concat(...parts));
  const decoded = decodeSafetensors(body);
  assert.deepEqual(Object.keys(decoded.tensors), ['d', 'f', 'h', 'b', 'i']);
  assert.deepEqual(decoded.metadata, {
    name: '123', // a string key stays a string even when it reads as JSON
    seed: 18446744073709551615n,
    shape: [2],
    params: { mean: 0 },
    rng: 'philox-v1',
  });
  const t = decoded.tensors;
  assert.deepEqual([t.d.data, t.d.shape, t.d.dtype], [f64, [2], 'float64']);
  assert.deepEqual([t.f.data, t.f.shape], [f32, [3, 1]]);
  assert.ok(Object.is(t.f.data[1], -0));
  assert.deepEqual(t.h.data, Float32Array.of(1, -2));
  assert.deepEqual(t.b.data, Float32Array.of(1, -3.140625));
  assert.deepEqual([t.i.data, t.i.shape, t.i.dtype], [i64, [], 'int64']);
  const raw = decodeSafetensors(body, { raw: true }).tensors;
  assert.deepEqual([raw.h.data, raw.b.data], [f16, bf16]);
  assert.deepEqual(raw.b.bytes, bytesOf(bf16));
  assert.throws(() => decodeSafetensors(body.subarray(0, body.length - 1)), /overruns/);
});

test('npy: 0-D, 1-D and 2-D, each descr; Fortran order and other dtypes refused', () => {
  const scalar = decodeNpy(npy('<f8', '()', bytesOf(Float64Array.of(-1.25))));
  assert.deepEqual([scalar.data, scalar.shape, scalar.dtype], [Float64Array.of(-1.25), [], 'float64']);
  const vector = decodeNpy(npy('<f2', '(2,)', bytesOf(Uint16Array.of(0x3c00, 0x0001))));
  assert.deepEqual([vector.data, vector.shape], [Float32Array.of(1, 2 ** -24), [2]]);
  const matrix = decodeNpy(npy('<f4', '(2, 3)', bytesOf(Float32Array.of(1, 2, 3, 4, 5, 6))));
  assert.deepEqual([matrix.shape, matrix.dtype, matrix.data[5]], [[2, 3], 'float32', 6]);
  assert.deepEqual(decodeNpy(npy('<i8', '(1,)', bytesOf(BigInt64Array.of(7n)))).data, BigInt64Array.of(7n));
  assert.throws(() => decodeNpy(npy('>f4', '(1,)', new Uint8Array(4))), /unsupported descr >f4/);
  const fortran = npy('<f4', '(1,)', new Uint8Array(4));
  fortran.set(encoder.encode('True '), fortran.indexOf(0x46)); // 'False' -> 'True '
  assert.throws(() => decodeNpy(fortran), /Fortran/);
  assert.throws(() => decodeNpy(encoder.encode('not npy at all')), /not an npy file/);
});

test('JSON: one tensor and many; integers above 2^53 exact; 16-bit values back to their encodings', () => {
  const one = decode(
    encoder.encode('{"name":"w","seed":18446744073709551615,"shape":[2],"dtype":"bfloat16","data":[1.0,-3.140625]}'),
    'json',
    { raw: true },
  );
  assert.equal(one.metadata.seed, 18446744073709551615n);
  assert.deepEqual(one.tensors.w.data, Uint16Array.of(0x3f80, 0xc049));
  assert.deepEqual(one.tensors.w.bytes, bytesOf(Uint16Array.of(0x3f80, 0xc049)));
  const many = decode(
    encoder.encode(
      '{"seed":7,"count":2,"tensors":{"a":{"shape":[],"dtype":"int64","data":[9223372036854775807]},' +
        '"b":{"shape":[1],"dtype":"float16","data":[6.1035156e-05]}}}',
    ),
    'json',
  );
  assert.deepEqual(many.metadata, { seed: 7, count: 2 });
  assert.deepEqual(many.tensors.a.data, BigInt64Array.of(2n ** 63n - 1n));
  assert.deepEqual(many.tensors.b.data, Float32Array.of(2 ** -14));
});

function fakeFetch(status, contentType, body, seen = []) {
  return async (url, init) => {
    seen.push({ url, init });
    return new Response(body, { status, headers: { 'content-type': contentType, 'x-initserve-seed': '5' } });
  };
}

test('fetchTensor: the request sent (BigInt seed, -0.0, format, key) and the npy answer', async () => {
  const seen = [];
  const body = npy('<f4', '(2,)', bytesOf(Float32Array.of(0.5, 1)));
  const request = { shape: [2], scheme: 'constant', val: -0, seed: 2n ** 64n - 1n };
  const fetched = await fetchTensor('http://127.0.0.1:1/', request, {
    format: 'npy',
    apiKey: 'k',
    fetch: fakeFetch(200, 'application/x-npy', body, seen),
  });
  assert.equal(seen[0].url, 'http://127.0.0.1:1/init');
  const sent = '{"shape":[2],"scheme":"constant","val":-0.0,"seed":18446744073709551615,"format":"npy"}';
  assert.equal(seen[0].init.body, sent);
  assert.equal(seen[0].init.headers.authorization, 'Bearer k');
  assert.deepEqual([fetched.data, fetched.shape, fetched.format], [Float32Array.of(0.5, 1), [2], 'npy']);
  assert.deepEqual(fetched.metadata, { seed: 5, rng: 'philox-v1' });
  await assert.rejects(fetchTensor('http://x', { tensors: {} }), /use fetchTensors/);
});

test('errors: InitserveError with the status and the service detail, or the body when it is not JSON', async () => {
  const detail = [{ loc: ['body', 'shape'], msg: 'shape: too many dimensions', type: 'value_error' }];
  const refused = fetchTensors('http://x', { seed: 1, tensors: {} }, {
    fetch: fakeFetch(422, 'application/json', JSON.stringify({ detail })),
  });
  await assert.rejects(refused, (error) => {
    assert.ok(error instanceof InitserveError);
    assert.equal(error.status, 422);
    assert.deepEqual(error.detail, detail);
    assert.match(error.message, /HTTP 422: body\.shape: shape: too many dimensions/);
    return true;
  });
  const gateway = fetchTensor('http://x', { shape: [1], scheme: 'ones', seed: 1 }, {
    fetch: fakeFetch(502, 'text/html', '<h1>Bad Gateway</h1>'),
  });
  await assert.rejects(gateway, (error) => error.status === 502 && /Bad Gateway/.test(error.message));
});
