/**
 * `celeriac inspect`, `celeriac control` and `celeriac status`: Celery's
 * remote control from the command line, through `app.control` (so Python
 * and Celeriac workers answer alike).
 */
import { parseArgs } from 'node:util';
import { appFromArgs } from './load-app.ts';
import { Exit, println, reportError, type CliIo } from './io.ts';
import { applyConnectionFlags, CONNECTION_FLAGS, CONNECTION_HELP } from './flags.ts';
import { cell, confirm, paint, table, timeoutMs, type ConfirmInput } from './ops-output.ts';
import type { App } from '../client/app.ts';
import type { Control, ControlReply } from '../client/control.ts';
import { BEAT_STATUS_COMMAND, type BeatStatusReply } from '../beat/control.ts';
import { formatBeatStatus } from '../beat/status.ts';

/** Commands and how each is sent; `args` maps positionals to the command's arguments. */
const INSPECT: Record<string, { summary: string; usage?: string; args?: (p: string[]) => Record<string, unknown> }> = {
  ping: { summary: 'ask every worker to answer pong' },
  stats: { summary: 'worker statistics (pid, uptime, pool, totals per task, broker)' },
  active: { summary: 'tasks running now', args: () => ({ safe: null }) },
  reserved: { summary: 'tasks received and waiting to run', args: () => ({ safe: null }) },
  scheduled: { summary: 'tasks held until their ETA or countdown (the worker view of delayed tasks)', args: () => ({ safe: null }) },
  registered: { summary: 'task names each worker knows', usage: '[attr...]', args: (p) => ({ taskinfoitems: p }) },
  revoked: { summary: 'ids of revoked tasks' },
  active_queues: { summary: 'queues each worker consumes' },
  query_task: { summary: 'where given tasks are (active, reserved, scheduled)', usage: '<id...>', args: (p) => ({ ids: p }) },
  conf: { summary: "each node's configuration, Celery's setting names (secrets masked)", usage: '[--with-defaults]' },
  beat_status: { summary: 'each celeriac beat: leader or standby, the lease, every entry (last/next tick)' },
};

const OPTIONS_HELP = `  -d, --destination <node>  only this worker (name@host); repeat or comma-separate
  -t, --timeout <s>         wait this long for replies (default 1)
  -j, --json                print JSON: {"node": reply, ...}
  -A, --app <module>        module exporting the app
${CONNECTION_HELP}
  -h, --help                show this help`;

export const INSPECT_HELP = `Usage: celeriac inspect <command> [args] [options]

Ask running workers (Celeriac and Python Celery) and celeriac beat
instances a read-only question.

Commands:
${Object.entries(INSPECT)
  .map(([name, c]) => `  ${`${name} ${c.usage ?? ''}`.padEnd(22)}  ${c.summary}`)
  .join('\n')}

Options:
${OPTIONS_HELP}

Exit codes: 0 at least one worker replied, 2 usage error, 3 no worker
replied in time, 4 configuration or connection error.

Example:
  celeriac inspect active -d worker1@host --json`;

export const CONTROL_HELP = `Usage: celeriac control <command> [args] [options]

Send a command to running workers and print their replies.

Commands:
  revoke <id...>                  do not run these tasks [--terminate [--signal SIG]]
  terminate <signal> <id...>      revoke and stop them if running
  rate_limit <task> <rate>        e.g. 10/m, 5/s, 100/h (0 = no limit)
  time_limit <task> <soft> [hard] seconds
  shutdown                        warm shutdown (asks first unless --yes)
  pool_grow [n] / pool_shrink [n] change the pool size by n (default 1)
  add_consumer <queue>            start (resume) consuming a queue
  cancel_consumer <queue>         stop (pause) consuming a queue
  enable_events / disable_events  task events on or off
  heartbeat                       ask for a heartbeat event

Options:
      --terminate           with revoke: stop the task if it is running
      --signal <SIG>        with revoke --terminate (default SIGTERM)
  -y, --yes                 do not ask before shutdown
${OPTIONS_HELP}

Exit codes: 0 sent (and at least one reply), 2 usage error, 3 no worker
replied in time, 4 configuration or connection error.`;

export const STATUS_HELP = `Usage: celeriac status [options]

List the workers that answer a ping (Celeriac and Python Celery), one per line.

Options:
${OPTIONS_HELP}

Exit codes: 0 at least one worker online, 3 none replied, 4 configuration or
connection error.`;

