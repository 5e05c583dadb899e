/**
 * Property-based test of the message decoder against the grammar of
 * celery-protocol.md (§1-§3): kombu's Redis envelope, the v2 headers and
 * properties, the body `[args, kwargs, embed]` and its signatures, both
 * serializers, with and without zlib compression.
 *
 * - every message inside the grammar decodes, to exactly what was sent;
 * - every message with one part outside it (a wrong type, a value out of
 *   range, an encoding or compression the protocol does not define, a
 *   malformed envelope) is refused with a DecodeError — never accepted,
 *   never any other exception.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compressBody } from '../../../src/codec/compression.ts';
import { stringifyJson } from '../../../src/codec/json.ts';
import { DEFAULT_DECODE_LIMITS } from '../../../src/codec/limits.ts';
import { decodeByContentType, JSON_SERIALIZER, MSGPACK_SERIALIZER, type Serializer } from '../../../src/codec/serializers.ts';
import { DecodeError } from '../../../src/errors.ts';
import { decodeRedisEnvelope, encodeRedisEnvelope } from '../../../src/transport/redis/envelope.ts';
import { parseTaskMessage, type TaskRequest } from '../../../src/protocol/task-message.ts';
import { toIsoUtc } from '../../../src/protocol/time.ts';
import type { WireMessage } from '../../../src/protocol/types.ts';

const accept = new Set(['application/json', 'application/x-msgpack']);
const limits = DEFAULT_DECODE_LIMITS;

/** The worker's path for a Redis message: envelope, then body (framing checked), then the task message. */
function intake(raw: string): TaskRequest {
  const { message } = decodeRedisEnvelope(raw, limits);
  return parseTaskMessage(message, (m) => decodeByContentType(m.body, m.contentType, accept, limits, { compression: m.headers.compression, contentEncoding: m.contentEncoding }));
}

// ── the grammar ──────────────────────────────────────────────────────────
const key = fc.string({ maxLength: 8 }).filter((k) => k !== '__proto__' && k !== 'constructor' && k !== 'prototype');
const leaf = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  // Integer-valued doubles beyond 2^53 are written as integer literals and come back as bigint (exact-integers.test.ts).
  fc.double({ min: -1e15, max: 1e15, noNaN: true }).map((d) => (Object.is(d, -0) ? 0 : d)),
  fc.string({ maxLength: 12 }),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((b) => (b > 2n ** 53n || b < -(2n ** 53n) ? b : Number(b))),
);
const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(key, tie('v'), { maxKeys: 4, noNullPrototype: true })),
})).v;
const kwargsArb = fc.dictionary(key, json, { maxKeys: 4, noNullPrototype: true });
const name = fc.stringMatching(/^[a-z][a-z0-9_.]{0,20}$/);
const iso = fc.integer({ min: 0, max: 4_102_444_800_000 }).map((ms) => toIsoUtc(ms));
const signature = fc.record(
  {
    task: name,
    args: fc.array(json, { maxLength: 3 }),
    kwargs: kwargsArb,
    options: fc.dictionary(key, json, { maxKeys: 3, noNullPrototype: true }),
    subtask_type: fc.constantFrom(null, 'chain', 'group', 'chord'),
    immutable: fc.boolean(),
  },
  { requiredKeys: ['task'], noNullPrototype: true },
);
const embed = fc.record({
  callbacks: fc.option(fc.array(signature, { maxLength: 2 }), { nil: null }),
  errbacks: fc.option(fc.array(signature, { maxLength: 2 }), { nil: null }),
  chain: fc.option(fc.array(signature, { maxLength: 2 }), { nil: null }),
  chord: fc.option(signature, { nil: null }),
});
const limit = fc.option(fc.double({ min: 0, max: 1e6, noNaN: true }), { nil: null });
const headersArb = fc.record({
  lang: fc.constant('py'),
  task: name,
  id: fc.uuid(),
  shadow: fc.option(name, { nil: null }),
  eta: fc.option(iso, { nil: null }),
  expires: fc.option(iso, { nil: null }),
  group: fc.option(fc.uuid(), { nil: null }),
  group_index: fc.option(fc.nat(1000), { nil: null }),
  retries: fc.nat(100),
  timelimit: fc.tuple(limit, limit),
  root_id: fc.uuid(),
  parent_id: fc.option(fc.uuid(), { nil: null }),
  argsrepr: fc.string({ maxLength: 20 }),
  kwargsrepr: fc.string({ maxLength: 20 }),
  origin: fc.string({ maxLength: 20 }),
  ignore_result: fc.boolean(),
});

interface Valid {
  headers: Record<string, unknown>;
  args: unknown[];
  kwargs: Record<string, unknown>;
  embed: Record<string, unknown>;
  priority: number;
  replyTo: string;
  serializer: Serializer;
  compressed: boolean;
}
const validArb: fc.Arbitrary<Valid> = fc.record({
  headers: headersArb,
  args: fc.array(json, { maxLength: 4 }),
  kwargs: kwargsArb,
  embed,
  priority: fc.nat(9),
  replyTo: fc.oneof(fc.constant(''), fc.uuid()),
  serializer: fc.constantFrom(JSON_SERIALIZER, MSGPACK_SERIALIZER),
  compressed: fc.boolean(),
});

