// npm pack: ship the contracts' constants and vectors (docs/vectors/philox-v1.json and philox-v2.json) in the
// package, next to src/, and remove the copies afterwards (`--remove`) so that the repository keeps a single one.
import { copyFileSync, rmSync } from 'node:fs';

for (const file of ['philox-v1.json', 'philox-v2.json']) {
  const target = new URL(`../${file}`, import.meta.url);
  if (process.argv.includes('--remove')) rmSync(target, { force: true });
  else copyFileSync(new URL(`../../../docs/vectors/${file}`, import.meta.url), target);
}
