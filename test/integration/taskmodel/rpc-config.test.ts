/**
 * `resultBackend: 'rpc://'` works only beside a RabbitMQ broker; anything
 * else is a ConfigError that says so (nothing is connected to find out).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createApp } from '../../../src/client/app.ts';
import { ConfigError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createMemoryBroker } from '../../../src/transport/memory/broker.ts';
import { evaluatePolicy, policyInputFromSettings } from '../../../src/config/policy.ts';
import { resolveSettings } from '../../../src/config/options.ts';

const logger = createLogger({ level: 'error' });
const env = { CELERIAC_ENV: 'development' };

describe('rpc:// result backend configuration', () => {
  for (const [what, brokerUrl] of [
    ['a Redis broker', 'redis://127.0.0.1:6379/15'],
    ['a SQLite broker', 'sqlite:///tmp/celeriac-tm-rpc-config.db'],
  ] as const) {
    it(`is a ConfigError with ${what}`, async () => {
      const app = createApp({ brokerUrl, resultBackend: 'rpc://', logger, env });
      try {
        await assert.rejects(app.resultStore(), (err: unknown) => {
          assert.ok(err instanceof ConfigError, String(err));
          assert.match(err.message, /rpc:\/\/ needs a RabbitMQ broker/);
          assert.match(err.message, /amqp:\/\//);
          return true;
        });
      } finally {
        await app.close();
      }
    });
  }

  it('is a ConfigError with an injected broker and no broker URL', async () => {
    const app = createApp({ broker: createMemoryBroker(), resultBackend: 'rpc://', logger, env });
    try {
      await assert.rejects(app.resultStore(), /rpc:\/\/ needs a RabbitMQ broker, and the broker is not set/);
    } finally {
      await app.close();
    }
  });

  it('refuses an rpc URL with a host or path', async () => {
    const app = createApp({ brokerUrl: 'amqp://guest:guest@127.0.0.1:5672//', resultBackend: 'rpc://elsewhere:5672/', logger, env });
    try {
      await assert.rejects(app.resultStore(), (err: unknown) => err instanceof ConfigError && /is not rpc:\/\//.test(err.message));
    } finally {
      await app.close();
    }
  });

  it('the security policy judges the broker for rpc:// results and does not refuse the scheme', () => {
    const report = evaluatePolicy(policyInputFromSettings(resolveSettings({ brokerUrl: 'amqps://user:Zq8vR2pL9xW4mN7kT3hB@mq.example.com:5671//', resultBackend: 'rpc://' }), {}));
    assert.deepEqual(report.refusals.filter((r) => r.setting === 'resultBackend'), []);
  });
});

describe('rpc:// credential rotation', () => {
  it('follows a new broker password on the same server, and refuses another server', async () => {
    const { createRpcBackend } = await import('../../../src/transport/amqp/rpc-backend.ts');
    const backend = createRpcBackend({ brokerUrl: 'amqp://u:OldPassw0rdOldPassw0rd@127.0.0.1:5672/vh', settings: resolveSettings({}), logger });
    await backend.updateCredentials('rpc://');
    await backend.updateCredentials('amqp://u:NewPassw0rdNewPassw0rd@127.0.0.1:5672/vh');
    const endpoint = (backend as unknown as { endpoint: { connect: { password: string } } }).endpoint;
    assert.equal(endpoint.connect.password, 'NewPassw0rdNewPassw0rd');
    await assert.rejects(backend.updateCredentials('amqp://u:NewPassw0rdNewPassw0rd@10.0.0.9:5672/vh'), (err: unknown) => err instanceof ConfigError && /another server or vhost/.test(err.message));
    await assert.rejects(backend.updateCredentials('amqp://u:NewPassw0rdNewPassw0rd@127.0.0.1:5672/other'), ConfigError);
    assert.equal(endpoint.connect.password, 'NewPassw0rdNewPassw0rd');
    await backend.close();
  });
});
