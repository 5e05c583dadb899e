/**
 * celeriac beat on the control plane (src/beat/control.ts): two beat
 * instances over the memory engine answer `app.control` as nodes of their
 * own — ping, stats with a beat section, report, beat_status with the
 * entries and the leader, conf with Celery's names — refuse worker commands
 * with an error reply and answer unknown ones as kombu does; behind the
 * control guard, a forged or (where required) unsigned message gets no
 * answer, as from a worker.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { createBeat, type Beat } from '../../../src/beat/beat.ts';
import { beatCommands, beatNodeName, startBeatControl, type BeatStatusReply } from '../../../src/beat/control.ts';
import { createControl, type Control } from '../../../src/client/control.ts';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { resolveSettings, type AppSettingsInput } from '../../../src/config/options.ts';
import { loadSecuritySettings } from '../../../src/config/security-settings.ts';
import type { ControlServer } from '../../../src/control/mailbox.ts';
import type { BeatStore } from '../../../src/core/beat-store.ts';
import type { Broker } from '../../../src/core/broker.ts';
import { createControlGuard, createControlSigner } from '../../../src/security/control-guard.ts';
import { createMemoryBeatStore } from '../../../src/transport/memory/beat-store.ts';
import { createMemoryBroker, MemoryWorld } from '../../../src/transport/memory/broker.ts';

const logger = pino({ level: 'silent' });
const ENV = { CELERIAC_ENV: 'development' };

const fakeApp = { logger, sendTask: async () => ({}) as never };

interface Instance {
  beat: Beat;
  store: BeatStore;
  node: string;
  server: ControlServer;
}

describe('beat control commands', () => {
  const world = new MemoryWorld();
  const brokers: Broker[] = [];
  const mk = (): Broker => {
    const b = createMemoryBroker({ world });
    brokers.push(b);
    return b;
  };
  const namespace = `bc-${randomBytes(3).toString('hex')}`;
  const schedule = { every: { task: 'tasks.tick', schedule: 0.2 }, nightly: { task: 'tasks.report', schedule: { minute: '0', hour: '3' } } };
  const instances: Instance[] = [];
  let control: Control;

  async function start(holder: string, settings: AppSettingsInput = {}): Promise<Instance> {
    const store = createMemoryBeatStore(namespace);
    const beat = createBeat({ app: fakeApp, schedule, store, namespace, leaseMs: 600, graceMs: 5000, holder, logger });
    const node = `beat.${namespace}.${holder}@test`;
    const resolved = resolveSettings(settings);
    const guard = createControlGuard({ settings: resolved, env: ENV, logger, hostname: node });
    const server = await startBeatControl({ beat, store, namespace, nodeName: node, settings: resolved, broker: mk(), guard, logger });
    const i = { beat, store, node, server };
    instances.push(i);
    return i;
  }

  before(async () => {
    control = createControl({ broker: async () => mk() });
    // Every command allowed (no key: unsigned ones too), so the beat's own answer to each is seen.
    await start('one', { brokerUrl: 'redis://:Zq8#beatSecretPw7@127.0.0.1:6379/0', taskAcksLate: true, taskMaxRedeliveries: 5, workerControlAllow: ['@all', 'no_such_thing'] });
    await sleep(50);
    await start('two');
    // the first sends its first tick and records it
    await sleep(500);
  });
  after(async () => {
    for (const i of instances) {
      await i.server.close();
      await i.beat.stop();
    }
    await Promise.allSettled(brokers.map((b) => b.close()));
  });

  it('the default node name is beat.<name>.<pid>@<host>, safe for any schedule name', () => {
    assert.equal(beatNodeName('nightly', 'h1', 42), 'beat.nightly.42@h1');
    assert.equal(beatNodeName('a@b', 'h1', 42), 'beat.a_b.42@h1');
  });

  it('ping: both instances answer pong as their own nodes', async () => {
    const replies = await control.inspect({ timeoutMs: 500 }).ping();
    assert.deepEqual(replies, { [instances[0]!.node]: { ok: 'pong' }, [instances[1]!.node]: { ok: 'pong' } });
  });

  it('stats: a beat section with holder, leader/standby, fencing token, entries and the lease', async () => {
    const stats = await control.inspect({ timeoutMs: 500 }).stats();
    const [one, two] = instances;
    const a = stats[one!.node] as { pid: number; beat: Record<string, unknown>; celeriac: { role: string } };
    const b = stats[two!.node] as typeof a;
    assert.equal(a.pid, process.pid);
    assert.equal(a.celeriac.role, 'beat');
    assert.equal(a.beat.role, 'leader', 'the first instance leads');
    assert.equal(b.beat.role, 'standby');
    assert.equal(a.beat.holder, 'one');
    assert.equal(typeof a.beat.fencing_token, 'number');
    assert.equal(a.beat.fencing_token, one!.beat.fencingToken);
    assert.equal(b.beat.fencing_token, null);
    assert.equal(a.beat.entries, 2);
    const lease = b.beat.leader as { holder: string; token: number; expires_at: string };
    assert.equal(lease.holder, 'one', 'the standby reports the leader from the store');
    assert.equal(lease.token, one!.beat.fencingToken);
    assert.ok(Date.parse(lease.expires_at) > Date.now() - 1000);
  });

  it('beat_status: the entries (task, schedule, last and next tick, task id, confirmed, totals) and the leader', async () => {
    const replies = await control.inspect({ timeoutMs: 500 }).call('beat_status');
    assert.deepEqual(Object.keys(replies).sort(), instances.map((i) => i.node).sort());
    const r = replies[instances[1]!.node] as BeatStatusReply;
    assert.equal(r.role, 'standby');
    assert.equal(r.namespace, namespace);
    assert.equal(r.leader?.holder, 'one');
    const every = r.entries.find((e) => e.name === 'every')!;
    assert.equal(every.task, 'tasks.tick');
    assert.match(every.schedule!, /0\.2|200/);
    assert.ok(every.total >= 1, `sent ${every.total}`);
    assert.ok(every.lastTick && every.nextRun && Date.parse(every.nextRun) > Date.parse(every.lastTick));
    assert.match(every.lastTaskId!, /^[0-9a-f-]{36}$/);
    assert.equal(typeof every.lastConfirmed, 'boolean');
    assert.equal(every.skipped, 0);
    const nightly = r.entries.find((e) => e.name === 'nightly')!;
    assert.equal(nightly.total, 0);
    assert.equal(nightly.lastTick, undefined);
    assert.match(nightly.nextRun!, /T03:00:00/);
  });

  it('report, clock and hello answer as Celery shapes them', async () => {
    const node = instances[0]!.node;
    const report = (await control.inspect({ destination: node, timeoutMs: 500 }).call('report'))[node] as { ok: string };
    assert.match(report.ok, /celeriac beat .*leader \(fencing token \d+\), 2 entries/);
    const clock = (await control.inspect({ destination: node, timeoutMs: 500 }).call('clock'))[node] as { clock: number };
    assert.equal(typeof clock.clock, 'number');
    const hello = (await control.inspect({ destination: node, timeoutMs: 500 }).call('hello', { from_node: 'w@h', revoked: {} }))[node] as { revoked: object };
    assert.deepEqual(hello.revoked, {}, 'a beat holds no revoked ids');
  });

  it('conf: Celery setting names, Celeriac-only ones under their own, the broker password masked', async () => {
    const node = instances[0]!.node;
    const conf = (await control.inspect({ destination: node, timeoutMs: 500 }).conf())[node] as Record<string, unknown>;
    assert.equal(conf.task_acks_late, true);
    assert.equal(conf.taskMaxRedeliveries, 5);
    assert.equal(conf.broker_url, 'redis://:***@127.0.0.1:6379/0');
    assert.ok(!JSON.stringify(conf).includes('beatSecretPw'));
    assert.equal(conf.task_serializer, undefined, 'defaults left out without with_defaults');
    const all = (await control.inspect({ destination: node, timeoutMs: 500 }).conf(true))[node] as Record<string, unknown>;
    assert.equal(all.task_serializer, 'json');
  });

  it('worker commands get an error reply saying this node is a beat; unknown ones kombu\'s KeyError', async () => {
    const node = instances[0]!.node;
    for (const method of ['revoke', 'rate_limit', 'pool_grow', 'shutdown', 'active', 'registered']) {
      const replies = await control.broadcast(method, {}, { reply: true, destination: node, timeoutMs: 500 });
      assert.deepEqual(replies, [{ [node]: { error: `${method} is a worker command: ${node} is a celeriac beat (it sends periodic tasks and runs none)` } }], method);
    }
    assert.deepEqual(await control.broadcast('no_such_thing', {}, { reply: true, destination: node, timeoutMs: 500 }), [{ [node]: { error: "KeyError('no_such_thing')" } }]);
    assert.ok(instances[0]!.beat.isLeader, 'a broadcast shutdown does not stop a beat');
  });

  it('the command table has no worker command in it', () => {
    const cmds = beatCommands({ beat: instances[0]!.beat, store: instances[0]!.store, namespace, nodeName: 'x@y' });
    assert.deepEqual(Object.keys(cmds).sort(), ['beat_status', 'clock', 'hello', 'ping', 'report', 'stats']);
  });
});

describe('beat control behind the control guard', () => {
  const world = new MemoryWorld();
  const brokers: Broker[] = [];
  const mk = (): Broker => {
    const b = createMemoryBroker({ world });
    brokers.push(b);
    return b;
  };
  after(async () => Promise.allSettled(brokers.map((b) => b.close())));
  const key = generateSigningKey('ed25519', 'ops-beat-1');
  const other = generateSigningKey('ed25519', 'intruder-1');
  const signer = (line: string) => createControlSigner({ security: loadSecuritySettings(resolveSettings({ securitySigningKeys: line }), ENV, new Set(['application/json'])) });

  it('signed by the deployment key: answered; forged, or unsigned where only signed is allowed: no answer', async () => {
    const namespace = `bg-${randomBytes(3).toString('hex')}`;
    const store = createMemoryBeatStore(namespace);
    const beat = createBeat({ app: fakeApp, schedule: { t: { task: 'tasks.t', schedule: 60 } }, store, namespace, leaseMs: 600, holder: 'g', logger });
    const node = `beat.${namespace}@test`;
    const settings = resolveSettings({ securitySigningKeys: key.signingLine, workerControlAllowUnsigned: [] });
    const guard = createControlGuard({ settings, env: ENV, logger, hostname: node });
    assert.ok(guard.description.verifying);
    const server = await startBeatControl({ beat, store, namespace, nodeName: node, settings, broker: mk(), guard, logger });
    try {
      const signed = createControl({ broker: async () => mk(), sign: signer(key.signingLine) });
      const forged = createControl({ broker: async () => mk(), sign: signer(other.signingLine) });
      const unsigned = createControl({ broker: async () => mk() });
      assert.deepEqual(await signed.inspect({ timeoutMs: 400 }).ping(), { [node]: { ok: 'pong' } });
      assert.deepEqual(await signed.inspect({ timeoutMs: 400 }).call('beat_status').then((r) => Object.keys(r)), [node]);
      assert.deepEqual(await forged.inspect({ timeoutMs: 400 }).ping(), {}, 'a signature by an unknown key is refused');
      assert.deepEqual(await unsigned.inspect({ timeoutMs: 400 }).ping(), {}, 'unsigned refused where every command must be signed');
      assert.deepEqual(await unsigned.inspect({ timeoutMs: 400 }).call('beat_status'), {});
    } finally {
      await server.close();
      await beat.stop();
    }
  });

  it('by default beat_status is a read-only command: allowed unsigned like ping, a destructive one is refused silently', async () => {
    const namespace = `bd-${randomBytes(3).toString('hex')}`;
    const store = createMemoryBeatStore(namespace);
    const beat = createBeat({ app: fakeApp, schedule: { t: { task: 'tasks.t', schedule: 60 } }, store, namespace, leaseMs: 600, holder: 'd', logger });
    const node = `beat.${namespace}@test`;
    const settings = resolveSettings({});
    const server = await startBeatControl({ beat, store, namespace, nodeName: node, settings, broker: mk(), guard: createControlGuard({ settings, env: ENV, logger, hostname: node }), logger });
    try {
      const c = createControl({ broker: async () => mk() });
      assert.deepEqual(Object.keys(await c.inspect({ timeoutMs: 400 }).call('beat_status')), [node]);
      assert.deepEqual(await c.broadcast('revoke', { task_id: 'x' }, { reply: true, timeoutMs: 400 }), [], 'revoke is not in workerControlAllow: refused before any answer');
    } finally {
      await server.close();
      await beat.stop();
    }
  });
});
