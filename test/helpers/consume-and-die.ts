/**
 * Child process for crash tests: take N messages from a queue with a broker
 * built from a URL, then die by SIGKILL without settling any of them.
 * Usage: node --import tsx consume-and-die.ts <url> <queue> <count> <visibilityTimeout>
 */
import { createBroker } from '../../src/transport/index.ts';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';

const [url, queue, countText, vt] = process.argv.slice(2);
const settings = resolveSettings({ brokerTransportOptions: { visibilityTimeout: Number(vt) } });
const broker = await createBroker(url!, { settings, logger: createLogger({ level: 'silent' }) });
await broker.connect();
let n = 0;
await broker.consume([queue!], { prefetch: 0 }, () => {
  if (++n >= Number(countText)) {
    process.stdout.write('taken\n');
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), 50);
  }
});
