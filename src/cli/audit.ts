/**
 * `celeriac audit [PATH…]`: check a Celeriac or Python Celery deployment
 * against the mitigations CEL-001 … CEL-022 (see docs/audit/). Python
 * configuration is parsed, never run; `--live` adds read-only, bounded
 * probes of the servers the configuration names (or loopback).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isSeverity, runAudit, type AuditOptions } from '../audit/index.ts';
import { applyBaseline, formatJson, formatSarif, formatText, makeBaseline, parseBaseline, shouldFail, type Baseline } from '../audit/report.ts';
import type { Severity } from '../audit/types.ts';
import { flattenSettings } from '../config/options.ts';
import { Exit, println, reportError, type CliIo } from './io.ts';

const USAGE = `Usage: celeriac audit [PATH...] [options]

Checks a deployment — Celeriac's or Python Celery's — against every
mitigation (CEL-001 … CEL-022; docs/audit/ has a page per check).

PATHs are files or directories (default: the current directory). Read:
celeryconfig.py and other Python files (parsed, never executed), Django
CELERY_* settings, .env files, docker-compose and Kubernetes YAML,
requirements files, and key/secret files (permissions).

Sources:
      --env-file FILE       the deployment's environment (repeatable)
      --settings FILE       Celeriac settings as JSON (what createApp gets)
  -A, --app MODULE          load a Celeriac app module (this RUNS the module)
      --no-env              ignore this process's environment

Live probes (read-only, each step bounded by --timeout):
      --live                probe the broker, backend and dashboards the
                            configuration names (only loopback or those hosts)
      --http URL            also probe this Flower/dashboard URL (repeatable)
      --http-viewer-file F  a Celeriac dashboard viewer account (one line: name:password)
                            to check that a viewer cannot revoke tasks (CEL-009)
      --timeout MS          per-step time bound (default 3000)

Output:
      --format text|json|sarif   (default text; --json and --sarif are short forms)
  -o, --output FILE         write the report to FILE instead of stdout
      --fail-on SEVERITY    exit 1 when a finding is at or above it:
                            critical, high (default), medium, low, info, none
      --baseline FILE       accept the findings listed in FILE
      --write-baseline FILE write a baseline accepting every current finding
      --color / --no-color  colour the text report (default: on a terminal)
  -h, --help                show this help

Exit codes: 0 nothing at or above --fail-on, 1 findings at or above it,
2 usage error, 4 the audit could not run.`;

/** Run `celeriac audit …`. */
export async function runAuditCommand(argv: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'env-file': { type: 'string', multiple: true }, settings: { type: 'string' }, app: { type: 'string', short: 'A' }, 'no-env': { type: 'boolean' },
        live: { type: 'boolean' }, http: { type: 'string', multiple: true }, 'http-viewer-file': { type: 'string' }, timeout: { type: 'string' },
        format: { type: 'string' }, json: { type: 'boolean' }, sarif: { type: 'boolean' }, output: { type: 'string', short: 'o' },
        'fail-on': { type: 'string' }, baseline: { type: 'string' }, 'write-baseline': { type: 'string' },
        color: { type: 'boolean' }, 'no-color': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    println(io.stderr, `celeriac audit: ${(err as Error).message}\n\n${USAGE}`);
    return Exit.USAGE;
  }
  const v = parsed.values;
  if (v.help) {
    println(io.stdout, USAGE);
    return Exit.OK;
  }
  const format = v.json ? 'json' : v.sarif ? 'sarif' : (v.format ?? 'text');
  if (!['text', 'json', 'sarif'].includes(format) || (v.json && v.sarif)) {
    println(io.stderr, 'celeriac audit: --format must be text, json or sarif');
    return Exit.USAGE;
  }
  const failOn = (v['fail-on'] ?? 'high') as Severity | 'none';
  if (failOn !== 'none' && !isSeverity(failOn)) {
    println(io.stderr, 'celeriac audit: --fail-on must be critical, high, medium, low, info or none');
    return Exit.USAGE;
  }
  const timeoutMs = v.timeout === undefined ? 3000 : Number(v.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 60_000) {
    println(io.stderr, 'celeriac audit: --timeout must be a whole number of milliseconds between 100 and 60000');
    return Exit.USAGE;
  }
  const paths = (parsed.positionals.length > 0 ? parsed.positionals : ['.']).map((p) => resolve(io.cwd, p));
  const baseDir = paths.length === 1 ? paths[0]! : io.cwd;

  try {
    const opts: AuditOptions = {
      paths, live: v.live ?? false, timeoutMs,
      ...(v['no-env'] ? {} : { env: io.env }),
      ...(v['env-file'] ? { envFiles: v['env-file'].map((f) => resolve(io.cwd, f)) } : {}),
      ...(v.http ? { http: v.http } : {}),
    };
    if (v['http-viewer-file']) {
      const line = readFileSync(resolve(io.cwd, v['http-viewer-file']), 'utf8').split(/\r?\n/)[0] ?? '';
      const at = line.indexOf(':');
      if (at <= 0) throw new Error(`${v['http-viewer-file']} must hold one line name:password`);
      opts.httpViewer = { username: line.slice(0, at), password: line.slice(at + 1) };
    }
    if (v.settings) {
      const file = resolve(io.cwd, v.settings);
      const obj = JSON.parse(readFileSync(file, 'utf8')) as unknown;
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`${v.settings} must hold a JSON object of settings`);
      opts.celeriacSettings = obj as Record<string, unknown>;
      opts.celeriacSettingsFile = file;
    }
    if (v.app) {
      const { appFromArgs } = await import('./load-app.ts');
      const { app, moduleUrl } = await appFromArgs(v.app, io.cwd);
      opts.celeriacSettings = flattenSettings(app.settings);
      if (moduleUrl) opts.celeriacSettingsFile = new URL(moduleUrl).pathname;
      opts.celeriacTasks = [...app.registry.values()].map((d) => ({ name: d.name, hasSchema: !!(d.options as { schema?: unknown }).schema }));
    }
    let baseline: Baseline | undefined;
    if (v.baseline) baseline = parseBaseline(readFileSync(resolve(io.cwd, v.baseline), 'utf8'));

    const report = await runAudit(opts);
    const { active, accepted } = applyBaseline(report.findings, baseline, baseDir);
    if (v['write-baseline']) {
      writeFileSync(resolve(io.cwd, v['write-baseline']), `${JSON.stringify(makeBaseline(report.findings, baseDir), null, 2)}\n`);
      println(io.stderr, `wrote a baseline accepting ${report.findings.length} finding${report.findings.length === 1 ? '' : 's'} to ${v['write-baseline']}`);
    }
    const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    const colour = format === 'text' && !v.output && !v['no-color'] && (v.color === true || (!!(io.stdout as { isTTY?: boolean }).isTTY && !io.env.NO_COLOR));
    const text = format === 'json' ? formatJson(report, active, { baseDir, accepted })
      : format === 'sarif' ? formatSarif(active, { baseDir, version })
        : formatText(report, active, { colour, baseDir, accepted: accepted.length });
    if (v.output) writeFileSync(resolve(io.cwd, v.output), `${text}\n`);
    else println(io.stdout, text);
    return shouldFail(active, failOn) ? 1 : Exit.OK;
  } catch (err) {
    return reportError(io, err);
  }
}
