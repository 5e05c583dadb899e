#!/usr/bin/env node
// An installed package (no src/ beside dist/) runs the compiled CLI: no
// TypeScript loader in this process or in its worker children. A checkout
// runs the TypeScript source through tsx, so there is no build step to
// forget and no second copy of Celeriac when an app imports from src/.
import { existsSync } from 'node:fs';

const fromSource = existsSync(new URL('../src/cli/main.ts', import.meta.url)) || !existsSync(new URL('../dist/cli/main.js', import.meta.url));
let main;
if (fromSource) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
} else {
  ({ main } = await import('../dist/cli/main.js'));
}
process.exitCode = await main(process.argv.slice(2));