/** A Redis envelope for `v`, optionally edited: `edit` may change the message, then the envelope object. */
function envelope(v: Valid, edit?: { message?: (m: WireMessage, body: unknown[]) => void; envelope?: (e: Record<string, unknown>) => void }): string {
  const body: unknown[] = [v.args, v.kwargs, v.embed];
  const headers = structuredClone(v.headers);
  const m: WireMessage = { headers, properties: { correlation_id: String(v.headers.id), reply_to: v.replyTo, delivery_mode: 2, priority: v.priority }, contentType: v.serializer.contentType, contentEncoding: v.serializer.contentEncoding, body: Buffer.alloc(0) };
  edit?.message?.(m, body);
  m.body = v.serializer.encode(body);
  if (v.compressed) {
    m.body = compressBody(m.body, 'zlib');
    m.headers.compression ??= 'application/x-gzip';
  }
  const raw = encodeRedisEnvelope(m, { exchange: '', routingKey: 'celery', deliveryTag: 'tag-1' });
  if (!edit?.envelope) return raw;
  const e = JSON.parse(raw) as Record<string, unknown>;
  edit.envelope(e);
  return stringifyJson(e);
}

/** What a signature dict decodes to (missing keys take Celery's defaults). */
function sigOut(s: Record<string, unknown>): Record<string, unknown> {
  return { ...s, args: s.args ?? [], kwargs: s.kwargs ?? {}, options: s.options ?? {}, subtask_type: s.subtask_type ?? null, immutable: s.immutable ?? false };
}

