/**
 * Static checks of deployment files: docker-compose files, Kubernetes
 * manifests (parsed with the `yaml` package, with line numbers), `.env`
 * files, secret/key files on disk, and pinned Python dependency versions.
 */
import { basename } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseAllDocuments, YAMLMap, type Document, type Node as YamlNode } from 'yaml';
import { assessCredentials } from '../../config/weak-credentials.ts';
import { dashboardPolicy, type DashboardPolicyInput } from '../../config/dashboard-policy.ts';
import type { AuditFinding } from '../types.ts';
import { finding, isReferenceValue, isSecretName, parseDotenv, secretFileProblem, urlPassword } from './common.ts';

/** A `KEY=value` the deployment defines, with where. */
export interface EnvEntry {
  key: string;
  value: string;
  file: string;
  line: number;
}

type Lines = (node: unknown) => number | undefined;

function lineFn(lc: LineCounter): Lines {
  return (node) => {
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    return range ? lc.linePos(range[0]).line : undefined;
  };
}

/** Checks of one environment entry (any source): secret values written in plain text, default/weak passwords. */
function envEntryFindings(key: string, value: string, where: string, file: string, line: number | undefined, plainIsSecretStore: boolean): AuditFinding[] {
  const out: AuditFinding[] = [];
  const up = urlPassword(value);
  const literalSecret = (isSecretName(key) && !isReferenceValue(value)) || up !== undefined;
  if (literalSecret && !plainIsSecretStore) {
    out.push(finding('CEL-002', 'medium', key, `${where}: ${key} holds ${up ? 'a password inside a URL' : 'a secret'} as a plain value: it is visible to everyone who can read the file, \`docker inspect\` or the pod spec`,
      'use Docker secrets or a Kubernetes Secret (secretKeyRef or a mounted file) and a *_FILE variable or ${file:…} reference', file, line));
  }
  const pw = up?.password ?? (/(pass(word)?|pwd)$/i.test(key) && !isReferenceValue(value) ? value : undefined);
  if (pw !== undefined) {
    const a = assessCredentials(up?.username, pw);
    if (a && a.problem !== 'missing') {
      out.push(finding('CEL-011', 'medium', key, `${where}: ${key}: ${a.message}`, 'use a random password of at least 16 characters (celeriac secrets generate password)', file, line));
    }
  }
  return out;
}

function envPairs(env: unknown): [string, string, unknown][] {
  // compose: map or list of "K=V"; returns [key, value, node-for-line]
  const out: [string, string, unknown][] = [];
  if (isMap(env)) {
    for (const it of env.items) {
      const k = isScalar(it.key) ? String(it.key.value) : undefined;
      if (k === undefined) continue;
      const v = isScalar(it.value) ? (it.value.value === null ? '' : String(it.value.value)) : '';
      out.push([k, v, it.key]);
    }
  } else if (isSeq(env)) {
    for (const it of env.items) {
      if (!isScalar(it)) continue;
      const s = String(it.value);
      const eq = s.indexOf('=');
      out.push(eq < 0 ? [s, '', it] : [s.slice(0, eq), s.slice(eq + 1), it]);
    }
  }
  return out;
}

function scalarText(n: unknown): string {
  if (isScalar(n)) return String(n.value ?? '');
  if (isSeq(n)) return n.items.map(scalarText).join(' ');
  return '';
}

const FLOWER_AUTH = /--(basic[-_]auth|auth|oauth2?[-_]\w+)\b|FLOWER_(BASIC_AUTH|AUTH|OAUTH2)/i;
const BROKER_PORTS: Record<number, string> = { 6379: 'Redis', 5672: 'RabbitMQ (AMQP)', 5671: 'RabbitMQ (AMQPS)', 15672: 'RabbitMQ management' };

