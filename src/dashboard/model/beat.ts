/**
 * celeriac beat's state for the dashboard: the lease (leader, fencing token)
 * and each entry's last run, read from the store every beat instance shares
 * (`openBeatStore`, the same one `celeriac beat status` reads). The store is
 * opened on first use, so a dashboard whose cluster runs no beat opens
 * nothing; an app with no lockable store (RabbitMQ with no Redis/SQLite
 * backend) gets a view that says why. The next run needs the schedule,
 * which lives in the beat's own module: it is not shown here.
 */
import { openBeatStore } from '../../client/beat-store.ts';
import type { App } from '../../client/app.ts';
import type { BeatStore } from '../../core/beat-store.ts';
import { redactAll } from '../../config/redact.ts';
import type { BeatView } from './types.ts';

/** Options of {@link createBeatReader}. */
export interface BeatReaderOptions {
  /** The schedule's name (default `default`, as `celeriac beat --name`). */
  namespace?: string;
  /** Where beat keeps its state, when not on the broker or backend (as `celeriac beat --state-url`). */
  stateUrl?: string;
  /** For tests: open this store instead. */
  open?: () => Promise<{ store: BeatStore; where: string }>;
  /** After a failed open, wait this long before trying again (default 60 s). */
  retryMs?: number;
}

export interface BeatReader {
  read(now?: number): Promise<BeatView>;
  close(): Promise<void>;
}

const sec = (ms: number): number => ms / 1000;

/** A lazy reader of beat's shared state. */
export function createBeatReader(app: App | undefined, options: BeatReaderOptions = {}): BeatReader {
  const namespace = options.namespace ?? 'default';
  const open = options.open ?? (() => {
    if (!app) throw new Error('no app to open the beat store with');
    return openBeatStore(app, { namespace, ...(options.stateUrl ? { stateUrl: options.stateUrl } : {}) });
  });
  let opened: Promise<{ store: BeatStore; where: string }> | undefined;
  let failed: { at: number; message: string } | undefined;
  let closed = false;
  return {
    async read(now = Date.now()) {
      if (closed) return { available: false, namespace, detail: 'the dashboard is stopping', entries: [] };
      if (failed && now - failed.at < (options.retryMs ?? 60_000)) return { available: false, namespace, detail: failed.message, entries: [] };
      try {
        opened ??= open();
        const { store, where } = await opened;
        failed = undefined;
        const { lease, entries } = await store.read();
        return {
          available: true,
          namespace,
          where,
          leader: lease ? { holder: lease.holder, token: lease.token, expiresAt: sec(lease.expiresAt) } : undefined,
          entries: entries
            .map((e) => ({ name: e.name, lastRun: sec(e.lastTick), sentAt: sec(e.sentAt), taskId: e.taskId, token: e.token, confirmed: e.confirmed, total: e.total, skipped: e.skipped }))
            .sort((a, b) => a.name.localeCompare(b.name)),
        };
      } catch (err) {
        // A failed open is retried later; a failed read of an open store is retried at the next call.
        const wasOpen = opened;
        opened = undefined;
        const message = redactAll((err as Error)?.message ?? String(err)).slice(0, 300);
        await wasOpen?.then((o) => o.store.close(), () => {}).catch(() => {});
        failed = { at: now, message };
        return { available: false, namespace, detail: message, entries: [] };
      }
    },
    async close() {
      closed = true;
      const o = opened;
      opened = undefined;
      await o?.then((x) => x.store.close(), () => {}).catch(() => {});
    },
  };
}
