/**
 * Static checks of a Celeriac configuration: app settings (a JSON settings
 * file or a loaded app), the environment (`CELERIAC_*`, `CELERY_*`, their
 * `_FILE` forms and `${file:…}` references). The URL, TLS, credential and
 * content rules are the start-up policy's own (via `policyFindings`).
 */
import { basename } from 'node:path';
import { existsSync } from 'node:fs';
import { BROKER_URL_VARS, readSecretFile, resolveSecretRefs, RESULT_BACKEND_VARS, type Env } from '../../config/env.ts';
import { normalizeSettings } from '../../config/options.ts';
import { UNSAFE_OPTIONS, unsafeEnvName, type Finding, type PolicyInput, type UnsafeOverrides } from '../../config/policy.ts';
import { parseConnectionUrl } from '../../config/url.ts';
import { isNetworkKind, urlSchemeSpec } from '../../core/schemes.ts';
import { sqliteFileChecks } from '../../transport/index.ts';
import { ConfigError } from '../../errors.ts';
import { policyFindings } from '../policy-bridge.ts';
import { controlPolicyInput } from '../../config/control-settings.ts';
import type { AuditFinding, ConfiguredEndpoint } from '../types.ts';
import { auditUid, certificateExpiryFinding, certStoreFindings, finding, readCertificate, secretFileProblem, urlPassword } from './common.ts';
import { ENV_PLACEHOLDER } from './python.ts';

/** What to audit. */
export interface CeleriacSource {
  /** Settings as given to `createApp` (camelCase or snake_case). */
  settings?: Record<string, unknown>;
  /** File the settings came from (JSON settings file or app module). */
  file?: string;
  /** Environment (process env merged with `--env-file`s). */
  env: Env;
  /** Where each environment variable was defined, when it came from a file. */
  envOrigin?: (name: string) => { file?: string; line?: number } | undefined;
  /** Task names and whether each has a schema (from a loaded app). */
  tasks?: { name: string; hasSchema: boolean }[];
  /** Run every Celeriac check, not only the URL policy (a Celeriac app is being audited). */
  full: boolean;
  /** Environment variables already judged as part of a Python configuration. */
  consumedEnv?: Set<string>;
  /** Receives the broker and backend found, for live probes. */
  endpoints?: ConfiguredEndpoint[];
}

function flag(v: unknown): boolean {
  return v === true || (typeof v === 'string' && /^(1|true|yes|on)$/i.test(v.trim()));
}

/** Read a URL setting from the environment like the app does, but report (rather than throw on) unsafe secret files. */
function urlFromEnv(env: Env, names: readonly string[], out: AuditFinding[], src: CeleriacSource): { value: string; name: string } | undefined {
  for (const name of names) {
    if (src.consumedEnv?.has(name)) continue;
    const fileVar = `${name}_FILE`;
    const path = env[fileVar];
    let raw: string | undefined;
    if (path) {
      const origin = src.envOrigin?.(fileVar);
      // A path from a scanned compose file or manifest names a file inside the container (a mounted
      // secret): absent here, it says nothing about the deployment, so the URL is left unjudged.
      if (origin?.file && !existsSync(path)) {
        out.push(finding('CEL-002', 'info', fileVar, `${fileVar} names ${path}, which is read where the process runs (not on this machine): the URL in it was not judged`,
          'run celeriac audit where the process runs (or with --env-file and the secret files) to judge the URL itself', origin.file, origin.line));
        continue;
      }
      const p = secretFileProblem(path);
      if (p) {
        out.push(finding('CEL-002', 'medium', fileVar, `the secret file ${path} ${p.problem}; a Celeriac worker refuses to read it`, p.fix, origin?.file, origin?.line));
        continue;
      }
      try {
        raw = readSecretFile(path, fileVar, { uid: auditUid() });
      } catch (err) {
        out.push(finding('CEL-002', 'medium', fileVar, (err as Error).message, 'fix the secret file', origin?.file, origin?.line));
        continue;
      }
    } else if (env[name]) {
      raw = env[name];
    }
    if (raw === undefined) continue;
    return { value: resolveRefs(raw, env, name, out, src), name: path ? fileVar : name };
  }
  return undefined;
}

