/**
 * The pidbox request reader against Celery 5.2.6's captured requests, the
 * destination/pattern rules and the expiry header; the revoked set; the
 * revoked store on a result backend.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { WireMessage } from '../../../../src/protocol/types.ts';
import { createMemoryBackend } from '../../../../src/transport/memory/backend.ts';
import { backendRevokedStore, RevokedSet } from '../../../../src/worker/control/revoked.ts';
import { isExpired, isForNode, parseControlRequest, type ControlRequest } from '../../../../src/worker/control/server.ts';

const DIR = new URL('../../../fixtures/celery-5.2.6/pidbox/', import.meta.url);

function vector(name: string): WireMessage {
  const v = JSON.parse(readFileSync(new URL(`${name}.json`, DIR), 'utf8')) as { envelope: { body: string; headers: Record<string, unknown>; 'content-type': string; 'content-encoding': string } };
  return { headers: v.envelope.headers, properties: { delivery_mode: 2, priority: 0 }, contentType: v.envelope['content-type'], contentEncoding: v.envelope['content-encoding'], body: Buffer.from(v.envelope.body, 'base64') };
}

describe('pidbox request reader', () => {
  it('reads every request Celery 5.2.6 sent', () => {
    for (const name of ['ping', 'stats', 'active', 'registered', 'rate_limit', 'revoke', 'shutdown']) {
      const req = parseControlRequest(vector(`redis_request_${name}`));
      assert.equal(typeof req, 'object', name);
      assert.equal((req as ControlRequest).method, name);
    }
    const revoke = parseControlRequest(vector('redis_request_revoke')) as ControlRequest;
    assert.deepEqual(revoke.arguments, { task_id: '11111111-2222-3333-4444-555555555555', terminate: false, signal: 'SIGTERM' });
    assert.deepEqual(revoke.replyTo, { exchange: 'reply.celery.pidbox', routingKey: '7f20ff05-fd8c-3823-aefa-6367809306d4' });
    assert.equal(revoke.ticket, '2dcff41c-4931-4738-a927-26edf367b26e');
    assert.equal((parseControlRequest(vector('redis_request_shutdown')) as ControlRequest).replyTo, null, 'shutdown asks no reply');
  });

  it('refuses what is not a control request, with a reason', () => {
    const base = vector('redis_request_ping');
    assert.match(parseControlRequest({ ...base, body: Buffer.from('[1]') }) as string, /not an object/);
    assert.match(parseControlRequest({ ...base, body: Buffer.from('{"method": ""}') }) as string, /no method/);
    assert.match(parseControlRequest({ ...base, body: Buffer.from('{"method": "ping", "arguments": [1]}') }) as string, /arguments/);
    assert.match(parseControlRequest({ ...base, body: Buffer.from('{"method": "ping", "destination": "x"}') }) as string, /destination/);
    assert.match(parseControlRequest({ ...base, contentType: 'application/x-python-serialize' }) as string, /not accepted/);
  });

  it('destination, glob and pcre patterns select nodes as Celery does', () => {
    const req = (o: Partial<ControlRequest>): ControlRequest => ({ method: 'ping', arguments: {}, destination: null, pattern: null, matcher: null, ticket: null, replyTo: null, ...o });
    assert.ok(isForNode(req({}), 'a@h'));
    assert.ok(isForNode(req({ destination: ['a@h', 'b@h'] }), 'a@h'));
    assert.ok(!isForNode(req({ destination: ['b@h'] }), 'a@h'));
    assert.ok(isForNode(req({ pattern: 'a@*', matcher: 'glob' }), 'a@h'));
    assert.ok(!isForNode(req({ pattern: 'b@*', matcher: 'glob' }), 'a@h'));
    assert.ok(isForNode(req({ pattern: '^a@.$', matcher: 'pcre' }), 'a@h'));
    assert.ok(!isForNode(req({ pattern: '(', matcher: 'pcre' }), 'a@h'), 'a bad regexp matches nothing');
  });

  it('honours the expires header', () => {
    const m = vector('redis_request_ping');
    assert.ok(isExpired(m, 1795501018.6e3), 'past the captured expires');
    assert.ok(!isExpired(m, 1795501018.5e3), 'before it');
    assert.ok(!isExpired({ ...m, headers: { expires: Date.now() / 1000 + 10 } }));
    assert.ok(!isExpired({ ...m, headers: {} }));
  });
});

describe('revoked ids', () => {
  it('the set forgets expired ids', () => {
    const s = new RevokedSet();
    s.add('a', Date.now() + 1000);
    s.add('b', Date.now() - 1);
    assert.ok(s.has('a'));
    assert.ok(!s.has('b'));
    assert.deepEqual(s.list(), ['a']);
  });

  it('the store on a result backend is shared and merged', async () => {
    const backend = createMemoryBackend();
    const one = backendRevokedStore(backend);
    const two = backendRevokedStore(backend);
    await one.add(['x'], 60);
    await two.add(['y'], 60);
    assert.deepEqual([...(await one.load()).keys()].sort(), ['x', 'y']);
  });
});
