// npm pack: ship the contract's constants and vectors (docs/vectors/philox-v1.json) in the package, next to src/,
// and remove the copy afterwards (`--remove`) so that the repository keeps a single one.
import { copyFileSync, rmSync } from 'node:fs';

const target = new URL('../philox-v1.json', import.meta.url);
if (process.argv.includes('--remove')) rmSync(target, { force: true });
else copyFileSync(new URL('../../../docs/vectors/philox-v1.json', import.meta.url), target);
