/**
 * Deployment files: docker-compose (plain secrets, published broker and
 * Flower ports, Flower without auth, Redis without a password, RabbitMQ
 * defaults, root/privileged), Kubernetes (env values vs secretKeyRef,
 * privileged/root, Flower exposed), `.env` files, key-file permissions and
 * pinned vulnerable versions — each with its file and line.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAudit, type AuditReport } from '../../../src/audit/index.ts';
import { auditYamlFile, type EnvEntry } from '../../../src/audit/static/deploy.ts';
import { fakePrivateKeyPem } from '../../helpers/pki.ts';

const COMPOSE = `services:
  redis:
    image: redis:7
    command: redis-server --protected-mode no
    ports:
      - "6379:6379"
  rabbit:
    image: rabbitmq:3-management
  flower:
    image: mher/flower:2.0
    command: celery --broker=redis://redis:6379/0 flower
    ports: ["5555:5555"]
  worker:
    image: myapp
    command: celery -A proj worker
    privileged: true
    environment:
      CELERY_BROKER_URL: redis://:Sup3rSecretButPlain@redis:6379/0
      API_TOKEN: abc123
      DB_PASSWORD_FILE: /run/secrets/db
  safe-flower:
    image: mher/flower
    command: ["celery", "flower", "--basic-auth=\${FLOWER_USER}:\${FLOWER_PASSWORD}"]
    ports: ["127.0.0.1:5556:5555"]
    user: "1000"
`;

const K8S = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
spec:
  template:
    spec:
      containers:
        - name: worker
          image: myapp
          args: ["celery", "-A", "proj", "worker"]
          env:
            - name: REDIS_PASSWORD
              value: "plain-in-the-manifest"
            - name: CELERY_RESULT_PASSWORD
              valueFrom:
                secretKeyRef: { name: redis, key: password }
          securityContext:
            privileged: true
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: flower
spec:
  template:
    spec:
      securityContext:
        runAsNonRoot: true
      containers:
        - name: flower
          image: mher/flower
---
apiVersion: v1
kind: Secret
metadata:
  name: redis
stringData:
  password: in-the-repository
---
apiVersion: v1
kind: Service
metadata:
  name: flower
spec:
  type: LoadBalancer
  ports:
    - port: 5555
`;

describe('deployment files', () => {
  let dir: string;
  let report: AuditReport;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'celeriac-audit-deploy-'));
    writeFileSync(join(dir, 'docker-compose.yml'), COMPOSE);
    writeFileSync(join(dir, 'k8s.yaml'), K8S);
    writeFileSync(join(dir, '.env'), 'REDIS_PASSWORD=redis\nCELERY_BROKER_URL="rediss://app:${REDIS_PASSWORD}@redis:6379/0"\n');
    chmodSync(join(dir, '.env'), 0o644);
    writeFileSync(join(dir, 'requirements.txt'), 'celery[redis]==5.2.1\nflower==1.0.0\nredis==4.6.0\n');
    writeFileSync(join(dir, 'server-key.pem'), fakePrivateKeyPem('EC'));
    chmodSync(join(dir, 'server-key.pem'), 0o604);
    writeFileSync(join(dir, 'ok-key.pem'), fakePrivateKeyPem('EC'));
    chmodSync(join(dir, 'ok-key.pem'), 0o600);
    writeFileSync(join(dir, 'worker.log'), '[INFO] Connected to redis://:LeakedInTheLog99@redis:6379/0\n[INFO] ready\n');
    report = await runAudit({ paths: [dir] });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const has = (id: string, setting: RegExp | string, file?: string, line?: number) => {
    const f = report.findings.find((x) => x.id === id && (typeof setting === 'string' ? x.setting === setting : setting.test(x.setting)) && (!file || x.location.file?.endsWith(file)) && (line === undefined || x.location.line === line));
    assert.ok(f, `expected ${id} ${setting} ${file ?? ''}:${line ?? ''} in ${JSON.stringify(report.findings.map((x) => [x.id, x.setting, x.location.file?.split('/').pop(), x.location.line]))}`);
    return f;
  };

  it('docker-compose: Redis without password and protected-mode off, published ports, Flower without auth, RabbitMQ guest, plain secrets, privileged', () => {
    has('CEL-001', 'services.redis', 'docker-compose.yml', 2);
    has('CEL-001', 'services.redis.command', 'docker-compose.yml');
    has('CEL-001', 'services.redis.ports', 'docker-compose.yml', 6);
    has('CEL-011', 'services.rabbit.environment', 'docker-compose.yml', 7);
    has('CEL-008', 'services.flower', 'docker-compose.yml', 9);
    has('CEL-010', 'services.flower.ports', 'docker-compose.yml', 12);
    has('CEL-002', 'CELERY_BROKER_URL', 'docker-compose.yml', 18);
    has('CEL-002', 'API_TOKEN', 'docker-compose.yml', 19);
    has('CEL-020', 'services.worker.privileged', 'docker-compose.yml', 16);
    assert.ok(!report.findings.some((f) => f.setting === 'DB_PASSWORD_FILE'), 'a *_FILE path is not a secret');
    assert.ok(!report.findings.some((f) => f.setting.startsWith('services.safe-flower') && f.id === 'CEL-008'), 'Flower with --basic-auth is authenticated');
    has('CEL-009', 'services.safe-flower');
    const secretShown = report.findings.some((f) => /Sup3rSecretButPlain|abc123/.test(`${f.message} ${f.fix}`));
    assert.equal(secretShown, false, 'findings never contain the secret');
  });

  it('Kubernetes: plain env values vs secretKeyRef, privileged, runAsNonRoot, Flower exposed by a LoadBalancer', () => {
    has('CEL-002', 'REDIS_PASSWORD', 'k8s.yaml', 13);
    assert.ok(!report.findings.some((f) => f.setting === 'CELERY_RESULT_PASSWORD'), 'secretKeyRef is fine');
    has('CEL-020', 'Deployment/worker.worker.securityContext', 'k8s.yaml');
    has('CEL-008', 'Deployment/flower.flower', 'k8s.yaml');
    has('CEL-008', 'Service/flower.spec', 'k8s.yaml');
    has('CEL-002', 'Secret/redis.stringData', 'k8s.yaml', 39);
    assert.ok(!report.findings.some((f) => f.id === 'CEL-020' && f.setting.startsWith('Deployment/flower')), 'runAsNonRoot at pod level counts');
  });

  it('.env files: readable by everyone while holding secrets; weak passwords; references resolved for the URL policy', () => {
    has('CEL-002', '.env', '.env');
    has('CEL-011', 'REDIS_PASSWORD', '.env', 1);
    // CELERY_BROKER_URL uses ${REDIS_PASSWORD}: a reference, not a literal secret.
    assert.ok(!report.findings.some((f) => f.id === 'CEL-002' && f.setting === 'CELERY_BROKER_URL' && f.location.file?.endsWith('.env')));
  });

  it('key files readable by others, pinned vulnerable versions', () => {
    has('CEL-002', 'server-key.pem', 'server-key.pem');
    assert.ok(!report.findings.some((f) => f.setting === 'ok-key.pem'));
    has('CEL-017', 'celery', 'requirements.txt', 1);
    has('CEL-013', 'celery', 'requirements.txt', 1);
    has('CEL-013', 'flower', 'requirements.txt', 2);
    assert.ok(!report.findings.some((f) => f.setting === 'redis' && f.id === 'CEL-013'), 'redis 4.6.0 is fixed');
  });

  it('log files that recorded a URL with its password', () => {
    const f = has('CEL-002', 'worker.log', 'worker.log', 1);
    assert.doesNotMatch(f.message, /LeakedInTheLog99/);
    assert.match(f.message, /redis:\/\/:\*\*\*@redis/);
  });

  it('collects compose environment and published Flower ports for the live probes', () => {
    const env: EnvEntry[] = [];
    const dashboards: string[] = [];
    auditYamlFile('/x/docker-compose.yml', COMPOSE, env, dashboards);
    assert.deepEqual(dashboards, ['http://127.0.0.1:5555/', 'http://127.0.0.1:5556/']);
    assert.ok(env.some((e) => e.key === 'CELERY_BROKER_URL' && e.line === 18));
  });
});
