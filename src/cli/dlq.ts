/**
 * `celeriac dlq` (dead letters: list, show, redrive, drop) and
 * `celeriac purge` (empty queues), over the Broker interface.
 */
import { parseArgs } from 'node:util';
import { appFromArgs } from './load-app.ts';
import { Exit, println, reportError, type CliIo } from './io.ts';
import { applyConnectionFlags, CONNECTION_FLAGS, CONNECTION_HELP } from './flags.ts';
import { cell, confirm, paint, table, type ConfirmInput } from './ops-output.ts';
import { deadLetterId, deadLetterQueueName, type Broker, type DeadLetter } from '../core/broker.ts';
import { ConfigError } from '../errors.ts';
import type { App } from '../client/app.ts';

export const DLQ_HELP = `Usage: celeriac dlq <list|show|redrive|drop> [id...] [options]

Dead letters: messages a worker refused or could not run (unknown task,
bad signature, too large, poison message…), kept with the reason in the
queue's dead-letter queue <queue>.dlq.

Commands:
  list                  one line per dead letter: time, task id, task, reason
  show [id...]          each dead letter in full (headers, reason, body)
  redrive [id...]       send them again to their queue (or --to), each once;
                        a truncated record (too large to keep whole) is refused
  drop [id...]          delete them for good (asks first unless --yes)
Without ids, redrive and drop take every dead letter (up to --limit).

Options:
  -Q, --queue <name>    the queue whose dead letters to use (default: taskDefaultQueue)
      --to <queue>      redrive: send to this queue instead
  -n, --limit <n>       at most n dead letters (oldest first; list: default 100)
  -y, --yes             drop: do not ask first
  -j, --json            print JSON
  -A, --app <module>    module exporting the app
${CONNECTION_HELP}
  -h, --help            show this help

Exit codes: 0 done, 1 some dead letters were refused (redrive), 2 usage
error, 4 configuration or connection error.

Example:
  celeriac dlq redrive -Q celery     # after deploying the task that was missing`;

export const PURGE_HELP = `Usage: celeriac purge [options]

Delete every waiting message of queues (there is no undo). Messages held by
workers (running or reserved) are not touched. Asks first unless --yes.

Options:
  -Q, --queue <name>    queue to purge; repeat or comma-separate (default: taskDefaultQueue)
  -y, --yes             do not ask first
  -j, --json            print JSON {"queue": removed, ...}
  -A, --app <module>    module exporting the app
${CONNECTION_HELP}
  -h, --help            show this help

Exit codes: 0 purged, 2 usage error or not confirmed, 4 configuration or connection error.`;

const FLAGS = {
  queue: { type: 'string', short: 'Q', multiple: true },
  to: { type: 'string' },
  limit: { type: 'string', short: 'n' },
  yes: { type: 'boolean', short: 'y' },
  json: { type: 'boolean', short: 'j' },
  app: { type: 'string', short: 'A' },
  help: { type: 'boolean', short: 'h' },
  ...CONNECTION_FLAGS,
} as const;

type Values = { queue?: string[]; to?: string; limit?: string; yes?: boolean; json?: boolean; app?: string; help?: boolean; broker?: string; 'result-backend'?: string };

function queuesOf(values: Values, app: App): string[] {
  const list = (values.queue ?? []).flatMap((q) => q.split(',')).map((q) => q.trim()).filter(Boolean);
  return list.length ? list : [app.settings.taskDefaultQueue];
}

function limitOf(values: Values): number | undefined {
  if (values.limit === undefined) return undefined;
  const n = Number(values.limit);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError('--limit must be a positive integer', { hint: 'e.g. --limit 10' });
  return n;
}

function summary(d: DeadLetter): Record<string, unknown> {
  return {
    id: deadLetterId(d) ?? null,
    task: d.message?.headers.task ?? null,
    queue: d.queue,
    reason: d.reason,
    at: d.at ? new Date(d.at).toISOString() : null,
    truncated: d.truncated === true,
  };
}

function full(d: DeadLetter): Record<string, unknown> {
  return {
    ...summary(d),
    headers: d.message?.headers ?? null,
    properties: d.message?.properties ?? null,
    contentType: d.message?.contentType ?? null,
    body: d.message ? d.message.body.toString(d.message.contentType.includes('json') ? 'utf8' : 'base64') : null,
    raw: d.message ? undefined : d.raw,
  };
}

function need<K extends 'redriveDeadLetters' | 'dropDeadLetters'>(broker: Broker, member: K): NonNullable<Broker[K]> {
  const fn = broker[member];
  if (!fn) throw new ConfigError(`the ${broker.kind} broker cannot ${member === 'redriveDeadLetters' ? 'redrive' : 'drop'} dead letters`, { hint: 'use Redis, RabbitMQ, SQLite or memory' });
  return fn.bind(broker) as NonNullable<Broker[K]>;
}

async function withBroker(io: CliIo, values: Values, fn: (broker: Broker, app: App) => Promise<number>): Promise<number> {
  let app: App | undefined;
  try {
    applyConnectionFlags(values, io);
    ({ app } = await appFromArgs(values.app, io.cwd));
    return await fn(await app.broker(), app);
  } catch (err) {
    return reportError(io, err);
  } finally {
    await app?.close();
  }
}

