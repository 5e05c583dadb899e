/**
 * Tasks for the SIGHUP rotation test: `rot.mark(i)` appends `i` to the file
 * named by CELERIAC_TEST_MARKS, so the test can check that every task of
 * the stream ran exactly once. URLs come from the environment (and its
 * _FILE / ${file:} secrets); a short visibility timeout restores deliveries
 * whose reserve reply was lost when the connection was killed.
 */
import { appendFileSync } from 'node:fs';
import { createApp } from '../../../../src/client/app.ts';

const marks = process.env.CELERIAC_TEST_MARKS;

export const app = createApp({
  acceptContent: ['json'],
  brokerTransportOptions: { visibilityTimeout: Number(process.env.CELERIAC_VISIBILITY ?? 3600) },
});

export const mark = app.task(
  'rot.mark',
  async (i: number) => {
    if (!marks) throw new Error('CELERIAC_TEST_MARKS is not set');
    appendFileSync(marks, `${i} ${process.pid}\n`);
    await new Promise((r) => setTimeout(r, 5));
    return i;
  },
  { params: ['i'] },
);
