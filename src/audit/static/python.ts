/**
 * Static checks of a Python Celery configuration (celeryconfig.py,
 * `app.conf.update(…)`, `Celery(…)` keywords, Django `CELERY_*` settings),
 * read by parsing, never by running it. The settings the start-up policy
 * covers are mapped into a `PolicyInput` and judged by the policy itself;
 * the rest (hard-coded secrets, signing, key files, expiry, limits, remote
 * control) are checked here.
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { registerSecret } from '../../config/redact.ts';
import { parseConnectionUrls } from '../../config/url.ts';
import { policyFindings } from '../policy-bridge.ts';
import { parsePythonConfig, type PyModule, type PySetting, type PyValue } from '../python/parse.ts';
import type { AuditFinding, ConfiguredEndpoint } from '../types.ts';
import { certificateExpiryFinding, certStoreFindings, finding, isReferenceValue, isSecretName, readCertificate, secretFileProblem, urlPassword } from './common.ts';

/** Stand-in for a secret that comes from the environment: strong enough for the policy's strength rule, alphanumeric so it fits any URL position. */
export const ENV_PLACEHOLDER = 'EnvSourced7Placeholder9Qx4Zk2Wm8Ty3';

/** Settings the audit reads, by their Celery ≥ 4 lower-case names. */
const KNOWN = new Set([
  'broker_url', 'result_backend', 'broker_use_ssl', 'redis_backend_use_ssl', 'task_serializer', 'result_serializer', 'accept_content',
  'result_accept_content', 'security_key', 'security_certificate', 'security_cert_store', 'result_expires', 'task_time_limit',
  'task_soft_time_limit', 'worker_max_memory_per_child', 'worker_enable_remote_control', 'broker_transport_options', 'broker_read_url', 'broker_write_url',
]);

const OLD_NAMES: Record<string, string> = {
  broker: 'broker_url', backend: 'result_backend', task_result_expires: 'result_expires', enable_remote_control: 'worker_enable_remote_control',
  celeryd_task_time_limit: 'task_time_limit', celeryd_task_soft_time_limit: 'task_soft_time_limit', celeryd_max_memory_per_child: 'worker_max_memory_per_child',
};

/** Celery's setting name for a name as written (`CELERY_BROKER_URL` → `broker_url`, `BROKER_USE_SSL` → `broker_use_ssl`). */
export function celerySettingName(name: string): string {
  let n = name;
  if (/^[A-Z0-9_]+$/.test(n)) {
    n = n.toLowerCase();
    if (!n.startsWith('celeryd_') && n.startsWith('celery_')) n = n.slice('celery_'.length);
  }
  return OLD_NAMES[n] ?? n;
}

/** One Python file, parsed. */
export interface PythonFile {
  file: string;
  mod: PyModule;
}

/** Parse a Python file's text (never executed). */
export function readPythonFile(file: string, text: string): PythonFile {
  return { file, mod: parsePythonConfig(text) };
}

/** A located setting. */
interface Located {
  name: string;
  written: string;
  value: PyValue;
  file: string;
  line: number;
}

/** Environment lookups for `os.environ[...]` references: `.env` files, compose `environment:` entries. */
export type EnvLookup = (name: string) => { value: string; file?: string; line?: number } | undefined;

interface Converted {
  value: unknown;
  /** Environment variables the value came from. */
  env: string[];
  /** Unknown at audit time (dynamic or unresolved env). */
  unknown: boolean;
}

/** Problems met while reading secret files a configuration names (`open(path).read()`). */
export interface FileRefProblem {
  path: string;
  problem: string;
  line: number;
}

/**
 * A Python value as a plain JS value. Env references are resolved through
 * `lookup`; module-level variables through `vars`; files read with
 * `open(path).read()` are read here (after the same mode check a Celeriac
 * worker makes; their contents are registered for redaction). Inside
 * strings, whatever cannot be known becomes a strong placeholder, so a URL
 * whose password comes from outside the code is judged as having one.
 */
