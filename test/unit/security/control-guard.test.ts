/**
 * The control guard's admission (signatures with the deployment's keys,
 * per-worker nonces, allow-lists for signed and unsigned commands) and its
 * audit lines.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { generateSigningKey, parseSigningKeyRing, SIGNATURE_HEADER, signMessage, type MessageSignatureHeader } from '../../../src/codec/signing/index.ts';
import { resolveSettings, type AppSettingsInput } from '../../../src/config/options.ts';
import { ConfigError } from '../../../src/errors.ts';
import { resetSecurityEvents, securityCounters } from '../../../src/observability/security-events.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { CONTROL_SIGNATURE_TTL_MS, createControlGuard, type ControlGuard, type ControlMessage } from '../../../src/security/control-guard.ts';
import { MemoryReplayStore } from '../../../src/transport/memory/replay-store.ts';
import { captureLogger } from '../../helpers/app-fixture.ts';
import { makeRsaSigner } from '../../integration/security-messages/helpers.ts';

const ed = generateSigningKey('ed25519', 'ops-2026-01');
const hmac = generateSigningKey('hmac-sha256', 'ops-hmac-1');
const stranger = generateSigningKey('ed25519', 'ops-2026-01'); // same key id, another key
const unknown = generateSigningKey('ed25519', 'someone-else');

/** A pidbox message as Celery's `broadcast` builds it. */
function controlWire(method: string, args: Record<string, unknown> = {}, ticket = `t-${Math.random()}`): WireMessage {
  const body = { method, arguments: args, destination: null, pattern: null, matcher: null, reply_to: { exchange: 'reply.celery.pidbox', routing_key: 'oid-1' }, ticket };
  return { headers: { clock: 1, expires: null }, properties: {}, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from(JSON.stringify(body)) };
}

function delivered(wire: WireMessage): ControlMessage {
  return { message: wire, body: JSON.parse(wire.body.toString('utf8')) as Record<string, unknown> };
}

function denied(): number {
  return securityCounters().control_denied ?? 0;
}

