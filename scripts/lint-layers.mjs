#!/usr/bin/env node
// Checks src/ against the layering rules of .dependency-cruiser.cjs (docs/architecture.md draws them).
//
//   npm run lint:layers                 violations, one a line; exit 1 when there is one
//   node scripts/lint-layers.mjs --json the same as JSON (test/unit/architecture/layers.test.ts reads it)
//   --config <file>                     another rules file (default .dependency-cruiser.cjs); run from the tree's root
//
// dependency-cruiser does the work, with one refinement it cannot express with the swc parser: a cycle
// that only exists through an `import type` (or `export type … from`) is not reported, because that
// edge is erased at run time (verbatimModuleSyntax: every type-only import says so), so nothing loads
// in a loop. Type-only imports still count for every other rule.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import swc from '@swc/core';
import { cruise } from 'dependency-cruiser';

const argv = process.argv.slice(2);
const json = argv.includes('--json');
const configArg = argv.indexOf('--config');
const baseDir = process.cwd();
const configFile = resolve(baseDir, configArg >= 0 ? argv[configArg + 1] : '.dependency-cruiser.cjs');
const config = createRequire(import.meta.url)(configFile);

const reported = await cruise(['src'], { ...config.options, validate: true, ruleSet: config, outputType: 'json' });
const result = JSON.parse(reported.output);
const modules = new Map(result.modules.map((m) => [m.source, m]));

/** Specifiers `file` imports for their values: imports and re-exports not marked `type`, and `import()` calls. */
const valueSpecifiers = new Map();
function valueImportsOf(source) {
  let specs = valueSpecifiers.get(source);
  if (specs) return specs;
  specs = new Set();
  const ast = swc.parseSync(readFileSync(join(baseDir, source), 'utf8'), { syntax: 'typescript', dynamicImport: true });
  for (const item of ast.body) {
    const kind = item.type;
    if ((kind === 'ImportDeclaration' || kind === 'ExportNamedDeclaration' || kind === 'ExportAllDeclaration') && item.source && !item.typeOnly) {
      specs.add(item.source.value);
    }
  }
  const walk = (node) => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (node === null || typeof node !== 'object') return;
    if (node.type === 'CallExpression' && node.callee?.type === 'Import') {
      const arg = node.arguments?.[0]?.expression;
      if (arg?.type === 'StringLiteral') specs.add(arg.value);
    }
    for (const key in node) if (key !== 'span') walk(node[key]);
  };
  walk(ast.body);
  valueSpecifiers.set(source, specs);
  return specs;
}

/** True when every import of `to` in `from` is type-only (the edge is erased at run time). */
function typeOnlyEdge(from, to) {
  const deps = modules.get(from)?.dependencies.filter((d) => d.resolved === to) ?? [];
  if (deps.length === 0 || !from.endsWith('.ts')) return false;
  const values = valueImportsOf(from);
  return deps.every((d) => !values.has(d.module));
}

/** A reported cycle `from → cycle[0] → … → from` with a type-only edge does not exist at run time. */
function typeOnlyCycle(v) {
  const path = [v.from, ...v.cycle.map((c) => c.name)];
  for (let i = 0; i + 1 < path.length; i++) if (typeOnlyEdge(path[i], path[i + 1])) return true;
  return false;
}

const describe = (v) => `${v.rule.name}: ${v.cycle?.length ? [v.from, ...v.cycle.map((c) => c.name)].join(' → ') : `${v.from} → ${v.to}`}`;
const typeOnlyCycles = [];
const errors = [];
const ignored = [];
for (const v of result.summary.violations) {
  if (v.cycle?.length && typeOnlyCycle(v)) typeOnlyCycles.push(v);
  else if (v.rule.severity === 'ignore') ignored.push(v);
  else if (v.rule.severity === 'error' || v.rule.severity === 'warn') errors.push(v);
}

if (json) {
  process.stdout.write(
    `${JSON.stringify({ totalCruised: result.summary.totalCruised, errors, ignored, typeOnlyCycles }, null, 2)}\n`,
  );
} else {
  for (const v of errors) console.log(`  ${v.rule.severity} ${describe(v)}`);
  console.log(
    `${errors.length === 0 ? '✔ no layering violation' : `✘ ${errors.length} layering violation(s)`} ` +
      `(${result.summary.totalCruised} modules; ${ignored.length} on the temporary allowlist, ` +
      `${typeOnlyCycles.length} cycle(s) through type-only imports not counted)`,
  );
}
process.exitCode = errors.length === 0 ? 0 : 1;
