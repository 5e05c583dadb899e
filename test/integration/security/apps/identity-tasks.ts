/**
 * App module for the run-as-root tests: records that it was loaded (and by
 * whom) when IDENTITY_MARKER names a file, and has a task reporting the
 * identity of the process that runs it.
 */
import { writeFileSync } from 'node:fs';
import { createApp } from '../../../../src/client/app.ts';

if (process.env.IDENTITY_MARKER) writeFileSync(process.env.IDENTITY_MARKER, `loaded by uid ${process.getuid?.()}\n`, { flag: 'a' });

export const app = createApp({});

/** tasks.whoami(): the uid, gid and pid of the process running the task. */
app.task('tasks.whoami', () => ({ uid: process.getuid?.(), euid: process.geteuid?.(), gid: process.getgid?.(), groups: process.getgroups?.(), pid: process.pid }));
