/**
 * app.control: requests in Celery 5.2.6's pidbox format (checked against the
 * captured vectors), replies collected by ticket until the timeout or limit,
 * and AsyncResult.revoke. Nodes here are memory-broker subscriptions that
 * answer as the captured Python worker did.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { controlExchange, replyExchange, type Broker } from '../../../src/core/broker.ts';
import { createControl, pidboxRequest } from '../../../src/client/control.ts';
import { createApp } from '../../../src/client/app.ts';
import { createMemoryBroker, MemoryWorld } from '../../../src/transport/memory/broker.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';
import { waitFor } from '../../helpers/services.ts';
import { generateSigningKey, SIGNATURE_HEADER } from '../../../src/codec/signing/index.ts';
import { createControlGuard } from '../../../src/security/control-guard.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';

const VECTORS = new URL('../../fixtures/celery-5.2.6/pidbox/', import.meta.url);
const vector = (name: string): { body_decoded: Record<string, unknown>; envelope: { headers: Record<string, unknown>; properties: Record<string, unknown>; 'content-type': string; 'content-encoding': string } } =>
  JSON.parse(readFileSync(new URL(name, VECTORS), 'utf8'));

interface Request {
  method: string;
  arguments: Record<string, unknown>;
  destination: string[] | null;
  ticket?: string;
  reply_to?: { exchange: string; routing_key: string };
}

/** A node that answers every request addressed to it with `answer(request)`; records what it got. */
async function node(broker: Broker, name: string, answer: (r: Request) => unknown, extra: { wrongTicketFirst?: boolean } = {}): Promise<{ got: Array<{ req: Request; message: WireMessage }>; close: () => Promise<void> }> {
  const got: Array<{ req: Request; message: WireMessage }> = [];
  const sub = await broker.subscribe(controlExchange(), { queue: `${name}.celery.pidbox` }, (d) => {
    const req = JSON.parse(d.message.body.toString()) as Request;
    got.push({ req, message: d.message });
    if (req.destination && !req.destination.includes(name)) return;
    if (!req.reply_to) return;
    const send = (ticket: string | undefined): Promise<void> =>
      broker.sendReply(replyExchange(), req.reply_to!.routing_key, {
        headers: { ticket, clock: 1 }, properties: { delivery_mode: 1, priority: 0 }, contentType: 'application/json', contentEncoding: 'utf-8',
        body: Buffer.from(JSON.stringify({ [name]: answer(req) })),
      });
    void (async () => {
      if (extra.wrongTicketFirst) await send('not-this-request');
      await send(req.ticket);
    })();
  });
  return { got, close: () => sub.close() };
}

