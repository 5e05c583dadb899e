/**
 * `celeriac audit`: check a Celeriac or Python Celery deployment against
 * the mitigations CEL-001 … CEL-022, statically (files and environment,
 * never executing Python configuration) and, when asked, live (read-only,
 * bounded probes of the broker, backend and dashboards the configuration
 * names, or loopback).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { Env } from '../config/env.ts';
import { parseConnectionUrls } from '../config/url.ts';
import { probeAmqp } from './live/amqp.ts';
import { bounded, ProbeScope } from './live/common.ts';
import { probeHttp, type ViewerCredentials } from './live/http.ts';
import { probeRedis } from './live/redis.ts';
import { auditCeleriac } from './static/celeriac.ts';
import { parseDotenv, setAuditWorkerUid } from './static/common.ts';
import { auditDotenvFile, auditKeyFile, auditLogFile, auditPythonVersions, auditYamlFile, type EnvEntry } from './static/deploy.ts';
import { auditPythonFiles, ENV_PLACEHOLDER, readPythonFile, type PythonFile } from './static/python.ts';
import { SEVERITIES, severityRank, type AuditFinding, type ConfiguredEndpoint } from './types.ts';

export * from './types.ts';
export { policyFindings } from './policy-bridge.ts';
export { parsePythonConfig } from './python/parse.ts';

/** What to audit. */
export interface AuditOptions {
  /** Files or directories to scan (default: none). */
  paths?: readonly string[];
  /** Environment of the deployment (Celeriac reads `CELERIAC_*`/`CELERY_*` from it). Default: none. */
  env?: Env;
  /** `.env` files of the deployment, read before any found while scanning. */
  envFiles?: readonly string[];
  /** Celeriac settings (as given to createApp), e.g. from a JSON file. */
  celeriacSettings?: Record<string, unknown>;
  /** File the Celeriac settings came from, for locations. */
  celeriacSettingsFile?: string;
  /** Tasks of a loaded Celeriac app (for the schema check). */
  celeriacTasks?: { name: string; hasSchema: boolean }[];
  /** Run the live probes. */
  live?: boolean;
  /** Extra dashboard/Flower URLs to probe (loopback or hosts named in the configuration only). */
  http?: readonly string[];
  /** A Celeriac dashboard viewer account: the live probe logs in and checks that a viewer's revoke is refused (CEL-009). */
  httpViewer?: ViewerCredentials;
  /** Time bound of each probe step in ms (default 3000). */
  timeoutMs?: number;
  /**
   * The user id the workers run as, for the secret-file owner rules (as the
   * worker applies them at start). Default: the user running the audit;
   * none when that is root (the owner rules are then skipped).
   */
  workerUid?: number;
}

/** The audit's result. */
export interface AuditReport {
  findings: AuditFinding[];
  /** Files read. */
  files: string[];
  /** What the live probes could not do, and why. */
  notes: string[];
  live: boolean;
}

const SKIP_DIRS = new Set(['node_modules', '.git', '.hg', '.svn', '__pycache__', 'venv', '.venv', 'site-packages', '.tox', '.mypy_cache', '.pytest_cache', 'dist-packages']);
const MAX_FILES = 5000;
const MAX_BYTES = 2 << 20;

type Kind = 'python' | 'dotenv' | 'yaml' | 'requirements' | 'key' | 'log';

function classify(path: string): Kind | undefined {
  const name = basename(path);
  const ext = extname(name).toLowerCase();
  if (ext === '.py') return 'python';
  if (ext === '.log') return 'log';
  if (name === '.env' || name.startsWith('.env.') || ext === '.env') return 'dotenv';
  if (ext === '.yml' || ext === '.yaml') return 'yaml';
  if (/^requirements.*\.txt$|^constraints.*\.txt$|^poetry\.lock$|^pylock.*\.toml$/i.test(name)) return 'requirements';
  if (['.pem', '.key', '.p8'].includes(ext)) return 'key';
  // Secret files without a code extension: `redis_password`, `secrets/broker_url`, `api-token.txt`.
  if ((ext === '' || ext === '.txt') && (/(^|[-_.])(password|passwd|secret|token)s?($|[-_.])/i.test(name) || basename(dirname(path)) === 'secrets')) return 'key';
  return undefined;
}

