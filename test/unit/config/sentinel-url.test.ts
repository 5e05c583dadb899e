/**
 * Redis Sentinel URLs (issue 22): kombu's `sentinel://…;sentinel://…` form
 * parsed, judged by the security policy like redis:// URLs, the settings
 * read, and Redis Cluster refused with the reason.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluatePolicy, type PolicyInput } from '../../../src/config/policy.ts';
import { parseConnectionUrl, parseConnectionUrls, redactUrl, splitUrlList } from '../../../src/config/url.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { redisHaOptions } from '../../../src/config/ha-settings.ts';
import { parseRedisUrl } from '../../../src/transport/redis/connection.ts';
import { createRedisBroker } from '../../../src/transport/redis/broker.ts';
import { createRedisBackend } from '../../../src/transport/redis/backend.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { ConfigError } from '../../../src/errors.ts';

const STRONG = 'tR4vQ9zLm2Xw8KpNa7Yc';
const base = (brokerUrl: string, extra: Partial<PolicyInput> = {}): PolicyInput => ({
  mode: 'production', brokerUrl, acceptContent: ['json'], resultAcceptContent: ['json'], taskSerializer: 'json', resultSerializer: 'json', ...extra,
});

describe('sentinel:// URLs', () => {
  it('splits a list on ; before a scheme only, so a ; in a password stays', () => {
    assert.deepEqual(splitUrlList('sentinel://a:1;sentinel://b:2/0'), ['sentinel://a:1', 'sentinel://b:2/0']);
    assert.deepEqual(splitUrlList('redis://u:p;w@h/0'), ['redis://u:p;w@h/0']);
    assert.equal(parseConnectionUrl('redis://u:p;w@h/0').password, 'p;w');
  });

  it('parses the sentinels, the default port 26379, and db and credentials from the first URL (as Celery)', () => {
    const t = parseRedisUrl(`sentinel://worker:${STRONG}@s1.internal/3;sentinel://s2.internal:26380;sentinel://s3.internal`);
    assert.deepEqual(t.sentinels, [{ host: 's1.internal', port: 26379 }, { host: 's2.internal', port: 26380 }, { host: 's3.internal', port: 26379 }]);
    assert.equal(t.db, 3);
    assert.equal(t.username, 'worker');
    assert.equal(t.password, STRONG);
  });

  it('refuses lists that mix engines, plain Redis lists, and later URLs naming other credentials', () => {
    assert.throws(() => parseConnectionUrls('sentinel://a;amqp://b'), ConfigError);
    assert.throws(() => parseConnectionUrls('sentinel://a;redis://b'), /sentinel/);
    assert.throws(() => parseConnectionUrls('redis://a;redis://b'), /Sentinel/);
    assert.throws(() => parseConnectionUrls('sentinel://u:p1@a/0;sentinel://u:p2@b/0'), /credentials/);
  });

  it('is judged by the policy on every sentinel: TLS off loopback and credentials', () => {
    const plain = evaluatePolicy(base(`sentinel://worker:${STRONG}@s1.internal;sentinel://s2.internal`));
    assert.deepEqual(plain.refusals.map((f) => f.id), ['CEL-003', 'CEL-003']);
    assert.match(plain.refusals[0]!.fix, /brokerUseSsl|ssl=true/);
    const tls = evaluatePolicy(base(`sentinel://worker:${STRONG}@s1.internal?ssl=true;sentinel://s2.internal?ssl=true`));
    assert.deepEqual(tls.refusals, []);
    const withSsl = evaluatePolicy(base(`sentinel://worker:${STRONG}@s1.internal;sentinel://s2.internal`, { brokerUseSsl: true }));
    assert.deepEqual(withSsl.refusals, []);
    const noCreds = evaluatePolicy(base('sentinel://s1.internal;sentinel://s2.internal', { brokerUseSsl: true }));
    assert.deepEqual(noCreds.refusals.map((f) => f.id), ['CEL-001', 'CEL-001']);
    const weak = evaluatePolicy(base('sentinel://worker:password@s1.internal', { brokerUseSsl: true }));
    assert.deepEqual(weak.refusals.map((f) => f.id), ['CEL-011']);
    const backend = evaluatePolicy(base(`rediss://worker:${STRONG}@r.internal/0`, { resultBackend: 'sentinel://s1.internal;sentinel://s2.internal' }));
    assert.deepEqual(backend.refusals.map((f) => f.id).sort(), ['CEL-014', 'CEL-014', 'CEL-015', 'CEL-015']);
    // Loopback in development: relaxed, as redis://.
    assert.deepEqual(evaluatePolicy({ ...base('sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380'), mode: 'development' }).refusals, []);
  });

  it('redacts every password of a URL list and keeps every host', () => {
    assert.equal(redactUrl('sentinel://u:secret1@a:1/0;sentinel://u:secret2@b:2'), 'sentinel://u:***@a:1/0;sentinel://u:***@b:2');
    assert.equal(redactUrl('amqp://u:secret1@a//;amqp://v:secret2@b//'), 'amqp://u:***@a//;amqp://v:***@b//');
    assert.equal(redactUrl('sentinel://a:1;sentinel://u:secret2@b:2?password=x'), 'sentinel://a:1;sentinel://u:***@b:2?password=***');
  });

  it('refuses Redis Cluster URLs and says why', () => {
    for (const u of ['redis+cluster://h:7000/0', 'rediscluster://h:7000', 'redis-cluster://h']) {
      assert.throws(() => parseConnectionUrl(u), (e: unknown) => e instanceof ConfigError && /Cluster is not supported/.test(e.message) && /unacked/.test(e.hint ?? ''));
    }
  });
});

describe('sentinel settings', () => {
  it('reads master_name, sentinel_kwargs and wait_for_replicas from both transport options (snake or camel case)', () => {
    const s = resolveSettings({
      brokerTransportOptions: { master_name: 'mymaster', sentinel_kwargs: { username: 'sen', password: 'pw' }, wait_for_replicas: 1, wait_for_replicas_timeout: 0.5 } as never,
      resultBackendTransportOptions: { masterName: 'results', waitForReplicas: 2 },
    });
    assert.deepEqual(redisHaOptions(s, 'broker'), { masterName: 'mymaster', sentinelUsername: 'sen', sentinelPassword: 'pw', waitForReplicas: 1, waitTimeoutMs: 500 });
    assert.deepEqual(redisHaOptions(s, 'backend'), { masterName: 'results', sentinelUsername: undefined, sentinelPassword: undefined, waitForReplicas: 2, waitTimeoutMs: 1000 });
  });

  it('refuses a wrongly typed backend option', () => {
    const s = resolveSettings({ resultBackendTransportOptions: { master_name: 7 } as never });
    assert.throws(() => redisHaOptions(s, 'backend'), /resultBackendTransportOptions\.master_name must be a string/);
  });

  it('a sentinel:// broker or backend without master_name is a ConfigError naming the setting', () => {
    const logger = createLogger({ level: 'silent' });
    assert.throws(() => createRedisBroker({ url: 'sentinel://127.0.0.1:26379', settings: resolveSettings({}), logger }), /brokerTransportOptions\.master_name/);
    assert.throws(() => createRedisBackend({ url: 'sentinel://127.0.0.1:26379', settings: resolveSettings({}), logger }), /resultBackendTransportOptions\.master_name/);
  });
});