describe('app.control (pidbox client)', () => {
  const world = new MemoryWorld();
  const brokers: Broker[] = [];
  const mk = (): Broker => {
    const b = createMemoryBroker({ world });
    brokers.push(b);
    return b;
  };
  after(async () => Promise.allSettled(brokers.map((b) => b.close())));

  it('sends requests in Celery 5.2.6 pidbox format (body fields and order, headers, properties)', async () => {
    const broker = mk();
    const n = await node(mk(), 'a@h', () => ({ ok: 'pong' }));
    const control = createControl({ broker: async () => broker });
    await control.inspect().ping();
    await control.revoke('11111111-2222-3333-4444-555555555555', { reply: true });
    await control.rateLimit('tasks.add', '10/m', { reply: true });
    await control.inspect().registered();
    await control.inspect().active();
    await control.shutdown({ destination: ['nobody@h'] });
    await waitFor(() => n.got.length === 6, 2000, 'the shutdown request');
    await n.close();
    const byMethod = new Map(n.got.map((g) => [g.req.method, g]));
    for (const [method, file] of [['ping', 'ping'], ['revoke', 'revoke'], ['rate_limit', 'rate_limit'], ['registered', 'registered'], ['active', 'active']] as const) {
      const v = vector(`redis_request_${file}.json`);
      const { req, message } = byMethod.get(method)!;
      assert.deepEqual(Object.keys(req), Object.keys(v.body_decoded), `${method}: field order`);
      assert.deepEqual(req.arguments, v.body_decoded.arguments, `${method}: arguments`);
      assert.equal(req.destination, null);
      assert.equal(req.reply_to!.exchange, 'reply.celery.pidbox');
      assert.match(req.ticket!, /^[0-9a-f-]{36}$/);
      assert.deepEqual(Object.keys(message.headers).sort(), Object.keys(v.envelope.headers).sort());
      assert.ok(Math.abs((message.headers.expires as number) - (Date.now() / 1000)) < 10, 'expires: now + timeout, in seconds');
      assert.equal(message.properties.delivery_mode, v.envelope.properties.delivery_mode);
      assert.equal(message.contentType, v.envelope['content-type']);
      assert.equal(message.contentEncoding, v.envelope['content-encoding']);
    }
    // Without a reply, as Celery's shutdown: no ticket, no reply_to.
    const shutdown = byMethod.get('shutdown')!.req;
    assert.deepEqual(Object.keys(shutdown), Object.keys(vector('redis_request_shutdown.json').body_decoded));
    assert.deepEqual(shutdown.destination, ['nobody@h']);
  });

  it('pidboxRequest builds exactly the captured revoke body', () => {
    const v = vector('redis_request_revoke.json').body_decoded as Record<string, unknown> & { ticket: string; reply_to: { exchange: string; routing_key: string } };
    const body = pidboxRequest({ method: 'revoke', args: v.arguments as Record<string, unknown>, destination: null, ticket: v.ticket, replyTo: { exchange: v.reply_to.exchange, routingKey: v.reply_to.routing_key } });
    assert.equal(JSON.stringify(body), JSON.stringify(v));
  });

  it('collects {hostname: reply} from every node, ignoring replies with another ticket', async () => {
    const broker = mk();
    const reg = vector('redis_reply_registered.json').body_decoded as Record<string, unknown>;
    const a = await node(mk(), 'a@h', (r) => (r.method === 'registered' ? Object.values(reg)[0] : { ok: 'pong' }), { wrongTicketFirst: true });
    const b = await node(mk(), 'b@h', (r) => (r.method === 'registered' ? ['x.y'] : { ok: 'pong' }));
    const control = createControl({ broker: async () => broker });
    assert.deepEqual(await control.inspect({ timeoutMs: 300 }).ping(), { 'a@h': { ok: 'pong' }, 'b@h': { ok: 'pong' } });
    const registered = await control.inspect({ timeoutMs: 300 }).registered();
    assert.deepEqual(registered['a@h'], Object.values(reg)[0]);
    assert.deepEqual(registered['b@h'], ['x.y']);
    const pings = await control.ping({ timeoutMs: 300 });
    assert.equal(pings.length, 2, 'control.ping is a list, one entry per node, as Celery');
    await a.close();
    await b.close();
  });

  it('stops at the destination count without waiting for the timeout; no reply gives an empty answer', async () => {
    const broker = mk();
    const a = await node(mk(), 'a@h', () => ({ ok: 'pong' }));
    const control = createControl({ broker: async () => broker });
    const t0 = Date.now();
    assert.deepEqual(await control.inspect({ destination: 'a@h', timeoutMs: 5000 }).ping(), { 'a@h': { ok: 'pong' } });
    assert.ok(Date.now() - t0 < 2000, 'returned at the first reply');
    const t1 = Date.now();
    assert.deepEqual(await control.inspect({ destination: ['ghost@h'], timeoutMs: 200 }).ping(), {});
    assert.ok(Date.now() - t1 >= 190, 'waited the timeout');
    await a.close();
  });

  it('signs each command through the hook when a signer is given', async () => {
    const broker = mk();
    const a = await node(mk(), 'a@h', () => ({ ok: 'pong' }));
    const control = createControl({ broker: async () => broker, sign: (m) => ({ ...m, headers: { ...m.headers, celeriac_signature: 'sig' } }) });
    await control.ping({ destination: 'a@h', timeoutMs: 500 });
    assert.equal(a.got[0]!.message.headers.celeriac_signature, 'sig');
    await a.close();
  });

  it("app.control signs with the app's task signing key, and a worker's control guard accepts it as that key", async () => {
    const key = generateSigningKey('ed25519', 'ops-control-1');
    const a = await node(mk(), 'a@h', () => ({ ok: 'pong' }));
    const app = createApp({ broker: mk(), resultBackend: 'memory://', securitySigningKeys: key.signingLine, env: { CELERIAC_ENV: 'development' } });
    try {
      await app.control.ping({ destination: 'a@h', timeoutMs: 500 });
      const message = a.got[0]!.message;
      assert.ok(message.headers[SIGNATURE_HEADER], 'signed');
      const guard = createControlGuard({ settings: resolveSettings({ securitySigningKeys: key.signingLine }), env: { CELERIAC_ENV: 'development' }, logger: createLogger({ level: 'silent' }) });
      const admitted = await guard.admit({ message, body: JSON.parse(message.body.toString()) as Record<string, unknown> }, 'ping');
      assert.deepEqual(admitted, { allowed: true, who: 'ops-control-1' });
      await guard.close();
    } finally {
      await a.close();
      await app.close();
    }
  });

  it('AsyncResult.revoke() (from send and from app.asyncResult) broadcasts revoke for its id', async () => {
    const app = createApp({ broker: mk(), resultBackend: 'memory://', taskDefaultQueue: `ctl-${Date.now()}` });
    const a = await node(mk(), 'a@h', (r) => ({ ok: `tasks ${String(r.arguments.task_id)} flagged as revoked` }));
    try {
      const r = await app.sendTask('tasks.sleep', [10], {}, { countdown: 60 });
      const replies = await r.revoke({ reply: true, terminate: true, destination: 'a@h' });
      assert.deepEqual(replies, [{ 'a@h': { ok: `tasks ${r.id} flagged as revoked` } }]);
      await app.asyncResult('abc').revoke();
      await waitFor(() => a.got.length === 2, 2000, 'the second revoke');
      const reqs = a.got.map((g) => g.req);
      assert.deepEqual(reqs[0]!.arguments, { task_id: r.id, terminate: true, signal: 'SIGTERM' });
      assert.equal(reqs[1]!.arguments.task_id, 'abc');
      assert.equal(reqs[1]!.reply_to, undefined, 'revoke without reply, as Celery');
    } finally {
      await a.close();
      await app.close();
    }
  });
});
