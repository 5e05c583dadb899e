/**
 * Producer process of the multi-process SQLite test: sends `count` tasks with
 * ids `<prefix>-<i>`, half one by one and half in batches, then exits.
 * Usage: node --import tsx mp-producer.ts <prefix> <count>   (URLs from the environment)
 */
import { app } from './mp-tasks.ts';

const [prefix, countText] = process.argv.slice(2);
const count = Number(countText);
let sent = 0;
for (let i = 0; i < count; ) {
  if (i % 100 < 50) {
    await app.sendTask('mp.double', [i], {}, { taskId: `${prefix}-${i}` });
    i++;
  } else {
    const calls = Array.from({ length: Math.min(50, count - i) }, (_, k) => ({ name: 'mp.double', args: [i + k], options: { taskId: `${prefix}-${i + k}` } }));
    await app.sendMany(calls);
    i += calls.length;
  }
  sent = i;
}
await app.close();
process.stdout.write(`sent ${sent}\n`);