describe('control guard: admission', () => {
  const guards: ControlGuard[] = [];
  const make = (settings: AppSettingsInput, extra: { env?: Record<string, string>; now?: () => number; hostname?: string; replayStore?: MemoryReplayStore } = {}) => {
    const { logger, logs } = captureLogger();
    const g = createControlGuard({ settings: resolveSettings(settings), env: extra.env ?? {}, logger, hostname: extra.hostname ?? 'celery@w1', ...(extra.now ? { now: extra.now } : {}), ...(extra.replayStore ? { replayStore: extra.replayStore } : {}) });
    guards.push(g);
    return { g, logs };
  };
  beforeEach(() => resetSecurityEvents());
  afterEach(async () => {
    for (const g of guards.splice(0)) await g.close();
  });

  it('a signed, allowed command is admitted, with the key id as who', async () => {
    const ops = make({ securitySigningKeys: ed.signingLine }).g;
    const { g: worker, logs } = make({ workerControlAllow: ['@inspect', 'shutdown'] }, { env: { CELERIAC_VERIFY_KEYS: ed.verifyingLine } });
    assert.equal(ops.description.canSign, true);
    assert.equal(worker.description.verifying, true);
    const wire = ops.sign(controlWire('shutdown'));
    assert.equal((wire.headers[SIGNATURE_HEADER] as MessageSignatureHeader).kid, 'ops-2026-01');
    assert.deepEqual(await worker.admit(delivered(wire), 'shutdown'), { allowed: true, who: 'ops-2026-01' });
    const line = logs.find((l) => l.controlAudit);
    assert.ok(line, 'the command is audited (to the log when no file is set)');
    assert.equal((line.controlAudit as Record<string, unknown>).who, 'ops-2026-01');
    assert.equal(denied(), 0);
  });

  it('HMAC rings sign and verify control messages too', async () => {
    const { g } = make({ securitySigningKeys: hmac.signingLine, workerControlAllow: ['revoke'] });
    assert.deepEqual(await g.admit(delivered(g.sign(controlWire('revoke', { task_id: 'x' }))), 'revoke'), { allowed: true, who: 'ops-hmac-1' });
  });

  it('an unsigned destructive command is refused and counted where signatures are verified', async () => {
    const { g, logs } = make({ workerControlAllow: ['@inspect', 'shutdown'] }, { env: { CELERIAC_VERIFY_KEYS: ed.verifyingLine } });
    const r = await g.admit(delivered(controlWire('shutdown')), 'shutdown');
    assert.equal(r.allowed, false);
    assert.match((r as { reason: string }).reason, /unsigned shutdown refused/);
    assert.equal(denied(), 1);
    const ev = logs.find((l) => l.securityEvent === 'control_denied');
    assert.ok(ev, 'the refusal is logged as a security event');
    const audit = logs.find((l) => l.controlAudit);
    assert.equal((audit!.controlAudit as Record<string, unknown>).outcome, 'refused');
  });

  it('a tampered body, a wrong key and an unknown key id are refused', async () => {
    const { g } = make({ workerControlAllow: ['rate_limit'] }, { env: { CELERIAC_VERIFY_KEYS: ed.verifyingLine } });
    const signed = make({ securitySigningKeys: ed.signingLine }).g.sign(controlWire('rate_limit', { task_name: 'a', rate_limit: '1/m' }));
    const tampered: WireMessage = { ...signed, body: Buffer.from(signed.body.toString('utf8').replace('1/m', '0/s')) };
    const r1 = await g.admit(delivered(tampered), 'rate_limit');
    assert.equal(r1.allowed, false);
    assert.match((r1 as { reason: string }).reason, /does not verify/);
    const forged = make({ securitySigningKeys: stranger.signingLine }).g.sign(controlWire('rate_limit'));
    assert.equal((await g.admit(delivered(forged), 'rate_limit')).allowed, false);
    const other = make({ securitySigningKeys: unknown.signingLine }).g.sign(controlWire('rate_limit'));
    const r3 = await g.admit(delivered(other), 'rate_limit');
    assert.match((r3 as { reason: string }).reason, /no ed25519 key/);
    assert.equal(denied(), 3);
  });

  it('a bad signature is refused even for a command allowed unsigned', async () => {
    const { g } = make({}, { env: { CELERIAC_VERIFY_KEYS: ed.verifyingLine } });
    const forged = make({ securitySigningKeys: stranger.signingLine }).g.sign(controlWire('ping'));
    assert.equal((await g.admit(delivered(forged), 'ping')).allowed, false);
    assert.equal((await g.admit(delivered(controlWire('ping')), 'ping')).allowed, true, 'the same command unsigned is allowed by default');
  });

  it('an expired signature and one living longer than a control message may are refused', async () => {
    let t = Date.now();
    const { g } = make({ securitySigningKeys: ed.signingLine, workerControlAllow: ['shutdown'] }, { now: () => t });
    const wire = g.sign(controlWire('shutdown'));
    t += CONTROL_SIGNATURE_TTL_MS + 31_000; // past exp + the default clock skew
    const r = await g.admit(delivered(wire), 'shutdown');
    assert.match((r as { reason: string }).reason, /expired/);
    // A task-style signature valid for an hour is not a control signature.
    const hour = signMessage(controlWire('shutdown'), parseSigningKeyRing(ed.signingLine).current(), { ttlMs: 3_600_000 });
    t = Date.now();
    const r2 = await g.admit(delivered(hour), 'shutdown');
    assert.match((r2 as { reason: string }).reason, /longer than a control message may live/);
  });

  it('X.509 (Celery auth keys): signed with the RSA key, verified with the certificate store; who is the signer id', async () => {
    const rsa = await makeRsaSigner('celeriac-ops');
    try {
      const ops = make({ securityKey: rsa.keyPath, securityCertificate: rsa.certPath, securityCertStore: rsa.storeDir }).g;
      const worker = make({ securityCertStore: rsa.storeDir, workerControlAllow: ['shutdown'] }).g;
      const wire = ops.sign(controlWire('shutdown'));
      assert.equal((wire.headers[SIGNATURE_HEADER] as MessageSignatureHeader).alg, 'rsa-pss-sha256');
      assert.deepEqual(await worker.admit(delivered(wire), 'shutdown'), { allowed: true, who: rsa.signerId });
      assert.equal((await worker.admit(delivered(controlWire('shutdown')), 'shutdown')).allowed, false, 'unsigned shutdown refused');
    } finally {
      rsa.cleanup();
    }
  });

  it('a signed message replayed to the same worker is refused; another worker takes its own copy once', async () => {
    const ops = make({ securitySigningKeys: ed.signingLine }).g;
    const w1 = make({ workerControlAllow: ['revoke'] }, { env: { CELERIAC_VERIFY_KEYS: ed.verifyingLine }, hostname: 'celery@w1' }).g;
    const w2 = make({ workerControlAllow: ['revoke'] }, { env: { CELERIAC_VERIFY_KEYS: ed.verifyingLine }, hostname: 'celery@w2' }).g;
    const wire = ops.sign(controlWire('revoke', { task_id: 'abc' }));
    assert.equal((await w1.admit(delivered(wire), 'revoke')).allowed, true);
    assert.equal((await w2.admit(delivered(wire), 'revoke')).allowed, true, 'a broadcast reaches every worker');
    const again = await w1.admit(delivered(wire), 'revoke');
    assert.match((again as { reason: string }).reason, /replayed/);
    assert.equal((await w2.admit(delivered(wire), 'revoke')).allowed, false);
  });

  it('with a replay store, a restarted worker still refuses a replay; other workers are not affected', async () => {
    const store = new MemoryReplayStore();
    const ops = make({ securitySigningKeys: ed.signingLine }).g;
    const wire = ops.sign(controlWire('revoke'));
    const env = { CELERIAC_VERIFY_KEYS: ed.verifyingLine };
    const first = make({ workerControlAllow: ['revoke'] }, { env, replayStore: store, hostname: 'celery@w1' }).g;
    assert.equal((await first.admit(delivered(wire), 'revoke')).allowed, true);
    await first.close();
    const restarted = make({ workerControlAllow: ['revoke'] }, { env, replayStore: store, hostname: 'celery@w1' }).g;
    assert.equal((await restarted.admit(delivered(wire), 'revoke')).allowed, false);
    const other = make({ workerControlAllow: ['revoke'] }, { env, replayStore: store, hostname: 'celery@w2' }).g;
    assert.equal((await other.admit(delivered(wire), 'revoke')).allowed, true);
  });

  it('a command outside the allow-list is refused even when signed; destructive commands are off by default', async () => {
    const { g } = make({ securitySigningKeys: ed.signingLine });
    for (const m of ['shutdown', 'revoke', 'rate_limit', 'pool_grow', 'add_consumer', 'enable_events', 'my_custom_command']) {
      const r = await g.admit(delivered(g.sign(controlWire(m))), m);
      assert.equal(r.allowed, false, m);
      assert.match((r as { reason: string }).reason, /not allowed on this worker/);
    }
    for (const m of ['ping', 'stats', 'active', 'registered', 'active_queues', 'query_task', 'conf']) {
      assert.equal((await g.admit(delivered(g.sign(controlWire(m))), m)).allowed, true, m);
    }
  });

  it('unsigned inspect (Python celery inspect) is allowed by default with signing on, and refused when workerControlAllowUnsigned is empty', async () => {
    const env = { CELERIAC_VERIFY_KEYS: ed.verifyingLine };
    const open = make({}, { env }).g;
    assert.deepEqual(await open.admit(delivered(controlWire('ping')), 'ping'), { allowed: true, who: 'unsigned' });
    const strict = make({ workerControlAllowUnsigned: [] }, { env }).g;
    assert.equal((await strict.admit(delivered(controlWire('ping')), 'ping')).allowed, false);
    const viaEnv = make({}, { env: { ...env, CELERIAC_WORKER_CONTROL_ALLOW_UNSIGNED: 'ping' } }).g;
    assert.equal((await viaEnv.admit(delivered(controlWire('ping')), 'ping')).allowed, true);
    assert.equal((await viaEnv.admit(delivered(controlWire('stats')), 'stats')).allowed, false);
  });

  it('where nothing verifies (development without keys), allowed commands pass unsigned and the allow-list still applies', async () => {
    const { g } = make({});
    assert.equal(g.description.verifying, false);
    assert.equal((await g.admit(delivered(controlWire('stats')), 'stats')).allowed, true);
    assert.equal((await g.admit(delivered(controlWire('shutdown')), 'shutdown')).allowed, false);
    assert.equal(g.sign(controlWire('ping')).headers[SIGNATURE_HEADER], undefined, 'no key: sign leaves the message unsigned');
  });

  it('a method that is not a command name is refused', async () => {
    const { g } = make({});
    assert.equal((await g.admit(delivered(controlWire('x')), '__proto__; rm -rf')).allowed, false);
    assert.equal((await g.admit(delivered(controlWire('x')), '')).allowed, false);
  });

  it('a bad allow-list is a ConfigError', () => {
    const { logger } = captureLogger();
    assert.throws(() => createControlGuard({ settings: resolveSettings({ workerControlAllow: ['ping', 'rm -rf'] }), env: {}, logger }), ConfigError);
    assert.throws(() => createControlGuard({ settings: resolveSettings({}), env: { CELERIAC_WORKER_CONTROL_ALLOW: '@everything' }, logger }), ConfigError);
  });
});