/** Resolve `${file:…}`/`${env:…}` references; unreadable or unsafe ones are reported and replaced by a placeholder so the rest is still judged. */
function resolveRefs(value: string, env: Env, setting: string, out: AuditFinding[], src: CeleriacSource): string {
  return value.replace(/\$\{(file|env):([^}]*)\}/g, (ref, type: string, target: string) => {
    if (type === 'file') {
      const p = secretFileProblem(target);
      if (p) {
        const origin = src.envOrigin?.(setting);
        out.push(finding('CEL-002', 'medium', setting, `the secret file ${target} named in ${setting} ${p.problem}; a Celeriac worker refuses to read it`, p.fix, origin?.file ?? src.file, origin?.line));
        return ENV_PLACEHOLDER;
      }
    }
    try {
      return resolveSecretRefs(ref, env, { uid: auditUid() });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      out.push(finding('CEL-002', 'low', setting, err.message, 'make the secret reference resolvable where the worker runs', src.file));
      return ENV_PLACEHOLDER;
    }
  });
}

/** Static findings for a Celeriac configuration. */
export function auditCeleriac(src: CeleriacSource): AuditFinding[] {
  const out: AuditFinding[] = [];
  const env = src.env;
  let s: Record<string, unknown> = {};
  try {
    s = normalizeSettings(src.settings ?? {});
  } catch (err) {
    out.push(finding('CEL-002', 'low', 'settings', (err as Error).message, 'give each setting once', src.file));
  }
  const str = (k: string): string | undefined => (typeof s[k] === 'string' ? (s[k] as string) : undefined);

  // A password written into the settings themselves (a settings file or the app's code), not referenced.
  for (const k of ['brokerUrl', 'resultBackend']) {
    const v = str(k);
    if (v && urlPassword(v)) {
      out.push(finding('CEL-002', 'medium', k, `${k} in ${src.file ? basename(src.file) : 'the settings'} holds a password written into the configuration`,
        `reference it instead: \${file:/run/secrets/…} inside the URL, or ${k === 'brokerUrl' ? 'CELERIAC_BROKER_URL_FILE' : 'CELERIAC_RESULT_BACKEND_FILE'}; then rotate it`, src.file));
    }
  }
  const brokerEnv = str('brokerUrl') === undefined ? urlFromEnv(env, BROKER_URL_VARS, out, src) : undefined;
  const backendEnv = str('resultBackend') === undefined ? urlFromEnv(env, RESULT_BACKEND_VARS, out, src) : undefined;
  const brokerUrl = str('brokerUrl') !== undefined ? resolveRefs(str('brokerUrl')!, env, 'brokerUrl', out, src) : brokerEnv?.value;
  const resultBackend = str('resultBackend') !== undefined ? resolveRefs(str('resultBackend')!, env, 'resultBackend', out, src) : backendEnv?.value;
  if (!src.full && brokerUrl === undefined && resultBackend === undefined) return out;

  const unsafe: UnsafeOverrides = {};
  for (const opt of UNSAFE_OPTIONS) if (flag(s[opt]) || flag(env[unsafeEnvName(opt)])) unsafe[opt] = true;
  const taskSerializer = str('taskSerializer');
  const input: Omit<PolicyInput, 'mode'> = src.full
    ? {
      brokerUrl, resultBackend, brokerUseSsl: s.brokerUseSsl, redisBackendUseSsl: s.redisBackendUseSsl,
      taskSerializer: taskSerializer ?? 'json', resultSerializer: str('resultSerializer') ?? 'json',
      // The app's defaults, so the policy sees what the worker would see.
      acceptContent: Array.isArray(s.acceptContent) ? (s.acceptContent as string[]) : [taskSerializer ?? 'json'],
      resultAcceptContent: Array.isArray(s.resultAcceptContent) ? (s.resultAcceptContent as string[]) : ['json', 'msgpack'],
      unsafe,
    }
    : { brokerUrl, resultBackend, unsafe };
  // Remote control (CEL-022): the start-up policy's own rule, over the same settings.
  if (src.full) {
    try {
      input.control = controlPolicyInput(s, env);
    } catch (err) {
      out.push(finding('CEL-022', 'medium', 'workerControlAllow', (err as Error).message, 'correct the list; a Celeriac worker refuses to start with it', src.file));
    }
  }
  // SQLite databases: the same file checks the adapter hands to the policy.
  const fileChecks = { refusals: [] as Finding[], warnings: [] as Finding[] };
  for (const [url, role] of [[brokerUrl, 'broker'], [resultBackend, 'backend']] as const) {
    if (!url || urlSchemeSpec(url)?.kind !== 'sqlite') continue;
    try {
      const path = parseConnectionUrl(url).path;
      if (!path) continue;
      const r = sqliteFileChecks(path, role);
      fileChecks.refusals.push(...r.refusals);
      fileChecks.warnings.push(...r.warnings);
    } catch {
      // an unparseable URL is reported by the policy itself
    }
  }
  if (fileChecks.refusals.length + fileChecks.warnings.length > 0) input.fileChecks = fileChecks;
  if (brokerUrl) src.endpoints?.push({ role: 'broker', url: brokerUrl, useSsl: s.brokerUseSsl, setting: brokerEnv?.name ?? 'brokerUrl' });
  if (resultBackend) src.endpoints?.push({ role: 'backend', url: resultBackend, useSsl: s.redisBackendUseSsl, setting: backendEnv?.name ?? 'resultBackend' });
  const origin = (name: string | undefined) => (name ? src.envOrigin?.(name) : undefined);
  const bo = origin(brokerEnv?.name);
  const names: Record<string, string> = {};
  if (brokerEnv) names.brokerUrl = brokerEnv.name;
  if (backendEnv) names.resultBackend = backendEnv.name;
  for (const f of policyFindings(input, { file: src.file ?? bo?.file, names, label: src.full ? 'Celeriac settings' : 'environment' })) {
    const o = f.setting.startsWith('CELER') ? origin(f.setting.split(/[.\s]/)[0]) : undefined;
    if (o?.file) f.location = { file: o.file, ...(o.line !== undefined ? { line: o.line } : {}) };
    out.push(f);
  }
  // Security events (CEL-021) are warn/error lines: a level above warn drops authentication and TLS failures,
  // policy warnings and refused messages from the log an operator alerts on.
  const level = env.CELERIAC_LOG_LEVEL?.trim().toLowerCase();
  if (level && ['error', 'critical', 'fatal', 'silent'].includes(level)) {
    const o = origin('CELERIAC_LOG_LEVEL');
    out.push(finding('CEL-021', 'medium', 'CELERIAC_LOG_LEVEL', `CELERIAC_LOG_LEVEL=${level} hides warning-level security events (authentication and TLS failures, policy warnings, refused messages)`,
      'run workers at warning or below (-l warning) and alert on lines with a securityEvent field', o?.file ?? src.file, o?.line));
  }
  if (!src.full) return out;

  // Signing (CEL-007): Celery's auth serializer or a Celeriac key ring.
  const ring = (k: string, v: string): boolean => s[k] !== undefined || !!env[v] || !!env[`${v}_FILE`];
  const signed = taskSerializer === 'auth' || ring('securitySigningKeys', 'CELERIAC_SIGNING_KEYS') || ring('securityVerifyKeys', 'CELERIAC_VERIFY_KEYS');
  if (!signed) {
    out.push(finding('CEL-007', 'high', 'securitySigningKeys', 'messages are not signed: anyone who can write to the broker can forge tasks that the workers run (a Celeriac worker refuses this in production unless unsafeAcceptUnsigned is set)',
      'celeriac secrets generate ed25519, then set CELERIAC_SIGNING_KEYS_FILE (clients) and CELERIAC_VERIFY_KEYS_FILE (workers); or taskSerializer: "auth" with securityKey/securityCertificate', src.file));
  } else if (flag(s.unsafeAcceptUnsigned) || flag(env.CELERIAC_UNSAFE_ACCEPT_UNSIGNED)) {
    out.push(finding('CEL-007', 'high', 'unsafeAcceptUnsigned', 'unsafeAcceptUnsigned is set: workers run unsigned tasks, so signing protects nothing', 'remove unsafeAcceptUnsigned once every producer signs', src.file));
  }
  const keyPath = typeof s.securityKey === 'string' && !s.securityKey.includes('-----BEGIN') ? s.securityKey : env.CELERIAC_SECURITY_KEY_FILE ?? (env.CELERY_SECURITY_KEY && !env.CELERY_SECURITY_KEY.includes('-----BEGIN') ? env.CELERY_SECURITY_KEY : undefined);
  if (keyPath) {
    const p = secretFileProblem(keyPath);
    if (p) out.push(finding('CEL-007', 'high', 'securityKey', `the signing key file ${keyPath} ${p.problem}: another user of the host can sign tasks`, p.fix, src.file));
  }
  for (const v of ['CELERIAC_SIGNING_KEYS_FILE', 'CELERIAC_RESULT_KEYS_FILE', 'CELERIAC_SECURITY_KEY_PASSWORD_FILE']) {
    const path = env[v];
    const p = path ? secretFileProblem(path) : undefined;
    if (path && p) out.push(finding('CEL-002', 'medium', v, `the secret file ${path} ${p.problem}`, p.fix, origin(v)?.file, origin(v)?.line));
  }
  const storePath = typeof s.securityCertStore === 'string' ? s.securityCertStore : env.CELERIAC_SECURITY_CERT_STORE ?? env.CELERY_SECURITY_CERT_STORE;
  if (storePath) out.push(...certStoreFindings(storePath, typeof s.securityCertStore === 'string' ? 'securityCertStore' : env.CELERIAC_SECURITY_CERT_STORE ? 'CELERIAC_SECURITY_CERT_STORE' : 'CELERY_SECURITY_CERT_STORE', src.file));
  const certPath = typeof s.securityCertificate === 'string' ? s.securityCertificate : env.CELERIAC_SECURITY_CERTIFICATE_FILE ?? env.CELERY_SECURITY_CERTIFICATE;
  if (certPath) {
    const c = readCertificate(certPath);
    const f = c && certificateExpiryFinding(c, 'the signing certificate', 'securityCertificate', src.file);
    if (f) out.push(f);
  }

  // Results (CEL-016).
  const backendKind = urlSchemeSpec(resultBackend)?.kind;
  if (resultBackend && (backendKind === undefined || isNetworkKind(backendKind))) {
    if (!ring('resultEncryptionKeys', 'CELERIAC_RESULT_KEYS')) {
      out.push(finding('CEL-016', 'medium', 'resultEncryptionKeys', 'results are stored unencrypted: anyone who can read the backend reads every result', 'celeriac secrets generate aes-key, then set CELERIAC_RESULT_KEYS_FILE', src.file));
    }
    if (s.resultExpires === 0) {
      out.push(finding('CEL-016', 'medium', 'resultExpires', 'resultExpires is 0: results never expire', 'set resultExpires to the shortest time results are needed (default 86400)', src.file));
    }
  }
  // Limits (CEL-019, CEL-020) and schemas (CEL-018).
  if (s.taskTimeLimit === undefined) {
    out.push(finding('CEL-020', 'low', 'taskTimeLimit', 'no hard time limit: a stuck or hostile task holds a worker child forever', 'set taskTimeLimit (seconds); the supervisor kills a child that overruns it', src.file));
  }
  const bto = (s.brokerTransportOptions ?? {}) as Record<string, unknown>;
  if (!bto.maxQueueLength && !bto.max_queue_length) {
    out.push(finding('CEL-019', 'info', 'brokerTransportOptions.maxQueueLength', 'queues have no length cap: a flood of sends fills the broker\'s memory', 'set brokerTransportOptions.maxQueueLength (sends then fail with QueueFullError) and send rate limits', src.file));
  }
  const loose = (src.tasks ?? []).filter((t) => !t.hasSchema).map((t) => t.name);
  if (loose.length > 0) {
    out.push(finding('CEL-018', 'low', 'tasks', `tasks without argument schemas: ${loose.join(', ')}`, 'give each task a zod schema (options.schema.args / .kwargs); it is checked at send and before the task runs', src.file));
  }
  return out;
}
