/**
 * `celeriac beat`: send periodic tasks on schedule, one leader across
 * instances; `celeriac beat status`: the lease and each entry's last and
 * next run.
 */
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { createBeat } from '../beat/beat.ts';
import { beatNodeName, startBeatControl } from '../beat/control.ts';
import { compileSchedule, type CatchUp } from '../beat/schedule.ts';
import { formatBeatStatus, readBeatStatus } from '../beat/status.ts';
import { openBeatStore } from '../client/beat-store.ts';
import { defaultLogFormat, defaultLogger, parseLogFormat, parseLogLevel } from '../observability/logging.ts';
import { recordPolicyWarning } from '../observability/policy-events.ts';
import { createControlGuard } from '../security/control-guard.ts';
import { enforceWorkerIdentity } from '../security/privileges.ts';
import { loadBeatSchedule } from './beat-schedule.ts';
import { applyConnectionFlags, CONNECTION_FLAGS, CONNECTION_HELP } from './flags.ts';
import { Exit, println, reportError, type CliIo } from './io.ts';
import { appFromArgs } from './load-app.ts';
import { connectWithRetry, startupRetrySettings } from './startup-retry.ts';

export const BEAT_HELP = `Usage: celeriac beat -A <module> [options]
       celeriac beat status -A <module> [--json]

Send the tasks of a schedule when they are due. Run two or more instances
for availability: one leader sends (a lease with a fencing token in Redis,
SQLite or PostgreSQL), the others stand by and take over when it stops or
dies. Tasks are sent through the app's client, signed like any other.

The schedule is the app module's "beatSchedule" (or "beat_schedule") export,
or --schedule: Celery's beat_schedule shape, e.g.
  { "add-every-30s": { "task": "tasks.add", "schedule": 30, "args": [2, 2] },
    "report": { "task": "tasks.report", "schedule": { "minute": "0", "hour": "7",
                "timezone": "Europe/Paris" }, "catchUp": "skip" } }

Options:
  -A, --app <module>            module that exports the app (and the schedule)
  -s, --schedule <file>         schedule file (.json, or a module exporting beatSchedule)
      --name <name>             schedule name: instances with one name share a
                                leader and the last runs (default "default")
      --state-url <url>         keep the lease and last runs here (redis://,
                                rediss://, sqlite://, postgres://; default: the
                                broker unless it is RabbitMQ, else the result
                                backend)
      --lease <s>               lease length (default 15): a dead leader is
                                replaced within about this long
      --grace <s>               missed ticks at most this old are all sent after
                                a leader change (default 2 × lease + 1)
      --catch-up <skip|runOnce> for entries that set none: after downtime, skip
                                the missed ticks or send one (default runOnce)
      --timezone <zone>         default time zone of crontab entries (default UTC)
  -n, --hostname <name>         node name on the control plane, e.g. beat1@%h
                                (default beat.<name>.<pid>@<host>)
  -l, --loglevel <level>        debug, info, warning, error (default info)
      --log-format <json|text>  text on a terminal, json otherwise
      --uid <user>              drop to this user before loading the app module
      --gid <group>             group to drop to
${CONNECTION_HELP}
      --json                    (status) print JSON
  -h, --help                    show this help

Each instance answers remote control as a node of its own (celeriac inspect
ping, Python's celery inspect ping, app.control), behind the same control
guard as workers: ping, stats (a "beat" section), report, conf, and
beat_status (celeriac inspect beat_status: the lease and every entry).

SIGTERM or SIGINT stops: the lease is released so a standby takes over at once.`;

