// The real server (`initserve serve` from the repository's .venv, or INITSERVE_BIN) on a free loopback port, for
// the live tests: the same command tests/server.py runs for the Python suite.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const DEFAULT_BIN = fileURLToPath(new URL('../../../.venv/bin/initserve', import.meta.url));

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Start the server; resolves to { url, stop } once /readyz answers 200 (a cold numba cache takes seconds). */
export async function startServer({ readyTimeoutMs = 120_000 } = {}) {
  const bin = process.env.INITSERVE_BIN ?? DEFAULT_BIN;
  if (!existsSync(bin)) {
    throw new Error(`no initserve at ${bin}: create the repository's .venv (README) or set INITSERVE_BIN`);
  }
  const port = await freePort();
  const child = spawn(bin, ['serve'], {
    env: { ...process.env, INITSERVE_HOST: '127.0.0.1', INITSERVE_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk) => {
    output = (output + chunk).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const stop = () =>
    new Promise((resolve) => {
      if (exited) return resolve();
      const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    try {
      if ((await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) })).status === 200) break;
    } catch {
      // not listening yet
    }
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`server did not start: ${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { url, stop };
}