/** Published ports of a compose service: [host ip or undefined, host port, container port, node]. */
function composePorts(ports: unknown): { hostIp: string | undefined; hostPort: number | undefined; container: number; node: unknown }[] {
  const out: { hostIp: string | undefined; hostPort: number | undefined; container: number; node: unknown }[] = [];
  if (!isSeq(ports)) return out;
  for (const p of ports.items) {
    if (isScalar(p)) {
      const s = String(p.value);
      // [ip:]host:container[/proto] or just container
      const m = /^(?:(\[[^\]]+\]|\d+\.\d+\.\d+\.\d+):)?(?:(\d+(?:-\d+)?):)?(\d+)(?:-\d+)?(?:\/\w+)?$/.exec(s);
      if (!m) continue;
      if (!m[2] && !m[1]) out.push({ hostIp: undefined, hostPort: undefined, container: Number(m[3]), node: p });
      else out.push({ hostIp: m[1]?.replace(/[[\]]/g, ''), hostPort: m[2] ? Number(m[2].split('-')[0]) : undefined, container: Number(m[3]), node: p });
    } else if (isMap(p)) {
      const target = Number(scalarText(p.get('target', true)));
      if (!p.get('published')) continue;
      out.push({ hostIp: scalarText(p.get('host_ip', true)) || undefined, hostPort: Number(scalarText(p.get('published', true))) || undefined, container: target, node: p });
    }
  }
  return out;
}

/** Targets of a compose service's `volumes`, `configs` and `secrets` (short and long syntax). */
function mountTargets(body: { get: (k: string, keep?: boolean) => unknown }): string[] {
  const out: string[] = [];
  for (const key of ['volumes', 'configs', 'secrets']) {
    const list = body.get(key, true);
    if (!isSeq(list)) continue;
    for (const m of list.items) {
      if (isScalar(m)) {
        const parts = String(m.value).split(':');
        out.push(key === 'volumes' ? (parts[1] ?? parts[0]!) : `/run/secrets/${parts[0]}`);
      } else if (isMap(m)) out.push(scalarText(m.get('target', true)));
    }
  }
  return out;
}

/**
 * RabbitMQ configured from a mounted file (rabbitmq.conf, conf.d/*.conf,
 * advanced.config or a definitions file) or a config path variable: users
 * and passwords may be set there, where a compose file does not show them.
 */
function rabbitConfigMounted(body: { get: (k: string, keep?: boolean) => unknown }, env: ReadonlyMap<string, string>): boolean {
  if (env.has('RABBITMQ_CONFIG_FILE') || env.has('RABBITMQ_CONFIG_FILES')) return true;
  return mountTargets(body).some((t) => /^\/etc\/rabbitmq(\/(rabbitmq\.conf|conf\.d(\/.*)?|advanced\.config|definitions\.json))?\/?$/.test(t));
}

const isLoopbackIp = (ip: string | undefined): boolean => ip !== undefined && (ip.startsWith('127.') || ip === '::1' || ip === 'localhost');

/**
 * A mapping with its YAML merge keys (`<<: *defaults`, common in compose
 * files) applied: its own keys first, then those of the merged mappings,
 * so lookups see what compose sees. Nodes keep their ranges (lines point
 * at the anchor for merged keys).
 */
function withMerges(doc: Document, map: YAMLMap, depth = 0): YAMLMap {
  const isMerge = (k: unknown): boolean => isScalar(k) && k.value === '<<';
  if (depth > 8 || !map.items.some((i) => isMerge(i.key))) return map;
  const out = new YAMLMap();
  const own = map.items.filter((i) => !isMerge(i.key));
  out.items.push(...own);
  const has = (k: unknown): boolean => out.items.some((i) => isScalar(i.key) && isScalar(k) && i.key.value === k.value);
  for (const m of map.items.filter((i) => isMerge(i.key))) {
    for (const src of isSeq(m.value) ? m.value.items : [m.value]) {
      const node = isAlias(src) ? src.resolve(doc) : src;
      if (!isMap(node)) continue;
      for (const i of withMerges(doc, node, depth + 1).items) if (!has(i.key)) out.items.push(i);
    }
  }
  return out;
}