const FLAGS = {
  destination: { type: 'string', short: 'd', multiple: true },
  timeout: { type: 'string', short: 't' },
  json: { type: 'boolean', short: 'j' },
  app: { type: 'string', short: 'A' },
  help: { type: 'boolean', short: 'h' },
  ...CONNECTION_FLAGS,
} as const;

const CONTROL_FLAGS = { ...FLAGS, terminate: { type: 'boolean' }, signal: { type: 'string' }, yes: { type: 'boolean', short: 'y' }, 'with-defaults': { type: 'boolean' } } as const;

type Values = { destination?: string[]; timeout?: string; json?: boolean; app?: string; broker?: string; 'result-backend'?: string };

function destinations(v: Values): string[] | undefined {
  const list = (v.destination ?? []).flatMap((d) => d.split(',')).map((d) => d.trim()).filter(Boolean);
  return list.length ? list : undefined;
}

/** Run `fn` with the app the flags configure, closing it after. */
async function withControl(io: CliIo, values: Values, fn: (control: Control, app: App) => Promise<number>): Promise<number> {
  let app: App | undefined;
  try {
    applyConnectionFlags(values, io);
    ({ app } = await appFromArgs(values.app, io.cwd));
    return await fn(app.control, app);
  } catch (err) {
    return reportError(io, err);
  } finally {
    await app?.close();
  }
}

function noReply(io: CliIo): number {
  println(io.stderr, 'error: no worker replied in time. Are workers running on this broker? A busy worker may need a larger --timeout.');
  return Exit.TIMEOUT;
}

/** One node's reply, readable. */
function render(reply: unknown): string[] {
  if (Array.isArray(reply)) {
    if (reply.length === 0) return ['    - empty -'];
    if (reply.every((r) => typeof r === 'string')) return reply.map((r) => `    * ${r}`);
    const rows = reply.map((r) => {
      const o = (r && typeof r === 'object' ? r : {}) as Record<string, unknown>;
      const req = (o.request && typeof o.request === 'object' ? o.request : o) as Record<string, unknown>;
      return [cell(req.id ?? o.name ?? ''), cell(req.name ?? req.type ?? o.exchange ?? ''), cell(o.eta ?? req.args ?? o.routing_key ?? '', 40), cell(req.worker_pid ?? o.priority ?? '')];
    });
    const head = reply.some((r) => r && typeof r === 'object' && 'eta' in r) ? ['id', 'name', 'eta', 'priority'] : ['id/queue', 'name/exchange', 'args/routing key', 'pid'];
    return table(head, rows).split('\n').map((l) => `    ${l}`);
  }
  if (reply && typeof reply === 'object') {
    const o = reply as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && (keys[0] === 'ok' || keys[0] === 'error')) return [`    ${keys[0]}: ${cell(o[keys[0]!], 200)}`];
    return JSON.stringify(o, null, 2).split('\n').map((l) => `    ${l}`);
  }
  return [`    ${String(reply)}`];
}

function printReplies(io: CliIo, replies: ControlReply[], json: boolean | undefined): number {
  if (replies.length === 0) return noReply(io);
  if (json) {
    println(io.stdout, JSON.stringify(Object.assign({}, ...replies)));
    return Exit.OK;
  }
  const nodes = replies.flatMap((r) => Object.entries(r)).sort(([a], [b]) => a.localeCompare(b));
  for (const [node, reply] of nodes) {
    const failed = reply && typeof reply === 'object' && 'error' in reply;
    println(io.stdout, `-> ${node}: ${failed ? paint(io, io.stdout, 'red', 'ERROR') : paint(io, io.stdout, 'green', 'OK')}`);
    for (const line of render(reply)) println(io.stdout, line);
  }
  println(io.stdout, `\n${nodes.length} ${nodes.length === 1 ? 'node' : 'nodes'} online.`);
  return Exit.OK;
}

/** A worker's answer to `beat_status`: it has no such command (kombu's KeyError). */
const NOT_A_BEAT = `KeyError('${BEAT_STATUS_COMMAND}')`;

/** A reply with control characters in its strings replaced: a node on the broker must not drive the operator's terminal. */
function printable<T>(value: T): T {
  return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'string' ? v.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?') : v))) as T;
}

