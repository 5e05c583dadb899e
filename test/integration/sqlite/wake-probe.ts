/**
 * Child process for the SQLite wake-up tests.
 * Usage: node --import tsx wake-probe.ts <mode> <url> [arg]
 *   idle-consumer <url> <seconds>  consume an empty queue; print the CPU time used while idle
 *   idle-get <url> <seconds>       wait for a result nobody produces; print the CPU time used
 *   publish <url> <count>          publish <count> messages 40 ms apart, each carrying its send time
 *   store <url> <ids,...>          store a SUCCESS for each id 40 ms apart, each carrying its store time
 * Times are epoch milliseconds with sub-millisecond precision (performance.timeOrigin + now()).
 */
import { createSqliteBroker } from '../../../src/transport/sqlite/broker.ts';
import { createApp } from '../../../src/client/app.ts';
import { JSON_SERIALIZER } from '../../../src/codec/serializers.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import { newId } from '../../../src/protocol/ids.ts';
import { buildResultMeta } from '../../../src/protocol/result-meta.ts';
import { buildTaskMessage } from '../../../src/protocol/task-message.ts';

const [mode, url, arg] = process.argv.slice(2) as [string, string, string];
const logger = createLogger({ level: 'warn' });
const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function measureIdle(seconds: number): Promise<void> {
  await sleep(1000); // settle: start-up work is not idle time
  const before = process.cpuUsage();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const used = process.cpuUsage(before);
  const wall = performance.now() - t0;
  process.stdout.write(`${JSON.stringify({ cpuMs: (used.user + used.system) / 1000, wallMs: wall })}\n`);
  process.exit(0);
}

switch (mode) {
  case 'idle-consumer': {
    const broker = createSqliteBroker({ url, logger, settings: resolveSettings({}) });
    await broker.consume(['idle-queue'], { prefetch: 10 }, () => undefined);
    await measureIdle(Number(arg));
    break;
  }
  case 'idle-get': {
    const app = createApp({ brokerUrl: url, resultBackend: url, logger });
    void app.asyncResult(`never-${newId()}`).get();
    await measureIdle(Number(arg));
    break;
  }
  case 'publish': {
    const broker = createSqliteBroker({ url, logger, settings: resolveSettings({}) });
    await broker.connect();
    for (let i = 0; i < Number(arg); i++) {
      await sleep(40);
      await broker.publish('latency', buildTaskMessage({ task: 't', id: newId(), args: [], kwargs: { sentAt: now() } }, JSON_SERIALIZER));
    }
    await broker.close();
    break;
  }
  case 'store': {
    const app = createApp({ brokerUrl: url, resultBackend: url, logger });
    const store = (await app.resultStore())!;
    for (const id of arg.split(',')) {
      await sleep(40);
      await store.store(buildResultMeta({ taskId: id, status: 'SUCCESS', result: now() }));
    }
    await app.close();
    break;
  }
  default:
    throw new Error(`unknown mode ${mode}`);
}