describe('control guard: audit log file', () => {
  let dir: string;
  beforeEach(() => {
    resetSecurityEvents();
    dir = mkdtempSync(join(tmpdir(), 'celeriac-ctl-audit-'));
    chmodSync(dir, 0o700);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const guard = (path: string, settings: AppSettingsInput = {}) => {
    const { logger, logs } = captureLogger();
    return { g: createControlGuard({ settings: resolveSettings({ workerControlAuditLog: path, ...settings }), env: {}, logger, hostname: 'celery@audit' }), logs };
  };
  const lines = (path: string) => readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

  it('one line per command and per answer, mode 0600, arguments redacted and bounded', async () => {
    const path = join(dir, 'logs', 'control.jsonl');
    const { g } = guard(path, { workerControlAllow: ['@inspect', 'rate_limit'] });
    const ok = await g.admit(delivered(controlWire('query_task', { ids: ['a'], password: 'hunter2-very-secret' }, 'tk-1')), 'query_task');
    assert.equal(ok.allowed, true);
    g.audit({ kind: 'reply', method: 'query_task', who: 'unsigned', ticket: 'tk-1', outcome: 'answered', reply: { ok: 'x'.repeat(10_000) } });
    const refused = await g.admit(delivered(controlWire('shutdown', {}, 'tk-2')), 'shutdown');
    assert.equal(refused.allowed, false);
    await g.close();
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const got = lines(path);
    assert.equal(got.length, 3);
    assert.deepEqual(got.map((l) => [l.kind, l.method, l.outcome, l.ticket]), [
      ['command', 'query_task', 'allowed', 'tk-1'], ['reply', 'query_task', 'answered', 'tk-1'], ['command', 'shutdown', 'refused', 'tk-2'],
    ]);
    for (const l of got) {
      assert.equal(l.hostname, 'celery@audit');
      assert.equal(l.who, 'unsigned');
      assert.ok(typeof l.time === 'string' && !Number.isNaN(Date.parse(l.time)));
    }
    assert.ok(!readFileSync(path, 'utf8').includes('hunter2'), 'a secret-named argument is masked');
    assert.equal((got[0]!.arguments as Record<string, unknown>).password, '***');
    assert.ok(typeof got[1]!.reply === 'string' && (got[1]!.reply as string).length < 2100, 'a long reply is cut');
    assert.match(String(got[2]!.reason), /not allowed/);
  });

  it('appends to an existing log and never truncates it', async () => {
    const path = join(dir, 'control.jsonl');
    writeFileSync(path, '{"old":1}\n', { mode: 0o600 });
    for (let i = 0; i < 2; i++) {
      const { g } = guard(path);
      await g.admit(delivered(controlWire('ping')), 'ping');
      await g.close();
    }
    const got = lines(path);
    assert.equal(got.length, 3);
    assert.deepEqual(got[0], { old: 1 });
  });

  it('refuses a log readable by others, a symbolic link, and a directory others may write', () => {
    const open = join(dir, 'open.jsonl');
    writeFileSync(open, '', { mode: 0o644 });
    chmodSync(open, 0o644);
    assert.throws(() => guard(open), (err: unknown) => err instanceof ConfigError && /mode 644/.test(err.message));
    const target = join(dir, 'target.jsonl');
    writeFileSync(target, '', { mode: 0o600 });
    const link = join(dir, 'link.jsonl');
    symlinkSync(target, link);
    assert.throws(() => guard(link), (err: unknown) => err instanceof ConfigError && /not a regular file/.test(err.message));
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    assert.throws(() => guard(join(shared, 'control.jsonl')), (err: unknown) => err instanceof ConfigError && /every user may write/.test(err.message));
  });
});
