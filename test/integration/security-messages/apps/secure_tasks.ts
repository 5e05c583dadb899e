/**
 * App module for `celeriac worker -A` in the message-security tests. Keys
 * and certificates come from the environment the way an operator gives
 * them (CELERIAC_SIGNING_KEYS, CELERIAC_VERIFY_KEYS, CELERY_SECURITY_*…);
 * the test-only knobs are SEC_*.
 */
import { createApp } from '../../../../src/client/app.ts';
import { currentTask } from '../../../../src/worker/context.ts';

const env = process.env;

export const app = createApp({
  taskSerializer: env.SEC_SERIALIZER === 'auth' ? 'auth' : 'json',
  acceptContent: (env.SEC_ACCEPT ?? 'json').split(','),
  ...(env.SEC_BODY_ONLY ? { securityAcceptBodyOnlyFrom: [env.SEC_BODY_ONLY] } : {}),
  taskAcksLate: env.SEC_ACKS_LATE === '1',
  taskRejectOnWorkerLost: env.SEC_ACKS_LATE === '1',
  brokerTransportOptions: { visibilityTimeout: env.SEC_VISIBILITY ? Number(env.SEC_VISIBILITY) : 3600 },
});

/** tasks.add(x, y) */
app.task('tasks.add', (x: number, y: number) => x + y, { params: ['x', 'y'] });

/** tasks.echo(*args, **kwargs), as the Python harness has it. */
app.task('tasks.echo', (...all: unknown[]) => ({ args: all.slice(0, -1), kwargs: all[all.length - 1] }), { kwargs: true });

/** tasks.sleep(seconds): returns the worker process that ran it. */
app.task('tasks.sleep', async (seconds: number) => {
  await new Promise((r) => setTimeout(r, seconds * 1000));
  return { pid: process.pid, retries: currentTask().request.retries };
}, { params: ['seconds'] });

/** tasks.proto_check(): has anything reached Object.prototype in this worker process? */
app.task('tasks.proto_check', () => {
  const probe = {} as Record<string, unknown>;
  return {
    polluted: probe.polluted ?? null,
    isAdmin: probe.isAdmin ?? null,
    ownNames: Object.getOwnPropertyNames(Object.prototype).sort(),
    pid: process.pid,
  };
});
