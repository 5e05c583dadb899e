import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeByContentType } from '../../../src/codec/serializers.ts';
import { DEFAULT_DECODE_LIMITS } from '../../../src/codec/limits.ts';
import { decodeRedisEnvelope, encodeRedisEnvelope, queueOfKey } from '../../../src/transport/redis/envelope.ts';
import { buildTaskMessage, parseTaskMessage } from '../../../src/protocol/task-message.ts';
import { JSON_SERIALIZER, MSGPACK_SERIALIZER } from '../../../src/codec/serializers.ts';
import { readVector, redisTaskEntries } from '../../helpers/fixtures.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';

const ACCEPT = new Set(['application/json', 'application/x-msgpack']);
const decode = (m: WireMessage): unknown => decodeByContentType(m.body, m.contentType, ACCEPT, DEFAULT_DECODE_LIMITS);

describe('golden vectors: Redis list entries written by Celery 5.2.6', () => {
  const entries = redisTaskEntries();
  it('has vectors to check', () => assert.ok(entries.length >= 20, `found ${entries.length}`));

  for (const { file, entry } of entries) {
    it(`decodes and re-encodes ${file} (${JSON.stringify(entry.redis_key)})`, () => {
      const raw = JSON.parse(entry.raw) as { headers: Record<string, unknown>; properties: Record<string, unknown>; body: string };
      const { message, routing } = decodeRedisEnvelope(entry.raw, DEFAULT_DECODE_LIMITS);
      if (entry.body_hex) assert.equal(message.body.toString('hex'), entry.body_hex);
      assert.equal(routing.routingKey, queueOfKey(entry.redis_key));
      assert.equal(routing.deliveryTag, raw.properties.delivery_tag);

      const req = parseTaskMessage(message, decode);
      assert.equal(req.id, raw.headers.id);
      assert.equal(req.task, raw.headers.task);
      assert.equal(req.protocol, 2);
      const body = decode(message) as unknown[];
      assert.deepEqual(req.args, body[0]);
      assert.deepEqual(req.kwargs, body[1]);

      // Re-encode from the parsed request: the same headers (bar reprs of list args) and body.
      const serializer = message.contentType === 'application/x-msgpack' ? MSGPACK_SERIALIZER : JSON_SERIALIZER;
      const rebuilt = buildTaskMessage(
        {
          task: req.task,
          id: req.id,
          args: req.args,
          kwargs: req.kwargs,
          eta: req.eta,
          expires: req.expires,
          group: req.group,
          groupIndex: req.groupIndex,
          retries: req.retries,
          timeLimit: req.timeLimit,
          rootId: req.rootId,
          parentId: req.parentId,
          shadow: req.shadow,
          origin: req.origin ?? undefined,
          ignoreResult: req.ignoreResult,
          priority: req.priority,
          replyTo: req.replyTo,
          embed: req.embed,
          // Python derives `expiration` from the `expires` argument at send time.
          now: req.expires !== null && typeof raw.properties.expiration === 'string' ? req.expires - Number(raw.properties.expiration) : undefined,
        },
        serializer,
      );
      const env = encodeRedisEnvelope(rebuilt, routing);
      const again = decodeRedisEnvelope(env, DEFAULT_DECODE_LIMITS).message;
      const expectHeaders = { ...raw.headers };
      const gotHeaders = { ...again.headers };
      // Timestamps carry milliseconds in JS (Python writes microseconds).
      for (const k of ['eta', 'expires'] as const) {
        if (typeof expectHeaders[k] === 'string') {
          assert.equal(Date.parse(gotHeaders[k] as string), Math.floor(Date.parse(expectHeaders[k] as string)));
          delete expectHeaders[k];
          delete gotHeaders[k];
        }
      }
      // send_task with a list renders argsrepr as a list; we always render a tuple.
      if (String(expectHeaders.argsrepr).startsWith('[')) {
        delete expectHeaders.argsrepr;
        delete gotHeaders.argsrepr;
      }
      assert.deepEqual(gotHeaders, expectHeaders);
      assert.deepEqual(Object.keys(again.headers), Object.keys(raw.headers), 'header order as Celery writes it');
      assert.deepEqual(decode(again), body);
      assert.equal(again.contentType, message.contentType);
      assert.equal(again.properties.priority, raw.properties.priority);
      assert.equal(again.properties.expiration, raw.properties.expiration);
    });
  }
});

describe('golden vectors: messages re-sent by a Python worker', () => {
  for (const name of ['retry_resent', 'chain_second_step', 'link_callback', 'chord_callback']) {
    it(`parses worker_published_${name}_message`, () => {
      const v = readVector<{ raw: string; envelope: { headers: Record<string, unknown> } }>(`redis/worker_published_${name}_message.json`);
      const { message } = decodeRedisEnvelope(v.raw, DEFAULT_DECODE_LIMITS);
      const req = parseTaskMessage(message, decode);
      assert.equal(req.id, v.envelope.headers.id);
      assert.equal(req.retries, v.envelope.headers.retries);
    });
  }

  it('the retry copy keeps the id and sets parent_id to the task itself', () => {
    const v = readVector<{ raw: string }>('redis/worker_published_retry_resent_message.json');
    const req = parseTaskMessage(decodeRedisEnvelope(v.raw, DEFAULT_DECODE_LIMITS).message, decode);
    assert.equal(req.retries, 1);
    assert.equal(req.parentId, req.id);
    assert.ok(req.eta !== null);
  });
});

describe('golden vectors: canvas', () => {
  it('reads a chain as embed.chain in reverse order', () => {
    const v = readVector<{ redis_list_entries: Array<{ raw: string }> }>('redis/canvas_chain.json');
    const req = parseTaskMessage(decodeRedisEnvelope(v.redis_list_entries[0]!.raw, DEFAULT_DECODE_LIMITS).message, decode);
    assert.equal(req.embed.chain?.length, 2);
    assert.deepEqual(req.embed.chain?.map((s) => s.args), [[4], [3]]);
  });
});