/** Audit a docker-compose document. */
/** What `celeriac dashboard` flags in a command line say about its start-up rules (files are not on this machine: no mode check). */
function dashboardFlags(command: string): DashboardPolicyInput {
  const flag = (name: string): string | undefined => new RegExp(`--${name}(?:=|\\s+)(\\S+)`).exec(command)?.[1];
  const has = (name: string): boolean => new RegExp(`--${name}\\b`).test(command);
  return {
    host: flag('bind'),
    tls: has('tls-cert') ? 'files' : has('tls-self-signed') ? 'self-signed' : undefined,
    users: has('users-file') ? { path: flag('users-file') } : undefined,
    oidc: has('oidc-issuer'),
    checkFile: false,
  };
}

function auditCompose(doc: Document, file: string, lines: Lines, envOut: EnvEntry[], dashboards: string[]): AuditFinding[] {
  const out: AuditFinding[] = [];
  const services = doc.get('services', true);
  if (!isMap(services)) return out;
  const name = basename(file);
  for (const it of services.items) {
    const svc = isScalar(it.key) ? String(it.key.value) : '?';
    const body = isMap(it.value) ? withMerges(doc, it.value) : it.value;
    if (!isMap(body)) continue;
    const image = scalarText(body.get('image', true)).toLowerCase();
    const command = `${scalarText(body.get('command', true))} ${scalarText(body.get('entrypoint', true))}`;
    const envNode = body.get('environment', true);
    const env = envPairs(envNode);
    const envMap = new Map(env.map(([k, v]) => [k, v]));
    const where = `${name} service ${svc}`;
    const svcLine = lines(it.key);
    for (const [k, v, node] of env) {
      out.push(...envEntryFindings(k, v, where, file, lines(node), false));
      envOut.push({ key: k, value: v, file, line: lines(node) ?? 0 });
    }
    const ports = composePorts(body.get('ports', true));
    const exposed = ports.filter((p) => !isLoopbackIp(p.hostIp));
    const isFlower = /flower/.test(image) || /\bflower\b/.test(command);
    const isRedis = /(^|\/)redis(:|$)|redis-stack|valkey/.test(image);
    const isRabbit = /rabbitmq/.test(image);
    const isWorker = /\b(celery\b.*\bworker|celeriac\b.*\bworker)/.test(command);

    if (isFlower) {
      // Published Flower ports are probed on this host with --live.
      for (const p of ports) if (p.hostPort) dashboards.push(`http://${p.hostIp && !p.hostIp.includes(':') && p.hostIp !== '0.0.0.0' ? p.hostIp : '127.0.0.1'}:${p.hostPort}/`);
      const authed = FLOWER_AUTH.test(command) || env.some(([k]) => /^FLOWER_(BASIC_AUTH|AUTH|OAUTH2_KEY)$/.test(k));
      if (!authed) {
        const port = exposed[0];
        out.push(finding('CEL-008', 'medium', `services.${svc}`, `${where} runs Flower without authentication${port ? ` and publishes port ${port.container} on every interface` : ''}: anyone who reaches it sees task arguments and results and can shut down workers`,
          'start Flower with --basic-auth=user:password from a secret or --auth with OAuth, and publish it on 127.0.0.1 behind a TLS proxy', file, svcLine));
      } else {
        out.push(finding('CEL-009', 'low', `services.${svc}`, `${where}: Flower has no roles, so every user who can log in can revoke tasks and shut down workers`, 'give Flower logins only to operators; use the Celeriac dashboard for read-only viewers', file, svcLine));
      }
      if (exposed.length > 0) {
        out.push(finding('CEL-010', 'medium', `services.${svc}.ports`, `${where} publishes Flower over plain HTTP on every interface`, 'publish it on 127.0.0.1 only and put a TLS reverse proxy (with HSTS) in front', file, lines(exposed[0]!.node)));
      }
    }
    if (/\bceleriac\b.*\bdashboard\b/.test(command) && !/\bdashboard\s+users\b/.test(command)) {
      // The same start-up rules the dashboard applies, on the flags this file gives it.
      for (const p of ports) if (p.hostPort) dashboards.push(`https://${p.hostIp && !p.hostIp.includes(':') && p.hostIp !== '0.0.0.0' ? p.hostIp : '127.0.0.1'}:${p.hostPort}/`);
      const report = dashboardPolicy(dashboardFlags(command));
      for (const f of report.refusals) out.push(finding(f.id, 'high', `services.${svc}.command`, `${where}: ${f.message}, so it will not start`, f.fix, file, svcLine));
      for (const f of report.warnings) out.push(finding(f.id, 'low', `services.${svc}.command`, `${where}: ${f.message}`, f.fix, file, svcLine));
    }
    if (isRedis) {
      const authed = /--requirepass|--aclfile|--user\b/.test(command) || envMap.has('REDIS_PASSWORD') || envMap.has('REDIS_PASSWORD_FILE');
      if (!authed || envMap.get('ALLOW_EMPTY_PASSWORD')?.toLowerCase() === 'yes') {
        out.push(finding('CEL-001', 'high', `services.${svc}`, `${where} runs Redis without a password or ACL users: anyone who reaches it can inject, read or delete tasks`,
          'start redis-server with an ACL file (celeriac secrets generate redis-acl) and disable the default user', file, svcLine));
      }
      if (/protected-mode\s+no/.test(command)) {
        out.push(finding('CEL-001', 'medium', `services.${svc}.command`, `${where} turns Redis protected-mode off`, 'remove --protected-mode no; rely on ACL users', file, svcLine));
      }
    }
    if (isRabbit) {
      const user = envMap.get('RABBITMQ_DEFAULT_USER');
      const pass = envMap.get('RABBITMQ_DEFAULT_PASS');
      // Users set in a mounted configuration file (default_user/default_pass, or definitions loaded at boot) are not visible here: no guest claim then.
      if (!user && !pass && !envMap.has('RABBITMQ_DEFAULT_PASS_FILE') && !rabbitConfigMounted(body, envMap)) {
        out.push(finding('CEL-011', 'medium', `services.${svc}.environment`, `${where}: RabbitMQ keeps its default guest/guest user`, 'set RABBITMQ_DEFAULT_USER and a random RABBITMQ_DEFAULT_PASS from a secret, or load definitions with your own users (celeriac secrets generate rabbitmq-user)', file, svcLine));
      } else if (user === 'guest' && pass === 'guest') {
        out.push(finding('CEL-011', 'medium', `services.${svc}.environment`, `${where}: RabbitMQ user guest with password guest`, 'use your own user and a random password', file, lines(envNode)));
      }
    }
    for (const p of exposed) {
      const what = BROKER_PORTS[p.container];
      if (what) {
        out.push(finding('CEL-001', 'medium', `services.${svc}.ports`, `${where} publishes ${what} port ${p.container} on every interface of the host`, `publish it as "127.0.0.1:${p.container}:${p.container}" or not at all (services reach it over the compose network)`, file, lines(p.node)));
      }
    }
    // Privileges (CEL-020).
    const privileged = body.get('privileged');
    const user = scalarText(body.get('user', true));
    if (privileged === true) {
      out.push(finding('CEL-020', 'high', `services.${svc}.privileged`, `${where} runs privileged: a compromised task owns the host`, 'remove privileged: true', file, lines(body.get('privileged', true))));
    }
    if (user === 'root' || user === '0' || user.startsWith('0:') || user.startsWith('root:')) {
      out.push(finding('CEL-020', 'high', `services.${svc}.user`, `${where} runs as root`, 'run as an unprivileged user (user: "1000:1000")', file, lines(body.get('user', true))));
    } else if (isWorker && user === '') {
      out.push(finding('CEL-020', 'low', `services.${svc}`, `${where} runs a worker as the image's default user, which is often root`, 'set user: to an unprivileged uid', file, svcLine));
    }
  }
  return out;
}

