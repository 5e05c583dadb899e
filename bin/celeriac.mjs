#!/usr/bin/env node
// An installed package — a tarball install (no src/ shipped) or a `file:`
// dependency on a checkout (run through node_modules/) — runs the compiled
// CLI in dist/, the same files `require('celeriac')` and
// `import 'celeriac'` load, so the task context is one instance. Only the
// repository's own checkout, run directly, runs the TypeScript source
// through tsx (no build step to forget; tests import src/).
import { existsSync, realpathSync } from 'node:fs';
import { sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(import.meta.url);
const viaNodeModules = [process.argv[1] ?? '', here].some((p) => p.split(sep).includes('node_modules'));
const built = existsSync(new URL('../dist/cli/main.js', import.meta.url));
const fromSource = existsSync(new URL('../src/cli/main.ts', import.meta.url)) && (!viaNodeModules || !built);
let main;
if (fromSource) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
} else {
  const { createRequire } = await import('node:module');
  ({ main } = createRequire(realpathSync(here))('../dist/cli/main.js'));
}
process.exitCode = await main(process.argv.slice(2));
