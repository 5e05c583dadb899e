/**
 * Issue 20 #5: the policy and the connections must read the same URL. The
 * policy parsed `p\ta\ts\ts\tw\to\tr\td` as a strong 15-character password
 * with tabs while `new URL()` in the Redis connection dropped the tabs and
 * logged in with `password`. Differential test over generated URLs: the
 * user name, password, host, port and database the policy checks are
 * exactly what the Redis client (ioredis options) and the AMQP connection
 * (amqplib connect options) are given — or both refuse the URL.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { amqpEndpoint } from '../../../src/transport/amqp/connection.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { credentialsChecked, evaluatePolicy } from '../../../src/config/policy.ts';
import { parseConnectionUrl } from '../../../src/config/url.ts';
import { ConfigError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createRedisClient } from '../../../src/transport/redis/connection.ts';

const settings = resolveSettings({});
const logger = createLogger({ level: 'silent' });

type View = { error: true } | { error: false; user: string | undefined; pass: string | undefined; host: string; port: number | undefined; db?: number | undefined };

function policyView(url: string): View {
  try {
    const u = parseConnectionUrl(url);
    const c = credentialsChecked(u);
    return { error: false, user: c.username, pass: c.password, host: u.host, port: u.port, ...(u.kind === 'redis' ? { db: u.db } : {}) };
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return { error: true };
  }
}

function redisView(url: string): View {
  let client;
  try {
    client = createRedisClient({ url, settings, logger, role: 'diff', side: 'broker' });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return { error: true };
  }
  const o = client.options;
  client.disconnect();
  return { error: false, user: o.username ?? undefined, pass: o.password ?? undefined, host: o.host!, port: o.port, db: o.db };
}

function amqpView(url: string): View {
  try {
    const e = amqpEndpoint(url, settings);
    // amqplib is handed guest/guest for a URL without credentials; the policy sees none (and refuses that off loopback).
    const noCreds = e.url.username === undefined && e.url.password === undefined;
    return { error: false, user: noCreds ? undefined : e.connect.username, pass: noCreds ? undefined : e.connect.password || undefined, host: e.connect.hostname!, port: e.connect.port };
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return { error: true };
  }
}

// Characters that parsers disagree about: controls, whitespace, delimiters, percent signs, non-ASCII.
const awkward = fc.constantFrom('\t', '\n', '\r', ' ', '@', ':', '/', '?', '#', '%', '%41', '%09', '%40', '%3A', '[', ']', '\\', '"', "'", 'é', '€', '\u0000', '\u007f', '+', '&', '=');
const plain = fc.constantFrom(...'abcXYZ019-_.~'.split(''));
const part = fc.array(fc.oneof({ weight: 3, arbitrary: plain }, { weight: 2, arbitrary: awkward }), { maxLength: 12 }).map((a) => a.join(''));
const host = fc.constantFrom('127.0.0.1', 'localhost', 'redis.internal', '[::1]', 'Host.Example', '');
const urlArb = fc.record({
  scheme: fc.constantFrom('redis', 'rediss', 'amqp', 'amqps'),
  user: fc.option(part, { nil: undefined }),
  pass: fc.option(part, { nil: undefined }),
  host,
  port: fc.option(fc.constantFrom('6379', '5672', '1', '65535', '0', '99999', 'x'), { nil: undefined }),
  path: fc.constantFrom('', '/', '/0', '/3', '/vh', '//', '/%2F', '?db=2'),
  pad: fc.constantFrom('', ' ', '\t', '\n'),
}).map((r) => {
  const auth = r.user === undefined && r.pass === undefined ? '' : `${r.user ?? ''}${r.pass === undefined ? '' : `:${r.pass}`}@`;
  return { kind: r.scheme.startsWith('redis') ? 'redis' : 'amqp', url: `${r.pad}${r.scheme}://${auth}${r.host}${r.port === undefined ? '' : `:${r.port}`}${r.path}${r.pad}` };
});

describe('one URL parser for the policy and the connections (issue 20 #5)', () => {
  it('the tab password of the review is refused before any connection', () => {
    const url = 'redis://worker:p\ta\ts\ts\tw\to\tr\td@127.0.0.1:6379/0';
    assert.throws(() => evaluatePolicy({ mode: 'production', brokerUrl: url }), /control character/);
    assert.throws(() => createRedisClient({ url, settings, logger, role: 'diff', side: 'broker' }), /control character/);
    assert.throws(() => amqpEndpoint('amqps://worker:p\ta\ts\ts@rabbit:5671/', settings), /control character/);
  });

  it('generated URLs: what the policy checks is what the Redis and AMQP clients get', () => {
    fc.assert(
      fc.property(urlArb, ({ kind, url }) => {
        const policy = policyView(url);
        const conn = kind === 'redis' ? redisView(url) : amqpView(url);
        assert.deepEqual(conn, policy, JSON.stringify(url));
      }),
      { numRuns: 1500 },
    );
  });
});
