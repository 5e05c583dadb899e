/**
 * `npm run chaos`: the full chaos suite (issue 21) on Redis, RabbitMQ,
 * SQLite and PostgreSQL — by default 10,000 late-ack tasks and 100 kills per
 * engine, two Redis (and two PostgreSQL) restarts, poison tasks — and a
 * report per engine. Exits non-zero
 * when a task is lost, duplicates exceed the in-flight bound, a poison task
 * does not end, or the pool does not come back to its size.
 *
 *   npm run chaos [-- --engines redis,amqp,sqlite,postgres --tasks 10000 --kills 100]
 *
 * Needs redis-server, RabbitMQ (rabbitmq-server and rabbitmqctl: the run
 * starts a node of its own, on its own ports and data directory, and
 * restarts it `--restarts` times), the PostgreSQL binaries (each run starts
 * its own cluster), and a quiet machine: it starts 2 workers of 2 processes
 * each per engine.
 */
import { parseArgs } from 'node:util';
import { formatReport, runChaos, verdict, type Engine } from './harness.ts';

const { values } = parseArgs({
  options: {
    engines: { type: 'string', default: 'redis,amqp,sqlite,postgres' },
    tasks: { type: 'string', default: '10000' },
    kills: { type: 'string', default: '100' },
    restarts: { type: 'string', default: '2' },
    poison: { type: 'string', default: '2' },
    json: { type: 'boolean', default: false },
  },
});

let failed = false;
for (const engine of values.engines!.split(',').map((e) => e.trim()) as Engine[]) {
  const report = await runChaos({
    engine,
    tasks: Number(values.tasks),
    kills: Number(values.kills),
    // Redis: its own redis-server on AOF; RabbitMQ: a node of the run's own (never the shared one).
    brokerRestarts: engine === 'sqlite' ? 0 : Number(values.restarts),
    poison: Number(values.poison),
    supervisors: 2,
    processes: 2,
    concurrency: 8,
    deadlineMs: 20 * 60_000,
    log: (l) => console.error(l),
  });
  console.log(values.json ? JSON.stringify(report) : formatReport(report));
  const bad = verdict(report);
  if (bad.length > 0) {
    failed = true;
    console.log(`  FAILED: ${bad.join('; ')}`);
  }
}
process.exit(failed ? 1 : 0);