/** `inspect beat_status`: the beats' replies, readable; nodes without the command (workers) left out. */
function printBeatStatus(io: CliIo, replies: ControlReply[], json: boolean | undefined): number {
  const nodes = replies
    .flatMap((r) => Object.entries(json ? r : printable(r)))
    .filter(([, reply]) => !(reply && typeof reply === 'object' && (reply as { error?: unknown }).error === NOT_A_BEAT))
    .sort(([a], [b]) => a.localeCompare(b));
  if (nodes.length === 0) {
    println(io.stderr, 'error: no celeriac beat replied in time. Is `celeriac beat` running on this broker? A larger --timeout may help.');
    return Exit.TIMEOUT;
  }
  if (json) {
    println(io.stdout, JSON.stringify(Object.fromEntries(nodes)));
    return Exit.OK;
  }
  nodes.forEach(([node, reply], i) => {
    const r = reply as Partial<BeatStatusReply> & { error?: unknown };
    if (i > 0) println(io.stdout, '');
    if (!r || typeof r !== 'object' || r.error !== undefined || !Array.isArray(r.entries)) {
      println(io.stdout, `-> ${node}: ${paint(io, io.stdout, 'red', 'ERROR')}`);
      for (const line of render(reply)) println(io.stdout, line);
      return;
    }
    const role = r.role === 'leader' ? paint(io, io.stdout, 'green', `leader (fencing token ${String(r.fencingToken)})`) : 'standby';
    println(io.stdout, `-> ${node}: ${role}  schedule ${String(r.namespace)}, holder ${String(r.holder)}`);
    for (const line of formatBeatStatus({ leader: r.leader, entries: r.entries }).split('\n')) println(io.stdout, `    ${line}`);
  });
  println(io.stdout, `\n${nodes.length} beat ${nodes.length === 1 ? 'instance' : 'instances'} online.`);
  return Exit.OK;
}

function parse(argv: string[], io: CliIo, help: string, options: typeof FLAGS | typeof CONTROL_FLAGS): { values: Values & Record<string, unknown>; positionals: string[] } | number {
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    if (values.help) {
      println(io.stdout, help);
      return Exit.OK;
    }
    return { values: values as Values & Record<string, unknown>, positionals };
  } catch (err) {
    println(io.stderr, `error: ${(err as Error).message}\n\n${help}`);
    return Exit.USAGE;
  }
}

export async function runInspectCommand(argv: string[], io: CliIo): Promise<number> {
  const p = parse(argv, io, INSPECT_HELP, CONTROL_FLAGS);
  if (typeof p === 'number') return p;
  const [command, ...rest] = p.positionals;
  const spec = command ? INSPECT[command.replace(/-/g, '_')] : undefined;
  if (!spec) {
    println(io.stderr, `error: ${command ? `unknown inspect command ${JSON.stringify(command)}` : 'expected an inspect command'}\n\n${INSPECT_HELP}`);
    return Exit.USAGE;
  }
  const method = command!.replace(/-/g, '_');
  if (method === 'query_task' && rest.length === 0) {
    println(io.stderr, 'error: query_task needs at least one task id');
    return Exit.USAGE;
  }
  let args = spec.args?.(rest) ?? {};
  if (method === 'conf') args = { with_defaults: p.values['with-defaults'] === true };
  return withControl(io, p.values, async (control) => {
    const replies = await control.broadcast(method, args, { reply: true, destination: destinations(p.values), timeoutMs: timeoutMs(p.values.timeout, 1) });
    if (method === BEAT_STATUS_COMMAND) return printBeatStatus(io, replies, p.values.json);
    return printReplies(io, replies, p.values.json);
  });
}

