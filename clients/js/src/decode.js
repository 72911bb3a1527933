// Readers for the service's containers (docs/reproducibility.md section 10, docs/models.md): safetensors, npy,
// npz and JSON, each giving { data, shape, dtype, metadata } per tensor. float16/bfloat16 become a Float32Array of
// their exact values, or with `raw` the Uint16Array of their encodings; int64 a BigInt64Array.

import { float32Bits, float32BitsToBfloat16, float32BitsToHalf, littleEndianBytes, widen16 } from './dtypes.js';
import { parseJson } from './json.js';

const SAFETENSORS_DTYPES = { F64: 'float64', F32: 'float32', F16: 'float16', BF16: 'bfloat16', I64: 'int64' };
const NPY_DTYPES = { '<f8': 'float64', '<f4': 'float32', '<f2': 'float16', '<i8': 'int64' };
const WIDTH = { float64: 8, float32: 4, float16: 2, bfloat16: 2, int64: 8 };
// safetensors' __metadata__ values are all strings: these keys hold strings, every other one a JSON text.
const STRING_KEYS = new Set([
  'name', 'scheme', 'family', 'dtype', 'layout', 'distribution', 'rng', 'service', 'alias_of', 'framework',
]);

/** A tensor's values from its little-endian data bytes. */
export function fromBytes(bytes, dtype, { raw = false } = {}) {
  const width = WIDTH[dtype];
  if (!width) throw new Error(`unsupported dtype ${dtype}`);
  if (bytes.length % width !== 0) throw new Error(`${bytes.length} bytes is not a whole number of ${dtype} values`);
  const count = bytes.length / width;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let out;
  if (dtype === 'float64') {
    out = new Float64Array(count);
    for (let i = 0; i < count; i++) out[i] = view.getFloat64(8 * i, true);
  } else if (dtype === 'float32') {
    out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
  } else if (dtype === 'int64') {
    out = new BigInt64Array(count);
    for (let i = 0; i < count; i++) out[i] = view.getBigInt64(8 * i, true);
  } else {
    out = new Uint16Array(count);
    for (let i = 0; i < count; i++) out[i] = view.getUint16(2 * i, true);
    if (!raw) out = widen16(out, dtype);
  }
  return out;
}

/**
 * The JSON format's `data` list in the dtype's storage: float16/bfloat16 values (exact float32 numbers) back to
 * their Uint16Array encodings.
 */
export function fromJsonValues(values, dtype) {
  switch (dtype) {
    case 'float64':
      return Float64Array.from(values);
    case 'float32':
      return Float32Array.from(values);
    case 'int64':
      return BigInt64Array.from(values, (v) => BigInt(v));
    case 'float16':
    case 'bfloat16': {
      const encode = dtype === 'float16' ? float32BitsToHalf : float32BitsToBfloat16;
      return Uint16Array.from(values, (v) => encode(float32Bits(v)));
    }
    default:
      throw new Error(`unsupported dtype ${dtype}`);
  }
}

const text = (bytes) => new TextDecoder('utf-8', { fatal: true }).decode(bytes);

function safetensorsMetadata(raw) {
  const metadata = {};
  for (const [key, value] of Object.entries(raw ?? {})) {
    metadata[key] = STRING_KEYS.has(key) ? value : parseJson(value);
  }
  return metadata;
}

/**
 * A safetensors file: { metadata, tensors: { name: { data, shape, dtype, bytes } } } in the header's order of
 * data offsets (the request's order); metadata is __metadata__ with its JSON texts parsed.
 */
export function decodeSafetensors(bytes, options = {}) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 8) throw new Error('not a safetensors file: shorter than its 8-byte header length');
  const length = Number(view.getBigUint64(0, true));
  if (8 + length > bytes.length) throw new Error(`not a safetensors file: header of ${length} bytes overruns it`);
  const header = parseJson(text(bytes.subarray(8, 8 + length)));
  const start = 8 + length;
  const entries = Object.entries(header).filter(([name]) => name !== '__metadata__');
  entries.sort(([, a], [, b]) => a.data_offsets[0] - b.data_offsets[0]);
  const tensors = {};
  for (const [name, entry] of entries) {
    const dtype = SAFETENSORS_DTYPES[entry.dtype];
    if (!dtype) throw new Error(`${name}: unsupported safetensors dtype ${entry.dtype}`);
    const [begin, end] = entry.data_offsets;
    if (start + end > bytes.length) throw new Error(`${name}: data [${begin}, ${end}) overruns the file`);
    const data = bytes.subarray(start + begin, start + end);
    tensors[name] = { data: fromBytes(data, dtype, options), shape: entry.shape.map(Number), dtype, bytes: data };
  }
  return { metadata: safetensorsMetadata(header.__metadata__), tensors };
}