describe('decoder grammar (property-based, celery-protocol.md §1-§3)', () => {
  it('every message inside the grammar decodes to exactly what was sent (json and msgpack, plain and zlib)', () => {
    fc.assert(
      fc.property(validArb, (v) => {
        const req = intake(envelope(v));
        const h = v.headers;
        assert.equal(req.id, h.id);
        assert.equal(req.task, h.task);
        assert.deepEqual(req.args, v.args);
        assert.deepEqual(req.kwargs, v.kwargs);
        assert.equal(req.retries, h.retries);
        assert.equal(req.groupIndex, h.group_index);
        assert.equal(req.group, h.group);
        assert.equal(req.shadow, h.shadow);
        assert.equal(req.parentId, h.parent_id);
        assert.equal(req.rootId, h.root_id);
        assert.equal(req.ignoreResult, h.ignore_result);
        assert.equal(req.priority, v.priority);
        assert.equal(req.replyTo, v.replyTo);
        assert.equal(req.eta, h.eta === null ? null : Date.parse(String(h.eta)));
        const [hard, soft] = h.timelimit as [number | null, number | null];
        assert.deepEqual(req.timeLimit, [hard || null, soft || null]);
        const e = v.embed as Record<string, Array<Record<string, unknown>> | Record<string, unknown> | null>;
        const list = (x: unknown): unknown => (x === null ? null : (x as Array<Record<string, unknown>>).map(sigOut));
        assert.deepEqual(req.embed, { callbacks: list(e.callbacks), errbacks: list(e.errbacks), chain: list(e.chain), chord: e.chord === null ? null : sigOut(e.chord as Record<string, unknown>) });
      }),
      { numRuns: 400 },
    );
  });

  // One part outside the grammar at a time. Each entry: what is wrong, and the edit that makes it so.
  type Edit = Parameters<typeof envelope>[1];
  const setHeader = (k: string, value: unknown): Edit => ({ message: (m) => void (m.headers[k] = value) });
  const setProp = (k: string, value: unknown): Edit => ({ envelope: (e) => void ((e.properties as Record<string, unknown>)[k] = value) });
  const setBody = (i: number, value: unknown): Edit => ({ message: (_m, b) => void (b[i] = value) });
  const offTypes = [5, -1, 1.5, true, [], {}, 'x'];
  const edits: Array<[string, fc.Arbitrary<Edit>]> = [
    ['task header not a non-empty string', fc.constantFrom(5, '', true, []).map((x) => setHeader('task', x))],
    ['id header missing or not a string', fc.constantFrom(undefined, 5, '', {}).map((x) => setHeader('id', x))],
    ['a string-or-null header of another type', fc.tuple(fc.constantFrom('shadow', 'group', 'root_id', 'parent_id', 'origin', 'argsrepr', 'kwargsrepr'), fc.constantFrom(5, true, [], {})).map(([k, x]) => setHeader(k, x))],
    ['eta/expires not an ISO-8601 string', fc.tuple(fc.constantFrom('eta', 'expires'), fc.constantFrom(5, 'tomorrow', '2026-13-01T10:00:00', '2026-02-30T10:00:00', '2026-01-01T24:00:00Z', '2026-01-01T10:00:00+25:00', ' 2026-01-01T10:00:00', {})).map(([k, x]) => setHeader(k, x))],
    ['retries not a non-negative integer', fc.constantFrom(-1, 1.5, '1', null === null ? [] : 0, true).map((x) => setHeader('retries', x))],
    ['group_index not a non-negative integer', fc.constantFrom(-1, 1.5, '1', true, []).map((x) => setHeader('group_index', x))],
    ['ignore_result not a boolean', fc.constantFrom('yes', 1, 0, [], {}).map((x) => setHeader('ignore_result', x))],
    ['timelimit not [hard, soft] of non-negative numbers', fc.constantFrom(5, 'x', [1], [1, 2, 3], [-1, null], [null, 'x'], {}).map((x) => setHeader('timelimit', x))],
    ['compression header not defined', fc.constantFrom('application/x-bz2', 'zlib', 'application/x-lzma', 5).map((x) => setHeader('compression', x))],
    ['priority out of 0..255 or not an integer', fc.constantFrom(-1, 256, 1.5, '5', true).map((x) => setProp('priority', x))],
    ['correlation_id / reply_to not a string', fc.tuple(fc.constantFrom('correlation_id', 'reply_to'), fc.constantFrom(5, true, [], {})).map(([k, x]) => setProp(k, x))],
    ['body_encoding not defined', fc.constantFrom('hex', 'base32', 5, 'BASE64').map((x) => setProp('body_encoding', x))],
    ['delivery_info not an object', fc.constantFrom('x', 5, []).map((x) => setProp('delivery_info', x))],
    ['body not [args, kwargs, embed]', fc.constantFrom(2, 4).map((n): Edit => ({ message: (_m, b) => void (b.length = n) }))],
    ['args not a list', fc.constantFrom(5, 'x', {}, null).map((x) => setBody(0, x))],
    ['kwargs not an object', fc.constantFrom(5, 'x', [], null).map((x) => setBody(1, x))],
    ['embed not an object', fc.constantFrom(5, 'x', []).map((x) => setBody(2, x))],
    ['embed list not a list', fc.tuple(fc.constantFrom('callbacks', 'errbacks', 'chain'), fc.constantFrom(5, 'x', {})).map(([k, x]) => setBody(2, { [k]: x }))],
    ['signature field of the wrong type', fc.tuple(fc.constantFrom(['task', 5], ['task', ''], ['args', 'x'], ['kwargs', []], ['options', 5], ['subtask_type', 5], ['immutable', 'yes'])).map(([[k, x]]) => setBody(2, { callbacks: [{ task: 't', [k as string]: x }] }))],
    ['signature not an object', fc.constantFrom(5, 'x', [], null).map((x) => setBody(2, { chain: [x] }))],
    ['envelope part missing or of the wrong type', fc.tuple(fc.constantFrom('headers', 'properties', 'body', 'content-type', 'content-encoding'), fc.constantFrom(undefined, 5, [], null)).map(([k, x]): Edit => ({ envelope: (e) => (x === undefined ? delete e[k] : void (e[k] = x)) }))],
    ['content-encoding not the serializer\'s', fc.constantFrom('utf-16', 'latin-1', 'gzip', '').map((x): Edit => ({ envelope: (e) => void (e['content-encoding'] = x) }))],
    ['content-type not accepted', fc.constantFrom('application/x-python-serialize', 'application/x-yaml', 'text/plain', '').map((x): Edit => ({ envelope: (e) => void (e['content-type'] = x) }))],
    ['body not standard padded base64', fc.constantFrom(
      (b: string) => `${b} `,
      (b: string) => (b.endsWith('=') ? b.replace(/=+$/, '') : b.slice(0, -1)),
      (b: string) => `*${b.slice(1)}`,
      (b: string) => `-${b.slice(1)}`,
      (b: string) => `${b.slice(0, -4)}\n${b.slice(-4)}`,
    ).map((f): Edit => ({ envelope: (e) => void (e.body = f(String(e.body))) }))],
  ];

  for (const [what, editArb] of edits) {
    it(`refuses with a DecodeError: ${what}`, () => {
      fc.assert(
        fc.property(validArb, editArb, (v, edit) => {
          let raw: string;
          try {
            raw = envelope(v, edit);
          } catch {
            return; // the encoder itself refused the edit (e.g. msgpack of undefined): nothing to send
          }
          assert.throws(() => intake(raw), (e: unknown) => {
            if (!(e instanceof DecodeError)) throw new Error(`not a DecodeError: ${String((e as Error)?.stack ?? e)}`);
            return true;
          });
        }),
        { numRuns: 60 },
      );
    });
  }

  it('arbitrary JSON envelopes never escape as anything but a DecodeError', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom('body', 'headers', 'properties', 'content-type', 'content-encoding', 'x'), json), (e) => {
        try {
          intake(stringifyJson(e));
        } catch (err) {
          if (!(err instanceof DecodeError)) throw err;
        }
      }),
      { numRuns: 500 },
    );
  });
});