export function pyToJs(v: PyValue, lookup: EnvLookup, vars: ReadonlyMap<string, PyValue> = new Map(), fileProblems: FileRefProblem[] = []): Converted {
  const env: string[] = [];
  let unknown = false;
  let depth = 0;
  const conv = (x: PyValue, inString: boolean): unknown => {
    switch (x.k) {
      case 'str': return x.v;
      case 'num': return x.v;
      case 'bool': return x.v;
      case 'none': return null;
      case 'list': case 'tuple': case 'set': return x.items.map((i) => conv(i, false));
      case 'dict': {
        const o: Record<string, unknown> = {};
        for (const [k, val] of x.entries) if (k.k === 'str' || k.k === 'name') o[k.k === 'str' ? k.v : k.dotted] = conv(val, false);
        return o;
      }
      case 'name': {
        const target = vars.get(x.dotted);
        if (target && depth < 8) {
          depth++;
          try {
            return conv(target, inString);
          } finally {
            depth--;
          }
        }
        return inString ? ENV_PLACEHOLDER : x.dotted;
      }
      case 'file': {
        if (!x.read) break;
        const p = secretFileProblem(x.path);
        if (p) {
          fileProblems.push({ path: x.path, problem: p.problem, line: x.line });
          return inString ? ENV_PLACEHOLDER : undefined;
        }
        try {
          const text = readFileSync(x.path, 'utf8').trim();
          registerSecret(text);
          return text;
        } catch {
          break;
        }
      }
      case 'env': {
        env.push(x.name);
        const found = lookup(x.name);
        if (found) return found.value;
        if (x.default && x.default.k !== 'none') return conv(x.default, inString);
        break;
      }
      case 'fstr': case 'concat':
        return x.parts.map((p) => (typeof p === 'string' ? p : String(conv(p, true) ?? ENV_PLACEHOLDER))).join('');
      case 'dynamic':
        break;
    }
    if (inString) return ENV_PLACEHOLDER;
    unknown = true;
    return undefined;
  };
  const value = conv(v, false);
  return { value, env, unknown };
}

/** Literal string positions in a value that are hard-coded secrets, with the setting path. */
function literalSecrets(name: string, v: PyValue, out: { path: string; line: number; what: string }[]): void {
  if (v.k === 'str') {
    const up = urlPassword(v.v);
    if (up) out.push({ path: name, line: v.line, what: 'a password inside a URL' });
    else if (isSecretName(name) && !isReferenceValue(v.v)) out.push({ path: name, line: v.line, what: 'a literal secret' });
    else if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(v.v)) out.push({ path: name, line: v.line, what: 'a private key' });
  } else if (v.k === 'fstr' || v.k === 'concat') {
    // The literal text of an f-string may still carry the password: f"redis://:hunter2@{host}".
    const text = v.parts.map((p) => (typeof p === 'string' ? p : p.k === 'str' ? p.v : '\u0000')).join('');
    const up = urlPassword(text);
    if (up && !up.password.includes('\u0000')) out.push({ path: name, line: v.line, what: 'a password inside a URL' });
  } else if (v.k === 'dict') {
    for (const [k, val] of v.entries) if (k.k === 'str') literalSecrets(`${name}.${k.v}`, val, out);
  } else if (v.k === 'list' || v.k === 'tuple') {
    for (const item of v.items) literalSecrets(name, item, out);
  }
}

const POLICY_NAMES: Record<string, string> = {
  brokerUrl: 'broker_url', resultBackend: 'result_backend', brokerUseSsl: 'broker_use_ssl', redisBackendUseSsl: 'redis_backend_use_ssl',
  taskSerializer: 'task_serializer', resultSerializer: 'result_serializer', acceptContent: 'accept_content', resultAcceptContent: 'result_accept_content',
};

function isCeleryFile(f: PythonFile, referenced: Set<string>): boolean {
  const base = basename(f.file).replace(/\.py$/, '');
  return /celery/i.test(base) || f.mod.celeryApp || referenced.has(base);
}