/** Files to read under the given paths (directories walked, 8 levels deep). */
export function discoverFiles(paths: readonly string[]): { path: string; kind: Kind }[] {
  const out: { path: string; kind: Kind }[] = [];
  const walk = (p: string, depth: number, explicit: boolean): void => {
    if (out.length >= MAX_FILES) return;
    let st;
    try {
      st = statSync(p);
    } catch {
      return;
    }
    if (st.isDirectory()) {
      if (depth > 8 || (!explicit && SKIP_DIRS.has(basename(p)))) return;
      let names: string[];
      try {
        names = readdirSync(p).sort();
      } catch {
        return;
      }
      for (const n of names) walk(join(p, n), depth + 1, false);
    } else if (st.isFile() && st.size <= MAX_BYTES) {
      const kind = classify(p);
      if (kind) out.push({ path: p, kind });
      else if (explicit) out.push({ path: p, kind: 'python' });
    }
  };
  for (const p of paths) walk(resolve(p), 0, true);
  return out;
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Stable key of a finding (for baselines and de-duplication). */
export function findingKey(f: AuditFinding): string {
  return f.key ?? `${f.id}|${f.setting}|${f.location.file ?? f.location.endpoint ?? ''}|${f.message.replace(/\d+/g, '#')}`;
}

/** Run the audit. */
export async function runAudit(opts: AuditOptions = {}): Promise<AuditReport> {
  // The workers' user for the owner rules. The static checks run synchronously from the start of
  // auditWith, so another audit started meanwhile (during live probes) cannot see this value.
  setAuditWorkerUid(opts.workerUid, opts.workerUid !== undefined);
  try {
    return await auditWith(opts);
  } finally {
    setAuditWorkerUid(undefined, false);
  }
}

async function auditWith(opts: AuditOptions): Promise<AuditReport> {
  const findings: AuditFinding[] = [];
  const notes: string[] = [];
  const timeoutMs = opts.timeoutMs ?? 3000;
  const files = discoverFiles(opts.paths ?? []);
  const envEntries: EnvEntry[] = [];
  const dashboards: string[] = [];

  // Explicit env files first: they take precedence over files found while scanning.
  for (const f of opts.envFiles ?? []) {
    const text = read(f);
    if (text === undefined) {
      notes.push(`env file ${f} cannot be read`);
      continue;
    }
    findings.push(...auditDotenvFile(resolve(f), text, envEntries));
  }
  const explicitEnvFiles = new Set((opts.envFiles ?? []).map((f) => resolve(f)));
  const python: PythonFile[] = [];
  for (const { path, kind } of files) {
    if (explicitEnvFiles.has(path)) continue;
    const text = read(path);
    if (text === undefined) continue;
    switch (kind) {
      case 'python':
        python.push(readPythonFile(path, text));
        break;
      case 'dotenv':
        findings.push(...auditDotenvFile(path, text, envEntries));
        break;
      case 'yaml':
        findings.push(...auditYamlFile(path, text, envEntries, dashboards));
        break;
      case 'requirements':
        findings.push(...auditPythonVersions(path, text));
        break;
      case 'key':
        findings.push(...auditKeyFile(path, text));
        break;
      case 'log':
        findings.push(...auditLogFile(path, text));
        break;
    }
  }

  // One environment: variables found while scanning, then explicit env files, then the given environment, later ones winning.
  const env: Record<string, string | undefined> = {};
  const origin = new Map<string, EnvEntry>();
  for (const pass of [false, true]) {
    for (const e of envEntries) {
      if (explicitEnvFiles.has(e.file) !== pass || (origin.has(e.key) && explicitEnvFiles.has(origin.get(e.key)!.file) === pass)) continue;
      env[e.key] = e.value;
      origin.set(e.key, e);
    }
  }
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) continue;
    env[k] = v;
    origin.delete(k);
  }
  // ${NAME} interpolation inside .env/compose values (as dotenv and compose do), one level.
  for (const k of origin.keys()) {
    const v = env[k];
    if (v?.includes('${')) env[k] = v.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m, n: string) => (n !== k && env[n] !== undefined && !env[n]!.includes('${') ? env[n]! : m));
  }
  const lookup = (name: string): { value: string; file?: string; line?: number } | undefined => {
    const v = env[name];
    return v === undefined ? undefined : { value: v, ...(origin.get(name) ? { file: origin.get(name)!.file, line: origin.get(name)!.line } : {}) };
  };
  const consumed = new Set<string>();
  const endpoints: ConfiguredEndpoint[] = [];
  findings.push(...auditPythonFiles(python, lookup, consumed, endpoints));

  // Celeriac: settings given, or the environment names Celeriac, or (URL policy only) a broker/backend in the environment.
  const full = opts.celeriacSettings !== undefined || opts.celeriacTasks !== undefined || Object.keys(env).some((k) => k.startsWith('CELERIAC_'));
  findings.push(...auditCeleriac({
    env, full, consumedEnv: consumed, endpoints,
    ...(opts.celeriacSettings ? { settings: opts.celeriacSettings } : {}),
    ...(opts.celeriacSettingsFile ? { file: opts.celeriacSettingsFile } : {}),
    ...(opts.celeriacTasks ? { tasks: opts.celeriacTasks } : {}),
    envOrigin: (name) => origin.get(name),
  }));

  if (opts.live) {
    const scope = new ProbeScope();
    const seen = new Set<string>();
    for (const ep of endpoints) {
      let url;
      try {
        // A `;` list: the first node is probed (the policy judged every one statically).
        url = parseConnectionUrls(ep.url)[0]!;
      } catch {
        continue;
      }
      if (url.scheme === 'sentinel') {
        notes.push(`${ep.setting}: Redis Sentinel is not probed live (the sentinels and the primary they name were judged statically)`);
        continue;
      }
      if (url.kind === 'sqlite' || url.kind === 'memory' || url.kind === 'postgres' || url.host.startsWith('/')) {
        if (url.kind === 'postgres') notes.push(`${url.redacted}: PostgreSQL is not probed live`);
        continue;
      }
      if (url.host.includes(ENV_PLACEHOLDER.toLowerCase())) {
        notes.push(`${ep.setting}: the host comes from outside the configuration and is unknown, so it was not probed`);
        continue;
      }
      scope.allow(url.host);
      const k = `${url.kind}|${url.host}|${url.port}|${url.username ?? ''}|${ep.role}`;
      if (seen.has(k)) continue;
      seen.add(k);
      if (url.kind === 'redis') {
        findings.push(...(await bounded(() => probeRedis({ url, useSsl: ep.useSsl, role: ep.role, setting: ep.setting }, timeoutMs), timeoutMs * 12, [] as AuditFinding[])));
      } else if (url.kind === 'amqp') {
        const r = await bounded(() => probeAmqp({ url, useSsl: ep.useSsl, setting: ep.setting }, timeoutMs), timeoutMs * 10, { findings: [] as AuditFinding[], notes: [`${url.redacted}: probe timed out`] });
        findings.push(...r.findings);
        notes.push(...r.notes);
      }
    }
    for (const target of new Set([...dashboards, ...(opts.http ?? [])])) {
      let u: URL;
      try {
        u = new URL(target);
      } catch {
        notes.push(`${target} is not a URL`);
        continue;
      }
      if (!scope.allowed(u.hostname)) {
        notes.push(`${u.host} was not probed: only loopback and hosts named in the configuration are`);
        continue;
      }
      const r = await bounded(() => probeHttp(u.href, timeoutMs, { viewer: opts.httpViewer }), timeoutMs * 10, { findings: [] as AuditFinding[], notes: [`${u.href}: probe timed out`] });
      findings.push(...r.findings);
      notes.push(...r.notes);
    }
  } else if (endpoints.length > 0 || dashboards.length > 0) {
    notes.push('live probes not run (add --live to check what the servers accept)');
  }

  // De-duplicate and order: most severe first, then id, then location.
  const unique = new Map<string, AuditFinding>();
  for (const f of findings) {
    const k = `${findingKey(f)}|${f.location.line ?? ''}|${f.kind}`;
    if (!unique.has(k)) unique.set(k, f);
  }
  const sorted = [...unique.values()].sort((a, b) => severityRank(b.severity) - severityRank(a.severity) || a.id.localeCompare(b.id)
    || (a.location.file ?? a.location.endpoint ?? '').localeCompare(b.location.file ?? b.location.endpoint ?? '') || (a.location.line ?? 0) - (b.location.line ?? 0));
  return { findings: sorted, files: files.map((f) => f.path), notes, live: !!opts.live };
}

/** Read a `.env`-style file into an object (for `--env-file`). */
export function readEnvFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of parseDotenv(readFileSync(path, 'utf8'))) out[e.key] = e.value;
  return out;
}

/** Whether a severity name is valid. */
export function isSeverity(s: string): s is AuditFinding['severity'] {
  return (SEVERITIES as readonly string[]).includes(s);
}

