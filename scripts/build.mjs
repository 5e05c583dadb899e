#!/usr/bin/env node
// Compile src/ to dist/: what the package exports and what an installed
// `celeriac` runs, so workers and their children need no TypeScript loader.
//
// One build, in CommonJS, plus a thin ES-module entry over it. An app that
// does `require('celeriac')`, one that does `import … from 'celeriac'`, and
// the CLI all load the same files from Node's one require cache, so there is
// exactly one copy of every stateful module (the task context behind
// currentTask(), error classes, registries) whatever the entry — the "dual
// package hazard" cannot happen, and no require(esm) is needed (Node ≥ 20.10).
//
// Steps: tsc type-checks and emits ES modules and declarations to a scratch
// directory; esbuild converts each file to CommonJS (no bundling: one file
// per module, so paths relative to a module — Lua scripts, the prefork
// child's entry — stay valid); `import.meta.url` becomes the file's URL, and
// dynamic `import()` of user modules stays a real import(), so ESM task
// modules load from the CommonJS build. `--out <dir>` builds elsewhere
// (tests of the compiled package).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const outFlag = process.argv.indexOf('--out');
const dist = outFlag > 0 ? resolve(process.argv[outFlag + 1]) : join(root, 'dist');
// Inside the repository (whose package.json says "type": "module"), so esbuild
// reads tsc's output as ES modules and converts default imports as Node does.
const scratch = join(root, 'tmp', `build-${process.pid}`);

const walk = (dir, test) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name), test) : test(e.name) ? [join(dir, e.name)] : []));

rmSync(dist, { recursive: true, force: true });
rmSync(scratch, { recursive: true, force: true });
try {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', scratch, '--sourceMap', 'false'], { stdio: 'inherit' });

  const { buildSync } = await import('esbuild');
  const IMPORT_META_SHIM = [
    'var __celeriacImportMetaUrl = require("node:url").pathToFileURL(__filename).href;',
    'var __celeriacImportMetaResolve = (s) => require("node:url").pathToFileURL(require.resolve(s)).href;',
  ].join('\n');
  buildSync({
    entryPoints: walk(scratch, (n) => n.endsWith('.js')),
    outbase: scratch,
    outdir: dist,
    format: 'cjs',
    platform: 'node',
    target: 'node20.10',
    bundle: false,
    logLevel: 'warning',
    banner: { js: IMPORT_META_SHIM },
    define: { 'import.meta.url': '__celeriacImportMetaUrl', 'import.meta.resolve': '__celeriacImportMetaResolve' },
  });
  for (const file of walk(scratch, (n) => n.endsWith('.d.ts'))) {
    const target = join(dist, relative(scratch, file));
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(file, target);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

// dist/ is CommonJS whatever the package's own "type" says.
writeFileSync(join(dist, 'package.json'), '{\n  "type": "commonjs"\n}\n');

// The ES-module entry: named exports read from the one CommonJS instance. The
// names come from esbuild's export annotation (what Node's CommonJS lexer reads
// too), so building needs no loading of the dependencies.
const annotation = /0 && \(module\.exports = \{([^}]*)\}\);/.exec(readFileSync(join(dist, 'index.js'), 'utf8'));
const names = (annotation?.[1] ?? '').split(',').map((n) => n.trim()).filter(Boolean).sort();
if (names.length === 0) throw new Error('build: no export names found in dist/index.js');
writeFileSync(
  join(dist, 'index.mjs'),
  `// ES-module entry of celeriac: re-exports the CommonJS build (one instance of every module).\n` +
    `import celeriac from './index.js';\n\n` +
    names.map((n) => `export const ${n} = celeriac.${n};`).join('\n') +
    `\n`,
);
writeFileSync(join(dist, 'index.d.mts'), `export * from './index.js';\n`);

// ioredis's declarations import 'redis-errors', which ships no types: a
// consumer compiling with strict settings and without skipLibCheck would stop
// at TS7016 inside our public types. Declare the classes ioredis uses.
writeFileSync(
  join(dist, 'vendor-types.d.ts'),
  `// Types for 'redis-errors' (no declarations of its own), reached through ioredis's declarations.
declare module 'redis-errors' {
  export class RedisError extends Error {}
  export class ParserError extends RedisError {
    offset: number;
    buffer: Buffer;
  }
  export class ReplyError extends RedisError {}
  export class AbortError extends RedisError {}
  export class InterruptError extends AbortError {}
}
`,
);
const indexTypes = join(dist, 'index.d.ts');
writeFileSync(indexTypes, `/// <reference path="./vendor-types.d.ts" />\n${readFileSync(indexTypes, 'utf8')}`);

// Files read at run time beside the modules: Lua scripts, the demo's watchdog preload.
let assets = 0;
// The dashboard's UI (src/dashboard/ui: .mjs modules, .css, index.html) is served from dist/dashboard/ui.
for (const path of walk(src, (n) => n.endsWith('.lua') || n.endsWith('.mjs') || n.endsWith('.css') || n.endsWith('.html'))) {
  const target = join(dist, relative(src, path));
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(path, target);
  assets++;
}
if (process.env.npm_lifecycle_event !== 'prepare') process.stdout.write(`built ${relative(root, dist) || dist} (${names.length} exports, ${assets} assets copied)\n`);
