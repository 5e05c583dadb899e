/**
 * Child process of the SQLite fanout test.
 *   sub <url> <exchange> <count>: subscribe, print READY, print each received `n`, exit after `count` (or 20 s).
 *   pub <url> <exchange> <count>: broadcast `count` messages (n = 0…count-1) with routing key task.sent, then exit.
 */
import { createSqliteBroker } from '../../../src/transport/sqlite/broker.ts';
import { resolveSettings } from '../../../src/config/options.ts';
import { createLogger } from '../../../src/observability/logging.ts';
import type { Exchange } from '../../../src/core/broker.ts';

const [mode, url, name, countText] = process.argv.slice(2);
const count = Number(countText);
const exchange: Exchange = { name: name!, type: 'topic', durable: true };
const broker = createSqliteBroker({ url: url!, logger: createLogger({ level: 'silent' }), settings: resolveSettings({}) });
if (mode === 'sub') {
  let got = 0;
  const timer = setTimeout(() => void broker.close().then(() => process.exit(2)), 20_000);
  await broker.subscribe(exchange, {}, (d) => {
    process.stdout.write(`${(JSON.parse(d.message.body.toString()) as { n: number }).n}\n`);
    if (++got === count) {
      clearTimeout(timer);
      void broker.close();
    }
  });
  process.stdout.write('READY\n');
} else {
  for (let n = 0; n < count; n++) {
    await broker.broadcast(exchange, 'task.sent', { headers: {}, properties: { delivery_mode: 1 }, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from(JSON.stringify({ n })) });
  }
  await broker.close();
}
