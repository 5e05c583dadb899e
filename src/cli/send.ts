/**
 * `celeriac send` and `celeriac result`: send a task by name, read a result.
 */
import { parseArgs } from 'node:util';
import { PROPAGATE_STATES, READY_STATES, type ResultMeta } from '../protocol/result-meta.ts';
import { appFromArgs } from './load-app.ts';
import { Exit, println, reportError, type CliIo } from './io.ts';
import { applyConnectionFlags, CONNECTION_FLAGS, CONNECTION_HELP } from './flags.ts';
import type { App } from '../client/app.ts';

/** Default --timeout of --wait, in seconds (0 waits without a limit). */
export const DEFAULT_WAIT_TIMEOUT_S = 60;

export const SEND_HELP = `Usage: celeriac send <task> [args-json] [options]

Send a task by name (defined in Celeriac or in Python) and print its id, or
with --wait its result as JSON.

Arguments:
  <task>                    registered task name, e.g. tasks.add
  [args-json]               positional arguments as a JSON array, e.g. '[2, 3]'

Options:
      --kwargs <json>       keyword arguments as a JSON object
      --countdown <s>       run no earlier than s seconds from now
      --eta <iso>           run no earlier than this ISO-8601 time
      --expires <s>         revoke instead of run after s seconds
      --priority <n>        0..9 on Redis (lower first), 0..255 on AMQP (higher first)
  -Q, --queue <name>        queue (default: the task's route or taskDefaultQueue)
      --task-id <id>        use this id instead of a new UUID
  -w, --wait                wait for the result and print it
  -t, --timeout <s>         with --wait: give up after s seconds (exit 3); default
                            ${DEFAULT_WAIT_TIMEOUT_S}, 0 = no limit. A message the worker refuses (unsigned,
                            not an accepted content type, too large…) ends the
                            wait with the worker's reason (exit 1)
${CONNECTION_HELP}
  -h, --help                show this help

Exit codes: 0 sent (or succeeded), 1 the task failed or was revoked,
2 usage error, 3 timeout, 4 configuration or connection error.

Example:
  celeriac send tasks.add '[2, 3]' --wait --timeout 10`;

export const RESULT_HELP = `Usage: celeriac result <task-id> [options]

Print a task's result record as JSON (PENDING when none is stored).

Options:
  -w, --wait                wait until the task is ready
  -t, --timeout <s>         with --wait: give up after s seconds (exit 3); default
                            ${DEFAULT_WAIT_TIMEOUT_S}, 0 = no limit
  -A, --app <module>        module exporting the app
${CONNECTION_HELP}
  -h, --help                show this help

Exit codes: 0 ready and succeeded, or not ready without --wait; 1 failed or
revoked; 2 usage error; 3 timeout; 4 configuration or connection error.`;

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} is not valid JSON: ${text.slice(0, 80)}`);
  }
}

function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number`);
  return n;
}

function printMeta(io: CliIo, meta: ResultMeta): number {
  println(io.stdout, JSON.stringify({ task_id: meta.task_id, status: meta.status, result: meta.result, traceback: meta.traceback, date_done: meta.date_done }));
  return PROPAGATE_STATES.has(meta.status) ? Exit.TASK_FAILED : Exit.OK;
}

/** The reason of a FAILURE the worker wrote for a message it dead-lettered unrun, if `meta` is one. */
function deadLetteredReason(meta: ResultMeta): string | undefined {
  if (meta.status !== 'FAILURE') return undefined;
  const message = (meta.result as { exc_message?: unknown } | null)?.exc_message;
  const first = Array.isArray(message) ? message[0] : message;
  const prefix = 'message dead-lettered: ';
  return typeof first === 'string' && first.startsWith(prefix) ? first.slice(prefix.length) : undefined;
}

/** How long --wait is silent before saying what it waits for, and how often it looks for a rejection. */
const WAIT_NOTICE_MS = 2000;

/**
 * Wait for a task's result and print it. Says on stderr what it is waiting
 * for once the result is not there at once; with `sent`, also watches the
 * queue's dead-letter queue, so a message the worker refused (unsigned,
 * content type not accepted, too large…) is reported with the worker's
 * reason instead of a silent wait and a timeout.
 */