export async function runBeatCommand(argv: string[], io: CliIo): Promise<number> {
  const status = argv[0] === 'status';
  let values;
  try {
    ({ values } = parseArgs({
      args: status ? argv.slice(1) : argv,
      options: {
        app: { type: 'string', short: 'A' },
        schedule: { type: 'string', short: 's' },
        name: { type: 'string' },
        'state-url': { type: 'string' },
        lease: { type: 'string' },
        grace: { type: 'string' },
        'catch-up': { type: 'string' },
        timezone: { type: 'string' },
        hostname: { type: 'string', short: 'n' },
        loglevel: { type: 'string', short: 'l' },
        'log-format': { type: 'string' },
        uid: { type: 'string' },
        gid: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        ...CONNECTION_FLAGS,
      },
      strict: true,
      allowPositionals: false,
    }));
    if (values.loglevel) process.env.CELERIAC_LOG_LEVEL = parseLogLevel(values.loglevel, '--loglevel');
    process.env.CELERIAC_LOG_FORMAT = values['log-format'] ? parseLogFormat(values['log-format'], '--log-format') : defaultLogFormat();
  } catch (err) {
    println(io.stderr, `error: ${(err as Error).message}\n\n${BEAT_HELP}`);
    return Exit.USAGE;
  }
  if (values.help) {
    println(io.stdout, BEAT_HELP);
    return Exit.OK;
  }
  const seconds = (v: string | undefined, flag: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number of seconds, not ${JSON.stringify(v)}`);
    return n * 1000;
  };
  let opened: Array<{ close(): Promise<void> }> = [];
  try {
    const catchUp = values['catch-up'];
    if (catchUp !== undefined && catchUp !== 'skip' && catchUp !== 'runOnce') throw new Error('--catch-up must be skip or runOnce');
    const leaseMs = seconds(values.lease, '--lease');
    const graceMs = seconds(values.grace, '--grace');
    applyConnectionFlags(values, io);
    if (!status) enforceWorkerIdentity(values.uid, values.gid, io.env, (w) => recordPolicyWarning(w, defaultLogger()));
    const { app, moduleUrl } = await appFromArgs(values.app, io.cwd);
    opened.push(app);
    const schedule = await loadBeatSchedule(values.schedule, moduleUrl, io.cwd);
    const entries = compileSchedule(schedule, { timezone: values.timezone, catchUp: catchUp as CatchUp | undefined });
    app.enforceSecurityPolicy();
    const { store, where } = await openBeatStore(app, { stateUrl: values['state-url'], namespace: values.name });
    opened = [store, ...opened];
    if (status) {
      const s = await readBeatStatus(store, entries);
      println(io.stdout, values.json ? JSON.stringify(s, null, 2) : formatBeatStatus(s));
      await Promise.all(opened.map((o) => o.close()));
      return Exit.OK;
    }
    app.logger.info(`beat: state and lease in ${where}`);
    const controller = new AbortController();
    const stop = (sig: string) => (): void => {
      if (!controller.signal.aborted) app.logger.info(`${sig} received: stopping beat and releasing the lease`);
      controller.abort();
    };
    const onTerm = stop('SIGTERM');
    const onInt = stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    await connectWithRetry(async () => void (await app.broker()), { ...startupRetrySettings(app.settings.connection), warn: (m) => app.logger.warn(m), signal: controller.signal });
    const namespace = values.name ?? 'default';
    const nodeName = values.hostname?.replace('%h', hostname()) ?? beatNodeName(namespace);
    // Built before the first send: a bad allow-list or audit-log path stops the start, as for a worker.
    const guard = createControlGuard({ settings: app.settings, logger: app.logger, hostname: nodeName });
    opened = [guard, ...opened];
    const beat = createBeat({ app, schedule: entries, store, namespace: values.name, leaseMs, graceMs, signal: controller.signal });
    let control;
    try {
      control = await startBeatControl({ beat, store, namespace, nodeName, settings: app.settings, broker: await app.broker(), guard, logger: app.logger });
    } catch (err) {
      await beat.stop();
      throw err;
    }
    // Closing the mailbox closes its guard too.
    opened = [control, ...opened.filter((o) => o !== guard)];
    app.logger.info({ node: nodeName }, `beat: answering remote control as ${nodeName}`);
    await beat.done;
    await control.close();
    await store.close();
    await app.close();
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    return Exit.OK;
  } catch (err) {
    const code = reportError(io, err);
    await Promise.race([Promise.all(opened.map((o) => o.close().catch(() => undefined))), new Promise((r) => setTimeout(r, 5000).unref())]);
    return code;
  }
}
