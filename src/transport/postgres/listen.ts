/**
 * LISTEN/NOTIFY for the PostgreSQL engine: one dedicated connection per
 * adapter that listens on the channels its users ask for and hands each
 * notification's payload to them. PostgreSQL delivers a notification only
 * to connections listening when the notifying transaction commits, so a
 * dropped connection may miss some: after a reconnect every handler is
 * called with `undefined` (re-check everything), and the engine's users
 * also keep a slow safety poll.
 */
import type pg from 'pg';
import type { Logger } from '../../observability/logging.ts';
import { newClient, type PgTarget } from './connection.ts';

/** A channel handler: a payload, or `undefined` after a reconnect (something may have been missed). */
export type NotifyHandler = (payload: string | undefined) => void;

export class PgListener {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private readonly handlers = new Map<string, Set<NotifyHandler>>();
  private closed = false;
  private retryMs = 100;
  private readonly logger: Logger;

  constructor(
    /** Where to connect (replaced when credentials rotate; the next reconnect uses it). */
    public target: PgTarget,
    private readonly role: string,
  ) {
    this.logger = target.logger;
  }

  /** Listen on `channel`; resolves once the server has confirmed LISTEN. Returns the unsubscribe function. */
  async on(channel: string, handler: NotifyHandler): Promise<() => void> {
    let set = this.handlers.get(channel);
    const fresh = !set;
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
    }
    set.add(handler);
    try {
      const client = await this.connect();
      if (fresh) await client.query(`LISTEN "${channel}"`);
    } catch (err) {
      set.delete(handler);
      if (set.size === 0 && this.handlers.get(channel) === set) this.handlers.delete(channel);
      throw err;
    }
    return () => {
      const s = this.handlers.get(channel);
      if (!s?.delete(handler) || s.size > 0) return;
      this.handlers.delete(channel);
      if (this.client && !this.closed) this.client.query(`UNLISTEN "${channel}"`).catch(() => undefined);
    };
  }

  private connect(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const client = newClient(this.target, this.role);
      client.on('notification', (n) => {
        for (const h of [...(this.handlers.get(n.channel) ?? [])]) {
          try {
            h(n.payload);
          } catch (err) {
            this.logger.error({ err, channel: n.channel }, 'a notification handler failed');
          }
        }
      });
      client.on('error', (err) => this.lost(client, err));
      client.on('end', () => this.lost(client, undefined));
      try {
        await client.connect();
        for (const ch of this.handlers.keys()) await client.query(`LISTEN "${ch}"`);
      } catch (err) {
        client.removeAllListeners('end');
        client.end().catch(() => undefined);
        throw err;
      }
      this.client = client;
      this.retryMs = 100;
      return client;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** The listening connection dropped: reconnect with back-off, then tell every handler to re-check. */
  private lost(client: pg.Client, err: Error | undefined): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.removeAllListeners('end');
    client.end().catch(() => undefined);
    if (this.closed) return;
    this.logger.warn({ err: err?.message }, 'the PostgreSQL LISTEN connection dropped; reconnecting');
    const retry = (): void => {
      if (this.closed || this.handlers.size === 0) return;
      this.connect().then(
        () => {
          for (const set of this.handlers.values()) for (const h of [...set]) h(undefined);
        },
        (e: Error) => {
          this.logger.warn({ err: e.message }, 'reconnecting the PostgreSQL LISTEN connection failed; retrying');
          this.retryMs = Math.min(5_000, this.retryMs * 2);
          setTimeout(retry, this.retryMs).unref();
        },
      );
    };
    setTimeout(retry, this.retryMs).unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.handlers.clear();
    const c = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    if (c) {
      c.removeAllListeners('end');
      await c.end().catch(() => undefined);
    }
  }
}