/** A control command's wire method and arguments from its positionals, or a usage error. */
function controlCall(command: string, rest: string[], values: Record<string, unknown>): { method: string; args: Record<string, unknown> } | string {
  const int = (v: string | undefined, name: string): number => {
    const n = v === undefined ? 1 : Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
    return n;
  };
  const secs = (v: string | undefined, name: string): number | null => {
    if (v === undefined) return null;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number of seconds`);
    return n;
  };
  switch (command) {
    case 'revoke':
      if (!rest.length) return 'revoke needs at least one task id';
      return { method: 'revoke', args: { task_id: rest.length === 1 ? rest[0] : rest, terminate: values.terminate === true, signal: (values.signal as string | undefined) ?? 'SIGTERM' } };
    case 'terminate':
      if (rest.length < 2) return 'terminate needs <signal> <id...>';
      return { method: 'revoke', args: { task_id: rest.length === 2 ? rest[1] : rest.slice(1), terminate: true, signal: rest[0] } };
    case 'rate_limit':
      if (rest.length !== 2) return 'rate_limit needs <task> <rate>';
      return { method: 'rate_limit', args: { task_name: rest[0], rate_limit: rest[1] } };
    case 'time_limit':
      if (rest.length < 2 || rest.length > 3) return 'time_limit needs <task> <soft> [hard]';
      return { method: 'time_limit', args: { task_name: rest[0], soft: secs(rest[1], 'soft'), hard: secs(rest[2], 'hard') } };
    case 'pool_grow':
    case 'pool_shrink':
      return { method: command, args: { n: int(rest[0], 'n') } };
    case 'add_consumer':
      if (rest.length < 1) return 'add_consumer needs <queue>';
      return { method: 'add_consumer', args: { queue: rest[0], exchange: rest[1] ?? null, exchange_type: rest[2] ?? 'direct', routing_key: rest[3] ?? null } };
    case 'cancel_consumer':
      if (rest.length !== 1) return 'cancel_consumer needs <queue>';
      return { method: 'cancel_consumer', args: { queue: rest[0] } };
    case 'shutdown':
    case 'enable_events':
    case 'disable_events':
    case 'heartbeat':
    case 'ping':
      return { method: command, args: {} };
    default:
      return `unknown control command ${JSON.stringify(command)}`;
  }
}

export async function runControlCommand(argv: string[], io: CliIo & ConfirmInput): Promise<number> {
  const p = parse(argv, io, CONTROL_HELP, CONTROL_FLAGS);
  if (typeof p === 'number') return p;
  const [raw, ...rest] = p.positionals;
  if (!raw) {
    println(io.stderr, `error: expected a control command\n\n${CONTROL_HELP}`);
    return Exit.USAGE;
  }
  let call: ReturnType<typeof controlCall>;
  try {
    call = controlCall(raw.replace(/-/g, '_'), rest, p.values);
  } catch (err) {
    call = (err as Error).message;
  }
  if (typeof call === 'string') {
    println(io.stderr, `error: ${call}\n\n${CONTROL_HELP}`);
    return Exit.USAGE;
  }
  const { method, args } = call;
  const dest = destinations(p.values);
  if (method === 'shutdown' && !(await confirm(io, `This shuts down ${dest ? dest.join(', ') : 'EVERY worker on this broker'}.`, p.values.yes === true))) return Exit.USAGE;
  return withControl(io, p.values, async (control) => {
    const replies = await control.broadcast(method, args, { reply: true, destination: dest, timeoutMs: timeoutMs(p.values.timeout, 1) });
    return printReplies(io, replies, p.values.json);
  });
}

export async function runStatusCommand(argv: string[], io: CliIo): Promise<number> {
  const p = parse(argv, io, STATUS_HELP, FLAGS);
  if (typeof p === 'number') return p;
  if (p.positionals.length) {
    println(io.stderr, `error: status takes no arguments\n\n${STATUS_HELP}`);
    return Exit.USAGE;
  }
  return withControl(io, p.values, async (control) => {
    const replies = await control.ping({ destination: destinations(p.values), timeoutMs: timeoutMs(p.values.timeout, 1) });
    const nodes = replies.flatMap((r) => Object.entries(r)).sort(([a], [b]) => a.localeCompare(b));
    if (p.values.json) {
      println(io.stdout, JSON.stringify(Object.fromEntries(nodes)));
      return nodes.length ? Exit.OK : Exit.TIMEOUT;
    }
    if (!nodes.length) return noReply(io);
    for (const [node, reply] of nodes) {
      const ok = reply && typeof reply === 'object' && (reply as { ok?: unknown }).ok === 'pong';
      println(io.stdout, `${node}: ${ok ? paint(io, io.stdout, 'green', 'OK') : paint(io, io.stdout, 'red', cell(reply))}`);
    }
    println(io.stdout, `\n${nodes.length} ${nodes.length === 1 ? 'node' : 'nodes'} online.`);
    return Exit.OK;
  });
}