async function waitAndPrint(
  io: CliIo,
  app: App,
  id: string,
  timeoutS: number | undefined,
  sent?: { task: string; queue: string },
): Promise<number> {
  const store = await app.resultStore();
  if (!store) throw new Error('no result backend configured: set CELERIAC_RESULT_BACKEND to wait for results');
  const limitS = timeoutS ?? DEFAULT_WAIT_TIMEOUT_S;
  const controller = new AbortController();
  const what = sent ? `${sent.task}[${id}] on queue ${sent.queue}` : id;
  const notice = setTimeout(() => {
    println(io.stderr, `waiting for the result of ${what} (${limitS > 0 ? `up to ${limitS} s` : 'no time limit'}; --timeout <s> to change)…`);
  }, WAIT_NOTICE_MS);
  let rejected: { reason: string; dlq: string } | undefined;
  const watchDeadLetters = async (): Promise<void> => {
    if (!sent) return;
    const broker = await app.broker();
    while (!controller.signal.aborted) {
      await new Promise((r) => setTimeout(r, WAIT_NOTICE_MS));
      if (controller.signal.aborted) return;
      const letters = await broker.deadLetters(sent.queue, 1000).catch(() => []);
      const mine = letters.find((d) => d.message?.headers.id === id || d.message?.properties.correlation_id === id);
      if (mine) {
        rejected = { reason: mine.reason, dlq: `${sent.queue}.dlq` };
        controller.abort();
      }
    }
  };
  const watcher = watchDeadLetters().catch(() => undefined);
  // The backends' own wait timers do not hold the process open; this command exists to wait.
  const keepAlive = setInterval(() => undefined, 60_000);
  try {
    const meta = await store.wait(id, { ...(limitS > 0 ? { timeoutMs: limitS * 1000 } : {}), signal: controller.signal });
    // The worker records one FAILURE for a message it refused (worker/dead-letter-failure.ts): say so, with its reason.
    const refused = deadLetteredReason(meta);
    if (refused !== undefined) {
      printMeta(io, meta);
      println(io.stderr, `error: the worker refused task ${what} without running it: ${refused}. The message is in the dead-letter queue ${sent ? `${sent.queue}.dlq` : 'of its queue'}; the worker's log has the details.`);
      return Exit.TASK_FAILED;
    }
    return printMeta(io, meta);
  } catch (err) {
    if (rejected) {
      println(io.stderr, `error: the worker refused task ${what} without running it: ${rejected.reason}. The message is in the dead-letter queue ${rejected.dlq}; the worker's log has the details.`);
      return Exit.TASK_FAILED;
    }
    if ((err as { code?: string }).code === 'ERR_TIMEOUT') {
      println(io.stderr, `error: no result for ${what} after ${limitS} s. Is a worker consuming that queue (celeriac worker -Q ${sent?.queue ?? '<queue>'})? A long task needs a larger --timeout (0 = no limit).`);
      return Exit.TIMEOUT;
    }
    throw err;
  } finally {
    clearTimeout(notice);
    clearInterval(keepAlive);
    controller.abort();
    await watcher;
  }
}

export async function runSendCommand(argv: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        kwargs: { type: 'string' },
        countdown: { type: 'string' },
        eta: { type: 'string' },
        expires: { type: 'string' },
        priority: { type: 'string' },
        queue: { type: 'string', short: 'Q' },
        'task-id': { type: 'string' },
        wait: { type: 'boolean', short: 'w' },
        timeout: { type: 'string', short: 't' },
        app: { type: 'string', short: 'A' },
        help: { type: 'boolean', short: 'h' },
        ...CONNECTION_FLAGS,
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    println(io.stderr, `error: ${(err as Error).message}\n\n${SEND_HELP}`);
    return Exit.USAGE;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    println(io.stdout, SEND_HELP);
    return Exit.OK;
  }
  if (positionals.length < 1 || positionals.length > 2) {
    println(io.stderr, `error: expected <task> [args-json]\n\n${SEND_HELP}`);
    return Exit.USAGE;
  }
  let app: App | undefined;
  try {
    const args = positionals[1] !== undefined ? parseJson(positionals[1], 'args') : [];
    if (!Array.isArray(args)) throw new Error('args must be a JSON array, e.g. [2, 3]');
    const kwargs = values.kwargs !== undefined ? parseJson(values.kwargs, '--kwargs') : {};
    if (kwargs === null || typeof kwargs !== 'object' || Array.isArray(kwargs)) throw new Error('--kwargs must be a JSON object');
    applyConnectionFlags(values, io);
    ({ app } = await appFromArgs(values.app, io.cwd));
    const eta = values.eta !== undefined ? new Date(values.eta) : undefined;
    if (eta && Number.isNaN(eta.getTime())) throw new Error('--eta must be an ISO-8601 time');
    const result = await app.sendTask(positionals[0]!, args, kwargs as Record<string, unknown>, {
      countdown: num(values.countdown, '--countdown'),
      eta,
      expires: num(values.expires, '--expires'),
      priority: num(values.priority, '--priority'),
      queue: values.queue,
      taskId: values['task-id'],
    });
    if (!values.wait) {
      println(io.stdout, result.id);
      return Exit.OK;
    }
    const task = positionals[0]!;
    const queue = values.queue ?? app.registry.get(task)?.options.queue ?? app.settings.taskRoutes[task]?.queue ?? app.settings.taskDefaultQueue;
    return await waitAndPrint(io, app, result.id, num(values.timeout, '--timeout'), { task, queue });
  } catch (err) {
    return reportError(io, err);
  } finally {
    await app?.close();
  }
}

export async function runResultCommand(argv: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        wait: { type: 'boolean', short: 'w' },
        timeout: { type: 'string', short: 't' },
        app: { type: 'string', short: 'A' },
        help: { type: 'boolean', short: 'h' },
        ...CONNECTION_FLAGS,
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    println(io.stderr, `error: ${(err as Error).message}\n\n${RESULT_HELP}`);
    return Exit.USAGE;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    println(io.stdout, RESULT_HELP);
    return Exit.OK;
  }
  if (positionals.length !== 1) {
    println(io.stderr, `error: expected one <task-id>\n\n${RESULT_HELP}`);
    return Exit.USAGE;
  }
  let app: App | undefined;
  try {
    applyConnectionFlags(values, io);
    ({ app } = await appFromArgs(values.app, io.cwd));
    const id = positionals[0]!;
    if (values.wait) return await waitAndPrint(io, app, id, num(values.timeout, '--timeout'));
    const store = await app.resultStore();
    if (!store) throw new Error('no result backend configured: set CELERIAC_RESULT_BACKEND');
    const meta = await store.get(id);
    const code = printMeta(io, meta);
    return READY_STATES.has(meta.status) ? code : Exit.OK;
  } catch (err) {
    return reportError(io, err);
  } finally {
    await app?.close();
  }
}
