/**
 * The chaos suite, short version for CI (issue 21): per engine, 1,000
 * late-ack tasks with 20 random SIGKILLs of worker children and supervisors
 * (and connection kills, a Redis restart with AOF, a restart of a RabbitMQ
 * node the test starts itself, a PostgreSQL immediate shutdown and restart),
 * plus poison tasks (OOM
 * at the heap cap, a busy loop past the hard limit). Fails on any lost task,
 * duplicates beyond what was in flight at the kills, a poison task that does
 * not end within the redelivery limit, or a pool that does not come back to
 * its size. The full run is `npm run chaos` (test/chaos/run.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hasRedisServer } from '../helpers/redis-server.ts';
import { requireService } from '../helpers/services.ts';
import { canStartPrivateNode, hasRabbitmq } from '../integration/amqp/support/rabbit.ts';
import { formatReport, runChaos, verdict, type Engine } from './harness.ts';
import { canStartPostgres } from '../helpers/postgres-server.ts';

const available: Record<Engine, () => boolean> = {
  redis: hasRedisServer,
  sqlite: () => true,
  // The AMQP run restarts a RabbitMQ node of its own (rabbitmq-server); its result backend is a private redis-server.
  amqp: () => hasRabbitmq() && canStartPrivateNode() && hasRedisServer(),
  postgres: canStartPostgres,
};

describe('chaos (short)', { timeout: 520_000 }, () => {
  for (const engine of ['redis', 'sqlite', 'amqp', 'postgres'] as const) {
    it(`${engine}: 1,000 late-ack tasks, 20 kills, poison tasks: nothing lost, duplicates bounded, poison ended, pool whole`, async (t) => {
      if (!requireService(t, available[engine](), engine === 'sqlite' ? 'better-sqlite3' : engine === 'redis' ? 'redis-server' : engine === 'postgres' ? 'PostgreSQL binaries' : 'RabbitMQ and redis-server')) return;
      const report = await runChaos({
        engine,
        tasks: 1000,
        kills: 20,
        // Redis: its own redis-server killed and restarted on its AOF; RabbitMQ: its own node stopped and started.
        brokerRestarts: engine === 'sqlite' ? 0 : 1,
        poison: 1,
        supervisors: 2,
        processes: 2,
        concurrency: 8,
        // A RabbitMQ node takes a while to stop and boot again on a loaded machine.
        deadlineMs: engine === 'amqp' ? 100_000 : 75_000,
      });
      t.diagnostic(formatReport(report));
      assert.deepEqual(verdict(report), [], formatReport(report));
    });
  }
});