/** Collect the Celery settings of a set of Python files (first definition wins, as a later `conf.update` usually refines an earlier module). */
export function collectPythonSettings(files: readonly PythonFile[]): Map<string, Located> {
  const settings = new Map<string, Located>();
  const referenced = new Set<string>();
  for (const f of files) for (const a of f.mod.assignments) if (a.value.k === 'str' && /config/i.test(a.name)) referenced.add(a.value.v.split('.').pop()!);
  const add = (s: PySetting, file: string): void => {
    const name = celerySettingName(s.name);
    if (!KNOWN.has(name)) return;
    // Later definitions override earlier ones, as in Python; conf.update after the module wins too.
    settings.set(name, { name, written: s.name, value: s.value, file, line: s.line });
  };
  for (const f of files) {
    const celeryFile = isCeleryFile(f, referenced);
    for (const a of f.mod.assignments) {
      const upper = /^[A-Z0-9_]+$/.test(a.name);
      if (upper ? /^(CELERY_|CELERYD_|BROKER_)/.test(a.name) : celeryFile) add(a, f.file);
    }
    for (const s of f.mod.settings) add(s, f.file);
  }
  return settings;
}

/** Static findings for Python Celery files. */
export function auditPythonFiles(files: readonly PythonFile[], lookup: EnvLookup, consumedEnv: Set<string>, endpoints: ConfiguredEndpoint[] = []): AuditFinding[] {
  const out: AuditFinding[] = [];
  if (files.length === 0) return out;

  // Hard-coded secrets in any Python file (CEL-002).
  for (const f of files) {
    const seen = new Set<number>();
    for (const s of [...f.mod.assignments, ...f.mod.settings]) {
      const hits: { path: string; line: number; what: string }[] = [];
      literalSecrets(s.name, s.value, hits);
      for (const h of hits) {
        if (seen.has(h.line)) continue;
        seen.add(h.line);
        out.push(finding('CEL-002', 'medium', h.path, `${basename(f.file)} line ${h.line}: ${h.path} holds ${h.what} written in the code: everyone who can read the repository or the image has it`,
          'read it from the environment or a secret file instead (os.environ["CELERY_BROKER_URL"], or a URL built from a password file mounted as a Docker/Kubernetes secret); then rotate the exposed secret', f.file, h.line));
      }
    }
  }

  const settings = collectPythonSettings(files);
  const celeryFound = files.some((f) => f.mod.celeryApp) || settings.size > 0;
  if (!celeryFound) return out;
  const primary = [...settings.values()][0]?.file ?? files.find((f) => f.mod.celeryApp)?.file;

  type Got = Located & { js: unknown; env: string[]; unknown: boolean };
  const vars = new Map<string, PyValue>();
  for (const f of files) for (const a of f.mod.assignments) vars.set(a.name, a.value);
  const fileProblems: FileRefProblem[] = [];
  const get = (name: string): Got | undefined => {
    const s = settings.get(name);
    if (!s) return undefined;
    const c = pyToJs(s.value, lookup, vars, fileProblems);
    for (const e of c.env) consumedEnv.add(e);
    return { ...s, js: c.value, env: c.env, unknown: c.unknown };
  };
  const str = (x: Got | undefined): string | undefined => (typeof x?.js === 'string' ? x.js : undefined);
  const list = (x: Got | undefined): string[] | undefined => (Array.isArray(x?.js) ? (x!.js as unknown[]).map(String) : typeof x?.js === 'string' ? (x.js as string).split(',').map((s) => s.trim()) : undefined);

  const broker = get('broker_url');
  const backend = get('result_backend');
  const lines: Record<string, number> = {};
  const files1: Record<string, string> = {};
  for (const [policyName, pyName] of Object.entries(POLICY_NAMES)) {
    const s = settings.get(pyName);
    if (s) {
      lines[policyName] = s.line;
      files1[policyName] = s.file;
    }
  }
  for (const [which, s] of [['broker_url', broker], ['result_backend', backend]] as const) {
    if (s?.unknown) {
      out.push(finding(which === 'broker_url' ? 'CEL-001' : 'CEL-014', 'info', which,
        `${which} comes from ${s.env.length ? `the environment (${s.env.join(', ')})` : 'code the audit does not run'}, which the audit could not see, so its credentials and TLS were not checked statically`,
        'run the audit with --env-file pointing at the deployment\'s environment, or with --live', s.file, s.line));
    }
  }
  // The policy, in production mode, over what the Python settings amount to. Each finding points at the file of its setting.
  // Transports and backends the policy does not know (rpc://, sqs://, db+mysql://, django-db, …) are said, not guessed.
  const judged = (which: 'broker_url' | 'result_backend', s: Got | undefined): string | undefined => {
    const url = s?.unknown ? undefined : str(s);
    if (url === undefined) return undefined;
    try {
      parseConnectionUrls(url);
      return url;
    } catch {
      const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1] ?? url.split(':')[0];
      out.push(finding(which === 'broker_url' ? 'CEL-001' : 'CEL-014', 'info', which,
        `${which} uses ${scheme}, which the audit does not judge${scheme === 'rpc' ? ' (rpc:// results travel over the broker, so the broker\'s checks apply)' : ''}`,
        'check its authentication and TLS by hand', s!.file, s!.line));
      return undefined;
    }
  };
  if (!broker && !lookup('CELERY_BROKER_URL') && files.some((f) => f.mod.celeryApp)) {
    out.push(finding('CEL-011', 'medium', 'broker_url', 'no broker_url is configured: Celery then connects to amqp://guest:guest@localhost//, the default guest account',
      'set broker_url (from the environment or a secret file) to a user of your own', primary));
  }
  const input = {
    brokerUrl: judged('broker_url', broker),
    resultBackend: judged('result_backend', backend),
    brokerUseSsl: get('broker_use_ssl')?.js,
    redisBackendUseSsl: get('redis_backend_use_ssl')?.js,
    taskSerializer: str(get('task_serializer')),
    resultSerializer: str(get('result_serializer')),
    acceptContent: list(get('accept_content')),
    resultAcceptContent: list(get('result_accept_content')),
  };
  if (input.brokerUrl) endpoints.push({ role: 'broker', url: input.brokerUrl, useSsl: input.brokerUseSsl, setting: 'broker_url' });
  if (input.resultBackend) endpoints.push({ role: 'backend', url: input.resultBackend, useSsl: input.redisBackendUseSsl, setting: 'result_backend' });
  for (const f of policyFindings(input, { names: POLICY_NAMES, lines, label: 'Celery configuration' })) {
    const base = Object.entries(POLICY_NAMES).find(([, py]) => f.setting.startsWith(py))?.[0];
    const file = (base && files1[base]) ?? primary;
    if (file) f.location.file = file;
    out.push(f);
  }

  const accept = list(get('accept_content'));
  const acceptS = settings.get('accept_content');
  if (!acceptS) {
    out.push(finding('CEL-006', 'low', 'accept_content', 'accept_content is not set: the accepted formats depend on the Celery version\'s default instead of being stated',
      "set accept_content = ['json'] (or ['auth'] with signing)", primary));
  }

  // Signing (CEL-007) and the keys it needs.
  const serializer = str(get('task_serializer'));
  const key = get('security_key');
  const cert = get('security_certificate');
  if (serializer !== 'auth') {
    const s = settings.get('task_serializer');
    out.push(finding('CEL-007', 'high', 'task_serializer', 'task messages are not signed: anyone who can write to the broker can forge tasks that the workers run',
      "set up Celery's auth serializer: security_key, security_certificate, security_cert_store, then app.setup_security() (task_serializer='auth', accept_content=['auth']); Celeriac: taskSerializer 'auth' or a signing key ring",
      s?.file ?? primary, s?.line));
  } else if (!key || !cert) {
    out.push(finding('CEL-007', 'high', 'security_key', "task_serializer is 'auth' but security_key or security_certificate is not set, so workers cannot sign or verify",
      'set security_key, security_certificate and security_cert_store', primary));
  }
  // Relative paths are taken from the configuration's directory (where the worker usually starts).
  const near = (x: Got | undefined, v: string | undefined): string | undefined => (v && x && !v.includes('-----BEGIN') && !isAbsolute(v) ? resolve(dirname(x.file), v) : v);
  const keyPath = near(key, str(key));
  if (key && keyPath && !keyPath.includes('-----BEGIN')) {
    const p = secretFileProblem(keyPath);
    if (p) {
      out.push(finding('CEL-007', 'high', 'security_key', `the signing key file ${keyPath} ${p.problem}: another user of the host can sign tasks that every worker runs`,
        p.fix, key.file, key.line));
    }
  }
  for (const [name, s] of [['security_certificate', cert], ['security_cert_store', get('security_cert_store')]] as const) {
    const p = near(s, str(s));
    if (!s || !p) continue;
    if (name === 'security_cert_store' && !p.includes('-----BEGIN')) out.push(...certStoreFindings(p, name, s.file, s.line));
    const c = readCertificate(p);
    const f = c && certificateExpiryFinding(c, `the ${name.replace(/_/g, ' ')}`, name, s.file, s.line);
    if (f) out.push(f);
  }
  const ssl = get('broker_use_ssl')?.js;
  if (ssl && typeof ssl === 'object') {
    for (const [k, v] of Object.entries(ssl as Record<string, unknown>)) {
      if (typeof v !== 'string' || !/(ca_certs|certfile|cafile|ca_file)$/i.test(k)) continue;
      const s = settings.get('broker_use_ssl');
      const c = readCertificate(s && !isAbsolute(v) ? resolve(dirname(s.file), v) : v);
      const f = c && certificateExpiryFinding(c, `the certificate in broker_use_ssl.${k}`, `broker_use_ssl.${k}`, s?.file, s?.line);
      if (f) out.push(f);
    }
  }

  // Result expiry and encryption (CEL-016).
  if (input.resultBackend) {
    const exp = settings.get('result_expires');
    const v = exp ? pyToJs(exp.value, lookup, vars).value : undefined;
    if (exp && (v === null || v === 0)) {
      out.push(finding('CEL-016', 'medium', 'result_expires', 'results never expire: a breached backend holds every result ever stored', 'set result_expires to the shortest time results are needed (Celery\'s default is 1 day)', exp.file, exp.line));
    }
    out.push(finding('CEL-016', 'info', 'result_backend', 'Python Celery stores results unencrypted; anyone who can read the backend reads them', 'keep secrets out of task results; Celeriac workers can seal results with AES-256-GCM (resultEncryptionKeys)', backend?.file, backend?.line));
  }

  // Limits (CEL-020).
  if (!settings.get('task_time_limit')) {
    out.push(finding('CEL-020', 'low', 'task_time_limit', 'no hard time limit: a stuck or hostile task holds a worker process forever', 'set task_time_limit (and task_soft_time_limit below it)', primary));
  }

  // Remote control (CEL-022): broadcast commands are accepted in any format the workers accept.
  const rc = settings.get('worker_enable_remote_control');
  const rcOff = rc && pyToJs(rc.value, lookup, vars).value === false;
  const onlySigned = accept !== undefined && accept.length > 0 && accept.every((a) => ['auth', 'application/data'].includes(a.toLowerCase()));
  if (!rcOff && !onlySigned) {
    out.push(finding('CEL-022', 'high', 'worker_enable_remote_control', 'remote control is on and control messages need no signature: anyone who can write to the broker can shut down workers, change rate limits or revoke tasks',
      "accept only signed messages (accept_content=['auth'] after app.setup_security()), or set worker_enable_remote_control = False", rc?.file ?? primary, rc?.line));
  }

  // Secret files the configuration reads (open(path).read()) with unsafe modes.
  const reported = new Set<string>();
  for (const p of fileProblems) {
    if (reported.has(p.path)) continue;
    reported.add(p.path);
    const where = files.find((f) => f.mod.assignments.some((a) => a.line === p.line) || f.mod.settings.some((x) => x.line === p.line))?.file ?? primary;
    out.push(finding('CEL-002', 'medium', p.path, `the secret file ${p.path} read by the configuration ${p.problem}`, `chmod 600 ${p.path}, owned by the worker's user`, where, p.line));
  }

  // Things the audit cannot see in a Python configuration are said once, at info level.
  out.push(finding('CEL-018', 'info', 'tasks', 'Celery has no per-task argument schemas; task code must validate its arguments', 'validate arguments at the top of each task (or use Celeriac tasks with zod schemas)', primary));
  return out;
}