/** An .npy file (version 1, 2 or 3; little-endian C order): { data, shape, dtype, bytes }. */
export function decodeNpy(bytes, options = {}) {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw new Error('not an npy file (no \\x93NUMPY)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const [length, start] = major === 1 ? [view.getUint16(8, true), 10] : [view.getUint32(8, true), 12];
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + length));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const dtype = NPY_DTYPES[descr];
  if (!dtype) throw new Error(`npy: unsupported descr ${descr}`);
  if (!/'fortran_order':\s*False/.test(header)) throw new Error('npy: Fortran order is not supported');
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (shapeText === undefined) throw new Error('npy: no shape in the header');
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const data = bytes.subarray(start + length);
  return { data: fromBytes(data, dtype, options), shape, dtype, bytes: data };
}

/**
 * An npz file as the service writes it (an uncompressed ZIP of name.npy members, each member's comment its
 * metadata, the archive comment the request-level fields): { metadata, tensors }.
 */
export function decodeNpz(bytes, options = {}) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let end = bytes.length - 22;
  while (end >= 0 && view.getUint32(end, true) !== 0x06054b50) end--;
  if (end < 0) throw new Error('not a ZIP file (no end of central directory)');
  const count = view.getUint16(end + 10, true);
  const commentLength = view.getUint16(end + 20, true);
  const utf8 = new TextDecoder();
  const archiveComment = utf8.decode(bytes.subarray(end + 22, end + 22 + commentLength));
  let at = view.getUint32(end + 16, true);
  const tensors = {};
  for (let i = 0; i < count; i++) {
    if (view.getUint32(at, true) !== 0x02014b50) throw new Error('ZIP: broken central directory');
    const method = view.getUint16(at + 10, true);
    const size = view.getUint32(at + 20, true);
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const memberCommentLength = view.getUint16(at + 32, true);
    const local = view.getUint32(at + 42, true);
    const memberName = utf8.decode(bytes.subarray(at + 46, at + 46 + nameLength));
    const comment = utf8.decode(bytes.subarray(at + 46 + nameLength + extraLength,
      at + 46 + nameLength + extraLength + memberCommentLength));
    if (method !== 0) throw new Error(`ZIP member ${memberName}: compressed (method ${method}); only stored is read`);
    const dataStart = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    const name = memberName.endsWith('.npy') ? memberName.slice(0, -4) : memberName;
    tensors[name] = decodeNpy(bytes.subarray(dataStart, dataStart + size), options);
    if (comment) tensors[name].metadata = parseJson(comment);
    at += 46 + nameLength + extraLength + memberCommentLength;
  }
  return { metadata: archiveComment ? parseJson(archiveComment) : {}, tensors };
}

function jsonTensor(entry, options) {
  const { data, ...metadata } = entry;
  const dtype = metadata.dtype;
  const stored = fromJsonValues(data, dtype);
  const values = stored instanceof Uint16Array && !options.raw ? widen16(stored, dtype) : stored;
  return { data: values, shape: metadata.shape.map(Number), dtype, metadata, bytes: littleEndianBytes(stored) };
}

/**
 * The JSON format: one tensor ({...metadata, data}) or many ({...request fields, tensors: {name: {..., data}}}),
 * as { metadata, tensors }; a single tensor is keyed by its name.
 */
export function decodeJson(body, options = {}) {
  const parsed = typeof body === 'string' ? parseJson(body) : parseJson(text(body));
  if (parsed.tensors && !Object.hasOwn(parsed, 'data')) {
    const { tensors, ...metadata } = parsed;
    return {
      metadata,
      tensors: Object.fromEntries(Object.entries(tensors).map(([name, entry]) => [name, jsonTensor(entry, options)])),
    };
  }
  const tensor = jsonTensor(parsed, options);
  return { metadata: tensor.metadata, tensors: { [parsed.name]: tensor } };
}

const MEDIA_TYPES = {
  'application/x-safetensors': 'safetensors',
  'application/x-npy': 'npy',
  'application/json': 'json',
  'application/zip': 'npz',
  'application/x-npz': 'npz',
};

/** The format named by a Content-Type header (parameters ignored), or undefined. */
export const formatOf = (contentType) => MEDIA_TYPES[(contentType ?? '').split(';')[0].trim().toLowerCase()];

/**
 * Any response body of POST /init as { metadata, tensors } (metadata: the single tensor's, or the request-level
 * fields of a many-tensor body). `format`: safetensors, npy, npz or json.
 */
export function decode(bytes, format, options = {}) {
  switch (format) {
    case 'safetensors': {
      const decoded = decodeSafetensors(bytes, options);
      const names = Object.keys(decoded.tensors);
      // One tensor: its metadata is the file's; many: the file's is request-level and `tensors` maps the rest.
      if (decoded.metadata.tensors && typeof decoded.metadata.tensors === 'object') {
        for (const name of names) decoded.tensors[name].metadata = decoded.metadata.tensors[name];
        const { tensors, ...requestLevel } = decoded.metadata;
        return { metadata: requestLevel, tensors: decoded.tensors };
      }
      if (names.length === 1) decoded.tensors[names[0]].metadata = decoded.metadata;
      return decoded;
    }
    case 'npy': {
      const tensor = decodeNpy(bytes, options);
      return { metadata: {}, tensors: { tensor } };
    }
    case 'npz':
      return decodeNpz(bytes, options);
    case 'json':
      return decodeJson(bytes, options);
    default:
      throw new Error(`unknown format ${format}`);
  }
}