const WORKLOAD_KINDS = new Set(['Pod', 'Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job', 'CronJob']);

function podSpec(doc: Document, kind: string): { spec: unknown; path: string[] } | undefined {
  const path = kind === 'Pod' ? ['spec'] : kind === 'CronJob' ? ['spec', 'jobTemplate', 'spec', 'template', 'spec'] : ['spec', 'template', 'spec'];
  const spec = doc.getIn(path, true);
  return isMap(spec) ? { spec, path } : undefined;
}

/** Audit a Kubernetes manifest document. */
function auditKubernetes(doc: Document, file: string, lines: Lines, envOut: EnvEntry[]): AuditFinding[] {
  const out: AuditFinding[] = [];
  const kind = String(doc.get('kind') ?? '');
  const name = String(doc.getIn(['metadata', 'name']) ?? '?');
  const where = `${basename(file)} ${kind}/${name}`;
  if (kind === 'ConfigMap') {
    const data = doc.get('data', true);
    if (isMap(data)) {
      for (const it of data.items) {
        const k = isScalar(it.key) ? String(it.key.value) : '';
        const v = isScalar(it.value) ? String(it.value.value ?? '') : '';
        out.push(...envEntryFindings(k, v, `${where} (a ConfigMap, not a Secret)`, file, lines(it.key), false));
      }
    }
    return out;
  }
  if (kind === 'Secret') {
    // A Secret manifest with values, kept beside the deployment files, is a secret in a file (base64 is not encryption).
    for (const key of ['data', 'stringData']) {
      const data = doc.get(key, true);
      if (!isMap(data)) continue;
      const filled = data.items.filter((it) => isScalar(it.value) && String(it.value.value ?? '') !== '');
      if (filled.length > 0) {
        out.push(finding('CEL-002', 'medium', `Secret/${name}.${key}`, `${where} holds ${filled.length} secret value${filled.length === 1 ? '' : 's'} in the manifest (${key}; base64 is an encoding, not encryption): everyone who can read the repository has them`,
          'create the Secret out of band (kubectl create secret, an external secret store, or sealed/encrypted secrets) and keep only the reference in the repository', file, lines(data)));
      }
    }
    return out;
  }
  if (kind === 'Service') {
    const type = String(doc.getIn(['spec', 'type']) ?? 'ClusterIP');
    if (type === 'LoadBalancer' || type === 'NodePort') {
      const ports = doc.getIn(['spec', 'ports'], true);
      for (const p of isSeq(ports) ? ports.items : []) {
        if (!isMap(p)) continue;
        const port = Number(p.get('port'));
        const target = Number(p.get('targetPort') ?? port);
        if (port === 5555 || target === 5555) {
          out.push(finding('CEL-008', 'medium', `${kind}/${name}.spec`, `${where} exposes Flower (port 5555) outside the cluster as a ${type}`, 'keep Flower on a ClusterIP behind an authenticating ingress with TLS', file, lines(p)));
        }
        if (BROKER_PORTS[port] || BROKER_PORTS[target]) {
          out.push(finding('CEL-001', 'medium', `${kind}/${name}.spec`, `${where} exposes ${BROKER_PORTS[port] ?? BROKER_PORTS[target]} outside the cluster as a ${type}`, 'use a ClusterIP service and NetworkPolicies', file, lines(p)));
        }
      }
    }
    return out;
  }
  if (!WORKLOAD_KINDS.has(kind)) return out;
  const pod = podSpec(doc, kind);
  if (!pod) return out;
  const spec = pod.spec as ReturnType<Document['getIn']> & { get: (k: string, keep?: boolean) => unknown };
  const podSc = (spec as { get: (k: string, keep: boolean) => unknown }).get('securityContext', true);
  const podNonRoot = isMap(podSc) && podSc.get('runAsNonRoot') === true;
  const podUser = isMap(podSc) ? podSc.get('runAsUser') : undefined;
  for (const listName of ['initContainers', 'containers']) {
    const containers = (spec as { get: (k: string, keep: boolean) => unknown }).get(listName, true);
    if (!isSeq(containers)) continue;
    for (const c of containers.items) {
      if (!isMap(c)) continue;
      const cname = String(c.get('name') ?? '?');
      const cw = `${where} container ${cname}`;
      const image = String(c.get('image') ?? '').toLowerCase();
      const args = `${scalarText(c.get('command', true))} ${scalarText(c.get('args', true))}`;
      const env = c.get('env', true);
      const envNames: string[] = [];
      for (const e of isSeq(env) ? env.items : []) {
        if (!isMap(e)) continue;
        const k = String(e.get('name') ?? '');
        envNames.push(k);
        const v = e.get('value');
        if (v !== undefined && v !== null) {
          out.push(...envEntryFindings(k, String(v), cw, file, lines(e), false));
          envOut.push({ key: k, value: String(v), file, line: lines(e) ?? 0 });
        }
      }
      if (/flower/.test(image) || /\bflower\b/.test(args)) {
        if (!FLOWER_AUTH.test(args) && !envNames.some((k) => /^FLOWER_(BASIC_AUTH|AUTH|OAUTH2_KEY)$/.test(k))) {
          out.push(finding('CEL-008', 'medium', `${kind}/${name}.${cname}`, `${cw} runs Flower without authentication`, 'add --basic-auth from a Secret or --auth with OAuth; keep it behind an authenticating ingress with TLS', file, lines(c)));
        }
      }
      if (/\bceleriac\b.*\bdashboard\b/.test(args) && !/\bdashboard\s+users\b/.test(args)) {
        const report = dashboardPolicy(dashboardFlags(args));
        for (const f of report.refusals) out.push(finding(f.id, 'high', `${kind}/${name}.${cname}`, `${cw}: ${f.message}, so it will not start`, f.fix, file, lines(c)));
        for (const f of report.warnings) out.push(finding(f.id, 'low', `${kind}/${name}.${cname}`, `${cw}: ${f.message}`, f.fix, file, lines(c)));
      }
      const sc = c.get('securityContext', true);
      const priv = isMap(sc) && sc.get('privileged') === true;
      const user = isMap(sc) && sc.get('runAsUser') !== undefined ? sc.get('runAsUser') : podUser;
      const nonRoot = (isMap(sc) && sc.get('runAsNonRoot') === true) || podNonRoot;
      if (priv) out.push(finding('CEL-020', 'high', `${kind}/${name}.${cname}.securityContext`, `${cw} runs privileged`, 'remove privileged: true', file, lines(sc)));
      if (user === 0) out.push(finding('CEL-020', 'high', `${kind}/${name}.${cname}.securityContext`, `${cw} runs as root (runAsUser: 0)`, 'run as an unprivileged uid with runAsNonRoot: true', file, lines(sc ?? c)));
      else if (!nonRoot && user === undefined) {
        out.push(finding('CEL-020', 'low', `${kind}/${name}.${cname}`, `${cw} does not set runAsNonRoot: it runs as the image's default user, which is often root`, 'set securityContext.runAsNonRoot: true and runAsUser, allowPrivilegeEscalation: false', file, lines(c)));
      }
    }
  }
  return out;
}

