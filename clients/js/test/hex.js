// Helpers of the vectors tests: the files write floats as the hex digits of their encoding.

import { createHash } from 'node:crypto';

const view = new DataView(new ArrayBuffer(8));

/** The 16 hex digits of a float64's encoding. */
export const hex64 = (x) => {
  view.setFloat64(0, x);
  return view.getBigUint64(0).toString(16).padStart(16, '0');
};

/** The SHA-256 of bytes, in hex. */
export const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
