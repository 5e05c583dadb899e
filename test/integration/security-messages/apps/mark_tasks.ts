/**
 * App module for the weak-mode tests: `tasks.mark(tag)` appends
 * `<tag> <pid>` to the file named by MARKS, so a test counts runs without a
 * result backend.
 */
import { appendFileSync } from 'node:fs';
import { createApp } from '../../../../src/client/app.ts';

export const app = createApp({});

app.task('tasks.mark', (tag: string) => {
  appendFileSync(process.env.MARKS!, `${tag} ${process.pid}\n`);
  return tag;
}, { params: ['tag'] });
