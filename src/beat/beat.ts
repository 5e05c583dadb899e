/**
 * celeriac beat: sends each entry's tasks on schedule, with one leader
 * across every instance that shares the store.
 *
 * How "at most once per tick" and "none missed across a leader change" are
 * kept:
 * - Ticks are deterministic (`schedule.ts`), so every instance names a tick
 *   the same way.
 * - An instance sends only as the leader, under a lease with a fencing token
 *   (`core/beat-store.ts`). Before each send it claims the tick: one atomic
 *   step in the engine checks that its token still holds the lease and that
 *   the tick is later than the entry's last one, and records it. A paused
 *   old leader's claims are refused once the lease passed on; a tick is
 *   claimed once across all instances.
 * - A new leader reads each entry's last tick and sends, in order, every
 *   tick since then that is at most `graceMs` old (the time a leader change
 *   takes), so a killed leader's ticks are sent late, not lost. Older ticks
 *   (downtime) follow the entry's catch-up policy: `skip`, or `runOnce`.
 *
 * - The claim and the publish are one atomic step when the store and the
 *   broker share a server or file (Redis with a Redis broker, SQLite with
 *   its broker file, PostgreSQL with its broker database): beat builds and signs the tick's message first, and
 *   the claim writes it into its queue (the outbox, `BeatStore.canCarry`).
 *   A leader killed at any point has either sent the tick or not claimed
 *   it, so the next leader sends it exactly once.
 * - Otherwise (a RabbitMQ broker with the state on Redis, say) the claim
 *   comes before the publish, so a publish never happens without its claim,
 *   and the claim keeps the built message until the publish is confirmed.
 *   A new leader sends an unconfirmed tick's kept message again: at least
 *   once. The copy is the one the old leader built and signed, so when the
 *   old leader had sent it after all, workers' replay guard refuses the
 *   second copy (dead-lettered as a replay) and the task runs once; with
 *   signing off it can run twice. `beat status` shows unconfirmed ticks.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleepFor } from 'node:timers/promises';
import type { App } from '../client/app.ts';
import type { PreparedSend } from '../client/producer.ts';
import type { BeatEntryState, BeatStore } from '../core/beat-store.ts';
import type { Logger } from '../observability/logging.ts';
import { compileSchedule, type BeatEntry, type BeatScheduleInput, type CatchUp } from './schedule.ts';

/** Options of {@link createBeat}. */
export interface BeatOptions {
  /** The app whose client sends (and signs) the tasks; with `prepareSend`, ticks go through the store's outbox where it can carry them. */
  app: Pick<App, 'sendTask' | 'logger'> & Partial<Pick<App, 'prepareSend' | 'publishKept'>>;
  /** The schedule: Celery's `beat_schedule` shape or compiled entries. */
  schedule: BeatScheduleInput | readonly BeatEntry[];
  /** Where the lease and the last runs live (`openBeatStore`). */
  store: BeatStore;
  /** Schedule name (part of the task ids; default `default`). */
  namespace?: string;
  /** Lease length, ms (default 15 000): a killed leader is replaced within about this long. */
  leaseMs?: number;
  /** Missed ticks at most this old are all sent by a new leader (default 2 × lease + 1 s); older ones follow the catch-up policy. */
  graceMs?: number;
  /** Default catch-up policy of entries that set none (default `runOnce`). */
  catchUp?: CatchUp;
  /** Default time zone of crontab entries (default UTC). */
  timezone?: string;
  /** This instance's id in the lease (default host:pid:random). */
  holder?: string;
  logger?: Logger;
  /** Abort to stop: the lease is released. */
  signal?: AbortSignal;
}

/** A running beat. */
export interface Beat {
  readonly holder: string;
  readonly entries: readonly BeatEntry[];
  /** True while this instance holds the lease. */
  readonly isLeader: boolean;
  /** The fencing token of the lease this instance holds; undefined while it stands by. */
  readonly fencingToken: number | undefined;
  /** Settles when the beat stopped (after an abort), with the lease released. */
  readonly done: Promise<void>;
  /** Stop and release the lease. */
  stop(): Promise<void>;
}

