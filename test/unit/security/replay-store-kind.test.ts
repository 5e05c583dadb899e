/**
 * Where `securityReplayStore: auto` puts replay nonces, now that the choice
 * reads the engines' declared replay scopes from the registry: the same
 * answers as the per-scheme rules it replaced.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSigningKey } from '../../../src/codec/signing/index.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { createMessageSecurity, replayStoreKind, type ConfiguredMessageSecurity } from '../../../src/security/message-security.ts';

const kind = (brokerUrl: string | undefined, resultBackend?: string, replayStore: 'auto' | 'redis' | 'sqlite' | 'local' | 'memory' = 'auto'): string =>
  replayStoreKind({ replayStore, brokerUrl, resultBackend });

describe('replayStoreKind', () => {
  it('auto: a Redis broker or result backend first, then the SQLite broker file, else local for a network broker', () => {
    assert.equal(kind('redis://h/0'), 'redis');
    assert.equal(kind('REDISS://h/0'), 'redis');
    assert.equal(kind('amqp://h//', 'rediss://h/1'), 'redis');
    assert.equal(kind('sqlite:///tmp/b.db', 'redis://h/1'), 'redis');
    assert.equal(kind('sqlite:///tmp/b.db'), 'sqlite');
    assert.equal(kind('sqlite:///tmp/b.db', 'sqlite:///tmp/r.db'), 'sqlite');
    assert.equal(kind('amqp://h//'), 'local');
    assert.equal(kind('pyamqps://h//', 'sqlite:///tmp/r.db'), 'local', 'a SQLite backend does not share nonces with a RabbitMQ broker');
    assert.equal(kind('memory://'), 'memory');
    assert.equal(kind('memory://', 'redis://h/0'), 'redis');
    assert.equal(kind(undefined), 'memory');
    assert.equal(kind('nats://h'), 'local', 'an unknown network broker: the machine-local file');
  });

  it('an explicit choice is kept; a ReplayStore object is custom', () => {
    assert.equal(kind('redis://h/0', undefined, 'memory'), 'memory');
    assert.equal(kind('amqp://h//', undefined, 'local'), 'local');
    assert.equal(replayStoreKind({ replayStore: { kind: 'x', shared: true } as never, brokerUrl: undefined, resultBackend: undefined }), 'custom');
  });
});

describe('opening the chosen store through the registry', () => {
  const ring = generateSigningKey('ed25519', 'kind-k1');
  const security = (opts: Record<string, unknown>): ConfiguredMessageSecurity =>
    createMessageSecurity({
      settings: resolveSettings({ securitySigningKeys: ring.signingLine, ...opts }),
      env: { NODE_ENV: 'test' },
      logger: createLogger({ level: 'silent' }),
      acceptTypes: new Set(['application/json']),
    });

  it('an explicit store whose engine serves neither URL is refused, naming what is missing', async () => {
    await assert.rejects(security({ brokerUrl: 'amqp://h//', securityReplayStore: 'redis' }).replayGuard!.store(), {
      message: 'securityReplayStore is redis but neither the broker nor the result backend is Redis — use auto, sqlite, memory or postgres',
    });
    await assert.rejects(security({ brokerUrl: 'redis://h/0', securityReplayStore: 'sqlite' }).replayGuard!.store(), {
      message: 'securityReplayStore is sqlite but the broker is not SQLite — use auto, redis, memory or postgres',
    });
  });

  it('memory, the SQLite broker file and a local file open the engine stores', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'celeriac-kind-'));
    try {
      const cases: Array<[Record<string, unknown>, string, boolean]> = [
        [{ brokerUrl: 'memory://' }, 'memory', false],
        [{ brokerUrl: 'redis://h/0', securityReplayStore: 'memory' }, 'memory', false],
        [{ brokerUrl: `sqlite://${join(dir, 'b.db')}` }, 'sqlite', true],
        [{ brokerUrl: 'amqp://h//', securityReplayFile: join(dir, 'replay.db') }, 'sqlite', true],
      ];
      for (const [opts, storeKind, shared] of cases) {
        const sec = security(opts);
        const store = await sec.replayGuard!.store();
        assert.equal(store.kind, storeKind, JSON.stringify(opts));
        assert.equal(store.shared, shared, JSON.stringify(opts));
        await sec.close!();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
