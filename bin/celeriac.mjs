#!/usr/bin/env node
// Runs the TypeScript CLI directly (no build step): tsx compiles on load,
// which also lets `celeriac worker -A ./tasks.ts` import TypeScript modules.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