/** Audit a YAML file (compose or Kubernetes); returns findings and the environment entries it defines. */
export function auditYamlFile(file: string, text: string, envOut: EnvEntry[], dashboards: string[] = []): AuditFinding[] {
  const lc = new LineCounter();
  let docs: Document[];
  try {
    docs = parseAllDocuments(text, { lineCounter: lc }) as Document[];
  } catch {
    return [];
  }
  if (!Array.isArray(docs)) return [];
  const lines = lineFn(lc);
  const out: AuditFinding[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) continue;
    if (isMap(doc.get('services', true))) out.push(...auditCompose(doc, file, lines, envOut, dashboards));
    else if (doc.get('apiVersion') && doc.get('kind')) out.push(...auditKubernetes(doc, file, lines, envOut));
  }
  return out;
}

/** Audit a `.env` file; returns findings and adds its entries to `envOut`. */
export function auditDotenvFile(file: string, text: string, envOut: EnvEntry[]): AuditFinding[] {
  const out: AuditFinding[] = [];
  const entries = parseDotenv(text);
  const hasSecret = entries.some((e) => (isSecretName(e.key) && !isReferenceValue(e.value)) || urlPassword(e.value));
  const p = hasSecret ? secretFileProblem(file) : undefined;
  if (p) {
    out.push(finding('CEL-002', 'medium', basename(file), `${basename(file)} holds secrets and ${p.problem}`, `${p.fix}; keep it out of version control and images (or use secret files)`, file));
  }
  for (const e of entries) {
    envOut.push({ key: e.key, value: e.value, file, line: e.line });
    // A .env file is a secret store of its own: only the strength of what it holds is judged here.
    out.push(...envEntryFindings(e.key, e.value, basename(file), file, e.line, true));
  }
  return out;
}