/** The task id beat sends for `tick` of `entry`: the same on every instance, so a duplicate (if any) is recognisable. */
export function beatTaskId(namespace: string, entry: string, tick: number): string {
  const h = createHash('sha256').update(`celeriac-beat\0${namespace}\0${entry}\0${tick}`).digest('hex');
  // RFC 9562 layout, version 8 (custom) and the RFC variant.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Start a beat (it runs until `signal` aborts or `stop()`). */
export function createBeat(options: BeatOptions): Beat {
  const entries = isCompiled(options.schedule) ? [...options.schedule] : compileSchedule(options.schedule, { timezone: options.timezone, catchUp: options.catchUp });
  const namespace = options.namespace ?? 'default';
  const leaseMs = options.leaseMs ?? 15_000;
  const graceMs = options.graceMs ?? 2 * leaseMs + 1000;
  const renewMs = Math.max(10, Math.floor(leaseMs / 3));
  const holder = options.holder ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const log = (options.logger ?? options.app.logger).child({ beat: namespace, holder });
  const { store, app } = options;
  const controller = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;

  let token: number | undefined;
  /** Per entry: the last tick recorded in the store, or passed over locally (skip policy). */
  const cursor = new Map<string, number>();
  /** Per entry: ticks passed over since the last claim, stored with the next one. */
  const pendingSkipped = new Map<string, number>();

  const sleep = async (ms: number): Promise<void> => {
    await sleepFor(Math.max(0, ms), undefined, { signal }).catch(() => undefined);
  };

  async function becomeLeader(newToken: number): Promise<void> {
    // Read before taking the token: a leader without the entries' last ticks would pass over the ticks to catch up.
    const { entries: state } = await store.read();
    token = newToken;
    cursor.clear();
    pendingSkipped.clear();
    for (const s of state) {
      cursor.set(s.name, s.lastTick);
      // The previous leader claimed this tick but never confirmed its publish: it stopped in between.
      if (!s.confirmed && s.token !== newToken) await resendUnconfirmed(s);
    }
    log.info({ fence: token, entries: entries.length }, `beat: leader now (fencing token ${newToken}); ${entries.length} entries`);
  }

  /**
   * Build and sign the tick's message before the claim, for the store to
   * carry or keep (see the module comment); undefined when the app cannot
   * prepare sends, or when building failed (then the claim is made without
   * it and the send below reports the error as any send would).
   */
  async function prepareOutbox(entry: BeatEntry, taskId: string): Promise<PreparedSend | undefined> {
    if (!app.prepareSend) return undefined;
    try {
      return await app.prepareSend(entry.task, entry.args, entry.kwargs, { ...entry.options, taskId });
    } catch (err) {
      log.warn({ err, entry: entry.name, taskId }, `beat: could not build ${entry.name}'s message ahead of its claim; claiming it first, then sending`);
      return undefined;
    }
  }

  /**
   * A tick the previous leader claimed without confirming its publish: send
   * the message it kept again (at least once; a signed copy that was sent
   * after all is refused by the workers' replay guard, so it runs once), or
   * report it when nothing was kept or the tick is past the grace period.
   */
  async function resendUnconfirmed(s: BeatEntryState): Promise<void> {
    const at = new Date(s.lastTick).toISOString();
    if (s.pending !== undefined && app.publishKept && Date.now() - s.lastTick <= graceMs) {
      try {
        await app.publishKept(s.pending);
        await store.confirm(s.name, s.lastTick);
        log.warn({ entry: s.name, tick: s.lastTick, taskId: s.taskId, fence: s.token }, `beat: ${s.name}'s tick ${at} was claimed by the previous leader (fence ${s.token}) but its publish was not confirmed; sent the message it kept again (task id ${s.taskId}; a worker that already ran a signed copy refuses this one as a replay)`);
        return;
      } catch (err) {
        log.error({ err, entry: s.name, taskId: s.taskId }, `beat: could not send ${s.name}'s kept message for ${at} again`);
      }
    }
    log.warn({ entry: s.name, tick: s.lastTick, taskId: s.taskId, fence: s.token }, `beat: ${s.name}'s tick ${at} was claimed by the previous leader (fence ${s.token}) but its publish was not confirmed: it may not have been sent (task id ${s.taskId})`);
  }

  /** Claim `tick` of `entry` and send it; false when fenced. */
  async function claimAndSend(entry: BeatEntry, tick: number, skipped: number): Promise<boolean> {
    const taskId = beatTaskId(namespace, entry.name, tick);
    const prepared = await prepareOutbox(entry, taskId);
    const outbox = prepared?.outbox && store.canCarry?.(prepared.outbox) ? prepared.outbox : undefined;
    let res;
    try {
      // Carried (the outbox), or kept with the claim so a new leader can send it again if this one stops before confirming.
      res = await store.claim({ token: token!, entry: entry.name, tick, taskId, skipped, ...(outbox ? { publish: outbox } : prepared ? { pending: prepared.keep() } : {}) });
    } catch (err) {
      prepared?.abandon(err);
      throw err;
    }
    if (res.state === 'fenced') {
      prepared?.abandon('fenced');
      return false;
    }
    if (res.state === 'done') {
      prepared?.abandon('already sent');
      cursor.set(entry.name, Math.max(res.lastTick, cursor.get(entry.name) ?? res.lastTick));
      pendingSkipped.delete(entry.name);
      return true;
    }
    cursor.set(entry.name, tick);
    pendingSkipped.delete(entry.name);
    const sent = (how: string): void =>
      log.info({ entry: entry.name, task: entry.task, tick, at: new Date(tick).toISOString(), taskId, fence: token, skipped, via: how }, `beat: sent ${entry.name} (${entry.task}) for ${new Date(tick).toISOString()}${skipped ? `, ${skipped} missed ticks passed over` : ''}`);
    if (res.published) {
      // The message went into its queue with the claim: nothing is left to lose.
      await prepared!.written().catch((err: unknown) => log.warn({ err, entry: entry.name }, 'beat: sent, but the after-send steps (events, wake-up) failed'));
      sent('outbox');
      return true;
    }
    // The claim is recorded: the publish is retried (same task id) while the tick is within grace.
    for (let attempt = 1; ; attempt++) {
      try {
        if (prepared) await prepared.publish();
        else await app.sendTask(entry.task, entry.args, entry.kwargs, { ...entry.options, taskId });
        await store.confirm(entry.name, tick).catch((err: unknown) => log.warn({ err, entry: entry.name }, 'beat: could not record the publish as confirmed'));
        sent('publish');
        return true;
      } catch (err) {
        if (signal.aborted || attempt >= 5 || Date.now() - tick > graceMs) {
          log.error({ err, entry: entry.name, tick, taskId }, `beat: could not send ${entry.name} for ${new Date(tick).toISOString()}; this tick is lost (it was claimed, so no other instance sends it)`);
          return true;
        }
        log.warn({ err, entry: entry.name, attempt }, `beat: sending ${entry.name} failed; retrying`);
        await sleep(200 * attempt);
      }
    }
  }

  /** Send what is due now; false when fenced. */
  async function runDue(): Promise<boolean> {
    for (const entry of entries) {
      const tt = entry.timetable;
      const now = Date.now();
      const due = tt.latestAtOrBefore(now);
      if (due === undefined) continue;
      let last = cursor.get(entry.name);
      if (last === undefined) {
        // A new entry starts at its latest tick if that is recent, else at its next.
        if (now - due > graceMs) {
          cursor.set(entry.name, due);
          continue;
        }
        if (!(await claimAndSend(entry, due, 0))) return false;
        continue;
      }
      if (due <= last) continue;
      const cutoff = now - graceMs;
      const lastOld = tt.latestAtOrBefore(cutoff);
      if (lastOld !== undefined && lastOld > last) {
        // Downtime: ticks older than the grace period.
        // Counted exactly up to a cap (a crontab is counted tick by tick): the count only feeds logs and stats.
        const CAP = 2000;
        const between = tt.countBetween(last, lastOld, CAP);
        const old = between + 1;
        const many = !tt.exactCount && between >= CAP ? 'more than ' : '';
        if (entry.catchUp === 'runOnce') {
          log.warn({ entry: entry.name, missed: old }, `beat: ${entry.name} missed ${many}${old} ticks while no beat ran; sending one (catchUp: runOnce)`);
          if (!(await claimAndSend(entry, lastOld, (pendingSkipped.get(entry.name) ?? 0) + old - 1))) return false;
        } else {
          log.warn({ entry: entry.name, missed: old }, `beat: ${entry.name} missed ${many}${old} ticks while no beat ran; skipping them (catchUp: skip)`);
          pendingSkipped.set(entry.name, (pendingSkipped.get(entry.name) ?? 0) + old);
          cursor.set(entry.name, lastOld);
        }
        last = cursor.get(entry.name)!;
      }
      // Recent ticks (a leader change, a slow loop): every one, in order.
      for (let t = tt.nextAfter(last), n = 0; t <= now && n < 10_000; t = tt.nextAfter(t), n++) {
        if (!(await claimAndSend(entry, t, pendingSkipped.get(entry.name) ?? 0))) return false;
      }
    }
    return true;
  }

  const nextDue = (): number => Math.min(...entries.map((e) => e.timetable.nextAfter(Math.max(Date.now(), cursor.get(e.name) ?? 0))));

  async function run(): Promise<void> {
    log.info({ entries: entries.map((e) => `${e.name}: ${e.task} ${e.timetable.describe}`), leaseMs, graceMs }, `beat: starting with ${entries.length} entries`);
    while (!signal.aborted) {
      const asked = Date.now();
      let acquired;
      try {
        acquired = await store.acquire(holder, leaseMs);
      } catch (err) {
        log.error({ err }, 'beat: cannot reach the lease store; not sending until it answers');
        token = undefined;
        await sleep(renewMs);
        continue;
      }
      if (!acquired.leader) {
        if (token !== undefined) log.warn({ leader: acquired.holder }, `beat: lost the lease to ${acquired.holder}; standing by`);
        else log.debug({ leader: acquired.holder }, 'beat: standing by');
        token = undefined;
        await sleep(Math.min(renewMs, Math.max(10, acquired.expiresAt - Date.now())));
        continue;
      }
      try {
        if (token !== acquired.token) await becomeLeader(acquired.token);
        // Measured from before the acquire: a conservative end of the lease on this clock.
        const renewAt = asked + renewMs;
        const safeUntil = asked + leaseMs;
        while (!signal.aborted && Date.now() < renewAt) {
          if (Date.now() >= safeUntil) break; // paused past the lease: re-acquire before any claim
          if (!(await runDue())) {
            log.warn({ fence: token }, `beat: fencing token ${token} no longer holds the lease (paused or partitioned?); not sending, standing by`);
            token = undefined;
            break;
          }
          await sleep(Math.min(renewAt, nextDue()) - Date.now());
        }
      } catch (err) {
        log.error({ err }, 'beat: a claim failed; retrying after the next lease renewal');
        await sleep(Math.min(renewMs, 1000));
      }
    }
    if (token !== undefined) {
      const t = token;
      token = undefined;
      await store.release(holder, t).then(
        () => log.info({ fence: t }, 'beat: lease released'),
        (err: unknown) => log.warn({ err }, 'beat: could not release the lease; it lapses on its own'),
      );
    }
    log.info('beat: stopped');
  }

  const done = run();
  return {
    holder,
    entries,
    get isLeader() {
      return token !== undefined;
    },
    get fencingToken() {
      return token;
    },
    done,
    async stop() {
      controller.abort();
      await done;
    },
  };
}

function isCompiled(s: BeatOptions['schedule']): s is readonly BeatEntry[] {
  return Array.isArray(s);
}
