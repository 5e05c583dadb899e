/**
 * `celeriac beat` on the control plane: each instance is a node of its own
 * (`beat.<name>.<pid>@<host>`) that answers Celery's pidbox through the
 * generic mailbox (src/control/mailbox.ts), behind the same control guard
 * as a worker, so `celeriac inspect ping`, Python's `celery inspect ping`
 * and `app.control` list it.
 *
 * It answers `ping`, `stats` (with a `beat` section: holder, leader or
 * standby, fencing token, entries, the lease), `report`, `clock`, `hello`,
 * `conf`, and `beat_status` (the lease and every entry's last and next
 * tick, as `celeriac beat status --json`). A worker command (`revoke`,
 * `active`, `shutdown`, …) is answered `{error: …}` saying this node is a
 * beat, and any other method as kombu answers a method without a handler
 * (`{error: "KeyError('<method>')"}`), Celery 5.2.6's shape either way; with
 * no `reply_to` nothing is sent, as with Celery.
 */
import { hostname as osHostname } from 'node:os';
import { celeryConfTable, withDefaultsArgument } from '../config/celery-conf.ts';
import { CONTROL_DESTRUCTIVE_COMMANDS, CONTROL_READ_ONLY_COMMANDS } from '../config/control-settings.ts';
import type { ResolvedSettings } from '../config/options.ts';
import { startMailbox, unknownCommandReply, type ControlServer, type MailboxCommand, type MailboxGuard } from '../control/mailbox.ts';
import type { BeatStore } from '../core/beat-store.ts';
import type { Broker } from '../core/broker.ts';
import type { Logger } from '../observability/logging.ts';
import { securityCounters } from '../observability/security-events.ts';
import type { Beat } from './beat.ts';
import { readBeatStatus, type BeatStatus } from './status.ts';

/** The beat-specific read command (`celeriac inspect beat_status`). */
export const BEAT_STATUS_COMMAND = 'beat_status';

/** What the commands read of a running beat. */
export type BeatView = Pick<Beat, 'holder' | 'entries' | 'isLeader' | 'fencingToken'>;

/** Options of {@link beatCommands}. */
export interface BeatCommandsOptions {
  beat: BeatView;
  store: Pick<BeatStore, 'read'>;
  /** The schedule name (`--name`). */
  namespace: string;
  nodeName: string;
  /** The app's settings, for `conf`. */
  settings?: Readonly<ResolvedSettings>;
  /** When this instance started, ms (default now). */
  startedAt?: number;
}

/** `beat_status`'s reply: this instance, and the shared lease and entries as `celeriac beat status --json` prints them. */
export interface BeatStatusReply extends BeatStatus {
  node: string;
  namespace: string;
  holder: string;
  role: 'leader' | 'standby';
  /** This instance's fencing token while it leads, else null. */
  fencingToken: number | null;
}

/** The `beat` section of `stats`. */
export interface BeatStatsSection {
  namespace: string;
  holder: string;
  role: 'leader' | 'standby';
  fencing_token: number | null;
  entries: number;
  /** The lease as the store holds it (any instance's), or null when nobody holds it. */
  leader: { holder: string; token: number; expires_at: string } | null;
}

/**
 * The default node name: `beat.<name>.<pid>@<host>`. The pid keeps two
 * instances on one host apart: a shared name would share one pidbox queue
 * on RabbitMQ (each message reaching only one of them) and one key in the
 * merged replies.
 */
export function beatNodeName(namespace: string, host: string = osHostname(), pid: number = process.pid): string {
  return `beat.${namespace.replace(/[^\w.:-]/g, '_')}.${pid}@${host}`;
}

const ok = (text: string) => ({ ok: text });
const role = (b: BeatView): 'leader' | 'standby' => (b.isLeader ? 'leader' : 'standby');

/** Commands a worker answers and a beat does not (it runs no task). */
const WORKER_COMMANDS: ReadonlySet<string> = new Set([...CONTROL_READ_ONLY_COMMANDS, ...CONTROL_DESTRUCTIVE_COMMANDS]);

/** The command table of a beat node. */
export function beatCommands(o: BeatCommandsOptions): Record<string, MailboxCommand> {
  const startedAt = o.startedAt ?? Date.now();
  const { beat, store } = o;
  const section = async (): Promise<BeatStatsSection> => {
    const { lease } = await store.read();
    return {
      namespace: o.namespace,
      holder: beat.holder,
      role: role(beat),
      fencing_token: beat.fencingToken ?? null,
      entries: beat.entries.length,
      leader: lease ? { holder: lease.holder, token: lease.token, expires_at: new Date(lease.expiresAt).toISOString() } : null,
    };
  };
  const commands: Record<string, MailboxCommand> = {
    ping: { run: () => ok('pong') },
    stats: {
      run: async (_a, clock) => ({
        pid: process.pid,
        clock: String(clock()),
        uptime: Math.floor((Date.now() - startedAt) / 1000),
        beat: await section(),
        // Not in Celery: what kind of node this is, and its security counters (as a worker's stats).
        celeriac: { role: 'beat', security: securityCounters() },
      }),
    },
    report: {
      run: async () => {
        const s = await section();
        const lead = s.role === 'leader' ? `leader (fencing token ${s.fencing_token})` : `standby${s.leader ? ` (leader ${s.leader.holder}, fencing token ${s.leader.token})` : ' (no leader)'}`;
        return ok(`celeriac beat ${o.nodeName}, schedule ${o.namespace}, ${lead}, ${s.entries} entries, holder ${beat.holder}, node ${process.version}, pid ${process.pid}`);
      },
    },
    clock: { run: (_a, clock) => ({ clock: clock() }) },
    // A worker starting up asks every node for its revoked ids: a beat holds none.
    hello: { run: (_a, clock) => ({ revoked: {}, clock: clock() }) },
    [BEAT_STATUS_COMMAND]: {
      run: async (): Promise<BeatStatusReply> => ({
        node: o.nodeName,
        namespace: o.namespace,
        holder: beat.holder,
        role: role(beat),
        fencingToken: beat.fencingToken ?? null,
        ...(await readBeatStatus(store, beat.entries)),
      }),
    },
  };
  if (o.settings) {
    const settings = o.settings;
    commands.conf = { run: (a) => celeryConfTable(settings, { withDefaults: withDefaultsArgument(a) }) };
  }
  return commands;
}

/** The reply to a method a beat has no command for: said plainly for a worker command, else kombu's KeyError. */
export function beatUnknownReply(nodeName: string): (method: string) => { error: string } {
  return (method) =>
    WORKER_COMMANDS.has(method)
      ? { error: `${method} is a worker command: ${nodeName} is a celeriac beat (it sends periodic tasks and runs none)` }
      : unknownCommandReply(method);
}

/** Options of {@link startBeatControl}. */
export interface BeatControlOptions extends BeatCommandsOptions {
  broker: Broker;
  /** The control guard (src/security/control-guard.ts, built by the caller from the app's settings). */
  guard: MailboxGuard;
  logger: Logger;
  /** Celery's `control_exchange` (default `celery`). */
  exchangeName?: string;
}

/** Join the control plane as `nodeName` and answer until closed (closing also closes the guard). */
export function startBeatControl(o: BeatControlOptions): Promise<ControlServer> {
  const commands = beatCommands(o);
  return startMailbox({
    broker: o.broker,
    nodeName: o.nodeName,
    guard: o.guard,
    logger: o.logger,
    exchangeName: o.exchangeName,
    command: (method) => (Object.hasOwn(commands, method) ? commands[method] : undefined),
    unknown: beatUnknownReply(o.nodeName),
  });
}