/** Private keys found on disk readable by every user (CEL-002). */
export function auditKeyFile(file: string, text: string): AuditFinding[] {
  const pem = /\.(pem|key|p8)$/i.test(file);
  // A PEM file is secret only when it holds a private key (certificates are public).
  if (pem && !/^\s*(-----BEGIN [^-]+-----[\s\S]*?-----END [^-]+-----\s*)*-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) return [];
  const p = secretFileProblem(file);
  if (!p) return [];
  return [finding('CEL-002', 'medium', basename(file), `${pem ? 'the private key' : 'the secret file'} ${file} ${p.problem}`, p.fix, file)];
}

/** Log files holding URLs with passwords (CEL-002): at most 5 findings per file, secrets never shown. */
export function auditLogFile(file: string, text: string): AuditFinding[] {
  const out: AuditFinding[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length && out.length < 5; i++) {
    for (const m of lines[i]!.matchAll(/\b[a-z][a-z0-9+.-]*:\/\/[^\s'"<>]+/gi)) {
      if (!urlPassword(m[0])) continue;
      out.push(finding('CEL-002', 'medium', basename(file), `${basename(file)} line ${i + 1} logs a URL with its password (${m[0].replace(/:\/\/([^/@:\s]*):[^/@\s]*@/, '://$1:***@')})`,
        'stop logging connection URLs unredacted (Celeriac redacts every log line), then rotate the password and purge the logs', file, i + 1));
      break;
    }
  }
  return out;
}

/** Known advisories for pinned versions. Only well-established ones; `fixed` is the first fixed release. */
const ADVISORIES: { pkg: string; below: string; id: 'CEL-013' | 'CEL-017'; severity: 'high' | 'medium'; text: string }[] = [
  { pkg: 'celery', below: '5.2.2', id: 'CEL-017', severity: 'high', text: 'CVE-2021-23727: a forged failure result can make the client import and run arbitrary code (exception types rebuilt by name); fixed in 5.2.2' },
  { pkg: 'celery', below: '5.2.2', id: 'CEL-013', severity: 'high', text: 'CVE-2021-23727 (stored command injection through failure results), fixed in 5.2.2' },
  { pkg: 'flower', below: '1.2.0', id: 'CEL-013', severity: 'high', text: 'CVE-2022-30034: OAuth authentication bypass, fixed in 1.2.0' },
  { pkg: 'redis', below: '4.4.4', id: 'CEL-013', severity: 'medium', text: 'CVE-2023-28858/CVE-2023-28859: a cancelled async command can leak another command\'s response, fixed in 4.4.4/4.5.4' },
];

function versionLess(a: string, b: string): boolean {
  const pa = a.split(/[.+-]/).map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split(/[.+-]/).map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x < y;
  }
  return false;
}

/** Pinned versions in requirements files, Pipfile.lock-like `name==x` lines and poetry.lock entries. */
export function auditPythonVersions(file: string, text: string): AuditFinding[] {
  const out: AuditFinding[] = [];
  const pins: { pkg: string; version: string; line: number }[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((l, i) => {
    const m = /^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*===?\s*([0-9][0-9A-Za-z.+-]*)/.exec(l);
    if (m) pins.push({ pkg: m[1]!.toLowerCase(), version: m[2]!, line: i + 1 });
    const n = /^name\s*=\s*"([^"]+)"/.exec(l);
    const v = n ? /^version\s*=\s*"([^"]+)"/.exec(lines[i + 1] ?? '') : null;
    if (n && v) pins.push({ pkg: n[1]!.toLowerCase(), version: v[1]!, line: i + 2 });
  });
  for (const p of pins) {
    for (const a of ADVISORIES) {
      if (a.pkg === p.pkg && versionLess(p.version, a.below)) {
        out.push(finding(a.id, a.severity, p.pkg, `${basename(file)} pins ${p.pkg} ${p.version}: ${a.text}`, `upgrade ${p.pkg} to ${a.below} or later (ideally the newest release)`, file, p.line));
      }
    }
  }
  return out;
}