function parse(argv: string[], io: CliIo, help: string): { values: Values; positionals: string[] } | number {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: true });
    if (values.help) {
      println(io.stdout, help);
      return Exit.OK;
    }
    return { values, positionals };
  } catch (err) {
    println(io.stderr, `error: ${(err as Error).message}\n\n${help}`);
    return Exit.USAGE;
  }
}

export async function runDlqCommand(argv: string[], io: CliIo & ConfirmInput): Promise<number> {
  const p = parse(argv, io, DLQ_HELP);
  if (typeof p === 'number') return p;
  const [command, ...ids] = p.positionals;
  if (!command || !['list', 'show', 'redrive', 'drop'].includes(command)) {
    println(io.stderr, `error: ${command ? `unknown dlq command ${JSON.stringify(command)}` : 'expected list, show, redrive or drop'}\n\n${DLQ_HELP}`);
    return Exit.USAGE;
  }
  if (command === 'list' && ids.length) {
    println(io.stderr, 'error: list takes no ids (use show <id...>)');
    return Exit.USAGE;
  }
  const { values } = p;
  return withBroker(io, values, async (broker, app) => {
    const limit = limitOf(values);
    const selection = { ...(ids.length ? { ids } : {}), ...(limit !== undefined ? { limit } : {}) };
    const queues = queuesOf(values, app);
    if (command === 'list' || command === 'show') {
      const out: DeadLetter[] = [];
      for (const queue of queues) {
        const letters = await broker.deadLetters(queue, command === 'list' ? (limit ?? 100) : 100_000);
        out.push(...(ids.length ? letters.filter((d) => ids.includes(deadLetterId(d) ?? '')) : letters));
      }
      if (values.json) {
        println(io.stdout, JSON.stringify(out.map(command === 'list' ? summary : full)));
        return Exit.OK;
      }
      if (!out.length) {
        println(io.stdout, `no dead letters in ${queues.map(deadLetterQueueName).join(', ')}${ids.length ? ' with those ids' : ''}`);
        return Exit.OK;
      }
      if (command === 'list') {
        println(io.stdout, table(['at', 'id', 'task', 'queue', 'reason'], out.map((d) => {
          const s = summary(d);
          return [String(s.at ?? '-'), String(s.id ?? '-'), String(s.task ?? '-'), d.queue, `${d.truncated ? paint(io, io.stdout, 'yellow', '[truncated] ') : ''}${cell(d.reason, 100)}`];
        })));
        println(io.stdout, `\n${out.length} dead ${out.length === 1 ? 'letter' : 'letters'}.`);
      } else {
        for (const d of out) println(io.stdout, JSON.stringify(full(d), null, 2));
      }
      return Exit.OK;
    }
    if (command === 'drop') {
      if (!(await confirm(io, `This deletes ${ids.length ? `${ids.length} dead letter(s)` : `${limit ?? 'every'} dead letter(s)`} of ${queues.map(deadLetterQueueName).join(', ')} for good.`, values.yes))) return Exit.USAGE;
      const drop = need(broker, 'dropDeadLetters');
      const counts: Record<string, number> = {};
      for (const queue of queues) counts[queue] = await drop(queue, selection);
      if (values.json) println(io.stdout, JSON.stringify(counts));
      else for (const [queue, n] of Object.entries(counts)) println(io.stdout, `${queue}.dlq: dropped ${n}`);
      return Exit.OK;
    }
    const redrive = need(broker, 'redriveDeadLetters');
    const results: Record<string, Awaited<ReturnType<typeof redrive>>> = {};
    for (const queue of queues) results[queue] = await redrive(queue, { ...selection, ...(values.to ? { to: values.to } : {}) });
    const refused = Object.values(results).some((r) => r.refused.length > 0);
    if (values.json) {
      println(io.stdout, JSON.stringify(results));
    } else {
      for (const [queue, r] of Object.entries(results)) {
        println(io.stdout, `${queue}.dlq: redriven ${r.moved.length} to ${values.to ?? queue}${r.refused.length ? `, ${paint(io, io.stdout, 'yellow', `refused ${r.refused.length}`)}` : ''}`);
        for (const x of r.refused) println(io.stdout, `  ${x.id ?? '(no id)'}: ${x.reason}`);
      }
    }
    return refused ? Exit.TASK_FAILED : Exit.OK;
  });
}

export async function runPurgeCommand(argv: string[], io: CliIo & ConfirmInput): Promise<number> {
  const p = parse(argv, io, PURGE_HELP);
  if (typeof p === 'number') return p;
  if (p.positionals.length || p.values.to || p.values.limit) {
    println(io.stderr, `error: purge takes only -Q queues\n\n${PURGE_HELP}`);
    return Exit.USAGE;
  }
  const { values } = p;
  let app: App | undefined;
  try {
    applyConnectionFlags(values, io);
    ({ app } = await appFromArgs(values.app, io.cwd));
    const queues = queuesOf(values, app);
    if (!(await confirm(io, `This deletes every waiting message of ${queues.join(', ')}; there is no undo.`, values.yes))) return Exit.USAGE;
    const broker = await app.broker();
    const counts: Record<string, number> = {};
    for (const queue of queues) counts[queue] = await broker.purge(queue);
    if (values.json) println(io.stdout, JSON.stringify(counts));
    else {
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      println(io.stdout, `Purged ${total} ${total === 1 ? 'message' : 'messages'} from ${queues.length} ${queues.length === 1 ? 'queue' : 'queues'}.`);
    }
    return Exit.OK;
  } catch (err) {
    return reportError(io, err);
  } finally {
    await app?.close();
  }
}
