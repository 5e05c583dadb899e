/**
 * A forged or unsigned `shutdown` published on Celery's control exchange
 * (`celery.pidbox`, fanout) to a worker mailbox protected by the control
 * guard is refused, counted and audited, and the worker keeps answering;
 * a `shutdown` signed with the deployment's key is obeyed. The mailbox is
 * driven here with `Broker.subscribe`/`sendReply` directly (the worker's
 * dispatcher lives in src/worker/control/), on the memory engine and on a
 * redis-server of its own.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { controlExchange, controlQueueName, replyExchange, type Broker } from '../../../src/core/broker.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { resetSecurityEvents, securityCounters } from '../../../src/observability/security-events.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { createControlGuard } from '../../../src/security/control-guard.ts';
import { createMemoryBroker, MemoryWorld } from '../../../src/transport/memory/broker.ts';
import { engine as redisEngine } from '../../../src/transport/redis/index.ts';
import { hasRedisServer, startRedisServer } from '../../helpers/redis-server.ts';
import { IN_CI } from '../../helpers/services.ts';

const ops = generateSigningKey('ed25519', 'ops-2026');
const attacker = generateSigningKey('ed25519', 'ops-2026'); // claims the operators' key id
const logger = createLogger({ level: 'silent' });

function pidbox(method: string, oid: string, ticket: string): WireMessage {
  const body = { method, arguments: {}, destination: null, pattern: null, matcher: null, reply_to: { exchange: 'reply.celery.pidbox', routing_key: oid }, ticket };
  return { headers: { clock: 1, expires: null }, properties: {}, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from(JSON.stringify(body)) };
}

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function scenario(workerBroker: Broker, opsBroker: Broker): Promise<void> {
  resetSecurityEvents();
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-ctl-it-'));
  chmodSync(dir, 0o700);
  const auditPath = join(dir, 'control-audit.jsonl');
  const node = `celery@guarded-${randomUUID().slice(0, 8)}`;
  const guard = createControlGuard({
    settings: resolveSettings({ workerControlAllow: ['@inspect', 'shutdown'], workerControlAuditLog: auditPath }),
    env: { CELERIAC_VERIFY_KEYS: ops.verifyingLine }, logger, hostname: node,
  });
  const opsGuard = createControlGuard({ settings: resolveSettings({ securitySigningKeys: ops.signingLine }), env: {}, logger });
  const attackerGuard = createControlGuard({ settings: resolveSettings({ securitySigningKeys: attacker.signingLine }), env: {}, logger });
  const obeyed: string[] = [];
  const sub = await workerBroker.subscribe(controlExchange(), { queue: controlQueueName(node) }, (d) => {
    void (async () => {
      const body = JSON.parse(d.message.body.toString('utf8')) as { method: string; ticket: string; reply_to: { routing_key: string } };
      const r = await guard.admit({ message: d.message, body }, body.method);
      if (!r.allowed) return;
      obeyed.push(`${body.method}:${body.ticket}`);
      const reply = { [node]: body.method === 'ping' ? { ok: 'pong' } : { ok: 'shutting down' } };
      // Audited before the answer leaves, as the worker's mailbox does (the test reads the log once the answer arrives).
      guard.audit({ kind: 'reply', method: body.method, who: r.who, ticket: body.ticket, outcome: 'answered', reply });
      await workerBroker.sendReply(replyExchange(), body.reply_to.routing_key, {
        headers: {}, properties: { correlation_id: body.ticket }, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from(JSON.stringify(reply)),
      });
    })();
  });
  const oid = randomUUID();
  const replies = await opsBroker.openReplyQueue(replyExchange(), oid);
  try {
    await new Promise((r) => setTimeout(r, 100)); // subscriptions bound (Redis PSUBSCRIBE)
    await opsBroker.broadcast(controlExchange(), '', pidbox('shutdown', oid, 'unsigned'));
    await opsBroker.broadcast(controlExchange(), '', attackerGuard.sign(pidbox('shutdown', oid, 'forged')));
    await until(() => (securityCounters().control_denied ?? 0) >= 2, 5000, 'two refusals');
    // The worker keeps serving: an unsigned ping (read-only) is answered.
    await opsBroker.broadcast(controlExchange(), '', pidbox('ping', oid, 'ping-1'));
    const pong = await replies.receive(5000);
    assert.ok(pong, 'the worker still answers');
    assert.deepEqual(JSON.parse(pong.message.body.toString('utf8')), { [node]: { ok: 'pong' } });
    // A shutdown signed with the deployment's key is obeyed.
    await opsBroker.broadcast(controlExchange(), '', opsGuard.sign(pidbox('shutdown', oid, 'signed')));
    const ack = await replies.receive(5000);
    assert.ok(ack, 'the signed shutdown is answered');
    assert.deepEqual(obeyed, ['ping:ping-1', 'shutdown:signed'], 'neither the unsigned nor the forged shutdown was obeyed');
    assert.equal(securityCounters().control_denied, 2);

    await guard.close();
    const lines = readFileSync(auditPath, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const commands = lines.filter((l) => l.kind === 'command');
    assert.equal(commands.length, 4, 'one line per command received');
    assert.deepEqual(commands.map((l) => [l.ticket, l.outcome, l.who]), [
      ['unsigned', 'refused', 'unsigned'], ['forged', 'refused', 'unverified'], ['ping-1', 'allowed', 'unsigned'], ['signed', 'allowed', 'ops-2026'],
    ]);
    assert.equal(lines.filter((l) => l.kind === 'reply').length, 2, 'one line per answer');
    for (const l of lines) assert.equal(l.hostname, node);
  } finally {
    await replies.close();
    await sub.close();
    await guard.close();
    await opsGuard.close();
    await attackerGuard.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('control guard on the control exchange', () => {
  it('memory engine: forged and unsigned shutdown refused, counted, audited; the worker keeps serving', async () => {
    const world = new MemoryWorld();
    const w = createMemoryBroker({ world });
    const o = createMemoryBroker({ world });
    try {
      await scenario(w, o);
    } finally {
      await w.close();
      await o.close();
    }
  });

  it('Redis engine (kombu layout): the same', async (t) => {
    if (!hasRedisServer()) {
      if (IN_CI) throw new Error('redis-server is required in CI');
      t.skip('redis-server not installed');
      return;
    }
    const server = await startRedisServer();
    const settings = resolveSettings({});
    const w = redisEngine.createBroker(server.url(0), { logger, settings });
    const o = redisEngine.createBroker(server.url(0), { logger, settings });
    try {
      await scenario(w, o);
    } finally {
      await w.close();
      await o.close();
      await server.stop();
    }
  });
});
