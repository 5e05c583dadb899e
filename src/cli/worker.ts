/**
 * `celeriac worker`: run a worker for the app in `-A`, with Celery's flags.
 */
import { parseArgs } from 'node:util';
import { defaultLogFormat, defaultLogger, parseLogFormat, parseLogLevel } from '../observability/logging.ts';
import { recordPolicyWarning } from '../observability/policy-events.ts';
import { createWorker } from '../worker/worker.ts';
import { enforceWorkerIdentity } from '../security/privileges.ts';
import { appFromArgs } from './load-app.ts';
import { Exit, println, reportError, type CliIo } from './io.ts';
import { connectWithRetry, startupRetrySettings } from './startup-retry.ts';
import { applyConnectionFlags, CONNECTION_FLAGS, CONNECTION_HELP } from './flags.ts';

export const WORKER_HELP = `Usage: celeriac worker -A <module> [options]

Consume tasks and run them. The module (TypeScript or JavaScript, no build
step) must export the app as "app" or as its default export.

Options:
  -A, --app <module>            module that exports the app (required)
  -Q, --queues <q1,q2>          queues to consume (default: taskDefaultQueue)
  -c, --concurrency <n>         tasks running at once (default: CPU count)
  -n, --hostname <name>         node name, e.g. worker1@%h (default celeriac<pid>@<host>)
  -P, --pool <prefork|solo>     prefork: tasks in child processes (default);
                                solo: in the worker process, no isolation
      --processes <n>           child processes of the prefork pool (default: CPUs − 1, at least 1)
      --prefetch-multiplier <n> prefetch = concurrency × n (default 4)
      --max-memory-per-child <MiB>  heap limit of each child process
      --shutdown-timeout <s>    grace for running tasks on SIGTERM (default 30)
  -E, --task-events             send task events (Celery's -E; default: the
                                workerSendTaskEvents setting)
      --without-heartbeat       send no worker-online/heartbeat/offline events
      --heartbeat-interval <s>  seconds between heartbeat events (default 2)
  -l, --loglevel <level>        debug, info, warning, error, critical (Celery's names;
                                also trace, warn, fatal, silent); default info, or
                                $CELERIAC_LOG_LEVEL
      --log-format <json|text>  text: one readable line per event (default on a
                                terminal); json: one JSON object per line (default
                                otherwise, or $CELERIAC_LOG_FORMAT)
      --uid <user>              drop to this user (name or number) before loading
                                the app module; required when started as root
                                in production (or set CELERIAC_UNSAFE_ALLOW_ROOT=1)
      --gid <group>             group to drop to (default: the user's primary group)
${CONNECTION_HELP}
  -h, --help                    show this help

SIGTERM or SIGINT stops gracefully: consuming stops, tasks not yet started
are requeued, running tasks get the shutdown timeout. A second SIGINT, or
SIGQUIT, exits at once (late-ack messages are restored by the broker).

A broker or result backend that cannot be reached at start-up is retried
with a countdown (2 s, 4 s, … 30 s apart; at most brokerConnectionMaxRetries
attempts, default 100; brokerConnectionRetryOnStartup: false exits at once
with code 4). A wrong password or certificate is not retried.

SIGHUP re-reads the broker and backend URLs from their variables or _FILE
secret files and re-authenticates open connections (secret rotation).

Example:
  CELERIAC_BROKER_URL_FILE=/run/secrets/broker_url celeriac worker -A ./tasks.ts -c 8`;

export async function runWorkerCommand(argv: string[], io: CliIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        app: { type: 'string', short: 'A' },
        queues: { type: 'string', short: 'Q' },
        concurrency: { type: 'string', short: 'c' },
        hostname: { type: 'string', short: 'n' },
        pool: { type: 'string', short: 'P' },
        processes: { type: 'string' },
        'prefetch-multiplier': { type: 'string' },
        'max-memory-per-child': { type: 'string' },
        'shutdown-timeout': { type: 'string' },
        'task-events': { type: 'boolean', short: 'E' },
        'without-heartbeat': { type: 'boolean' },
        'heartbeat-interval': { type: 'string' },
        loglevel: { type: 'string', short: 'l' },
        'log-format': { type: 'string' },
        uid: { type: 'string' },
        gid: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...CONNECTION_FLAGS,
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    println(io.stderr, `error: ${(err as Error).message}\n\n${WORKER_HELP}`);
    return Exit.USAGE;
  }
  if (values.help) {
    println(io.stdout, WORKER_HELP);
    return Exit.OK;
  }
  if (!values.app) {
    println(io.stderr, `error: -A <module> is required\n\n${WORKER_HELP}`);
    return Exit.USAGE;
  }
  // Log settings go to the environment, read by every logger of this process and inherited by the prefork children.
  try {
    if (values.loglevel) process.env.CELERIAC_LOG_LEVEL = parseLogLevel(values.loglevel, '--loglevel');
    process.env.CELERIAC_LOG_FORMAT = values['log-format'] ? parseLogFormat(values['log-format'], '--log-format') : defaultLogFormat();
  } catch (err) {
    println(io.stderr, `error: ${(err as Error).message}\n\n${WORKER_HELP}`);
    return Exit.USAGE;
  }
  const int = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number`);
    return n;
  };
  // The app's connections (opened by the start-up check) would keep a failed worker's process alive: closed on any exit.
  let opened: { close(): Promise<void> } | undefined;
  try {
    applyConnectionFlags(values, io);
    // CEL-020: refuse root in production, or become --uid/--gid, before any app code is loaded.
    enforceWorkerIdentity(values.uid, values.gid, io.env, (w) =>
      recordPolicyWarning(w, defaultLogger()),
    );
    const { app, moduleUrl } = await appFromArgs(values.app, io.cwd);
    opened = app;
    const pool = values.pool ?? 'prefork';
    if (pool !== 'prefork' && pool !== 'solo') throw new Error(`unknown pool ${pool}: use prefork or solo`);
    const controller = new AbortController();
    const worker = createWorker({
      app,
      appModule: moduleUrl,
      queues: values.queues?.split(',').map((q) => q.trim()).filter(Boolean),
      concurrency: int(values.concurrency, '--concurrency'),
      nodeName: values.hostname?.replace('%h', (await import('node:os')).hostname()),
      pool,
      processes: int(values.processes, '--processes'),
      prefetchMultiplier: int(values['prefetch-multiplier'], '--prefetch-multiplier'),
      maxMemoryPerChildMb: int(values['max-memory-per-child'], '--max-memory-per-child'),
      shutdownTimeoutMs: values['shutdown-timeout'] !== undefined ? int(values['shutdown-timeout'], '--shutdown-timeout')! * 1000 : undefined,
      ...(values['task-events'] ? { taskEvents: true } : {}),
      ...(values['without-heartbeat'] ? { heartbeat: false } : {}),
      ...(values['heartbeat-interval'] !== undefined ? { heartbeatIntervalS: positive(values['heartbeat-interval'], '--heartbeat-interval') } : {}),
      signal: controller.signal,
    });
    // Celery's conventions: SIGTERM is always a warm shutdown (repeats are
    // ignored: supervisors and `timeout` may deliver it twice); a second
    // SIGINT (Ctrl-C twice) or SIGQUIT exits at once.
    let interrupts = 0;
    const warm = (sig: NodeJS.Signals): void => {
      if (!controller.signal.aborted) app.logger.info(`${sig} received: warm shutdown`);
      controller.abort();
    };
    const onTerm = (): void => warm('SIGTERM');
    const onInt = (): void => {
      if (++interrupts === 1) warm('SIGINT');
      else cold('SIGINT');
    };
    const cold = (sig: string): void => {
      app.logger.warn(`${sig} received: cold shutdown, exiting now (late-ack messages are restored by the broker)`);
      process.exit(Exit.ERROR);
    };
    const onQuit = (): void => cold('SIGQUIT');
    // SIGHUP: rotate credentials (and keys) without stopping.
    const onHup = (): void => {
      app.logger.info('SIGHUP received: reloading credentials');
      worker.reload().catch((err: unknown) => app.logger.error({ err }, 'SIGHUP: credential reload failed; keeping the current credentials'));
    };
    process.on('SIGHUP', onHup);
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    process.on('SIGQUIT', onQuit);
    // Wait for a broker or backend that is not up yet (Celery's broker_connection_retry_on_startup).
    await connectWithRetry(
      async () => {
        await app.broker();
        await app.resultStore();
      },
      { ...startupRetrySettings(app.settings.connection), warn: (m) => app.logger.warn(m), signal: controller.signal },
    );
    await worker.start();
    await worker.done;
    await app.close();
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    process.off('SIGQUIT', onQuit);
    process.off('SIGHUP', onHup);
    return Exit.OK;
  } catch (err) {
    const code = reportError(io, err);
    // Bounded: a connection stuck reconnecting must not hold the exit.
    await Promise.race([opened?.close().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
    return code;
  }
}

/** A positive number of seconds from a flag. */
function positive(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number of seconds, not ${JSON.stringify(text)}`);
  return n;
}
