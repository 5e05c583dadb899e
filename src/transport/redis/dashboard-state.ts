/**
 * The Redis engine's store of dashboard sessions and login-failure counters
 * (`core/dashboard-state.ts`), so dashboards on several hosts share them.
 * Keys, all in one hash slot under `<prefix>celeriac:dashboard:{state}:`:
 *
 * - `session:<id>`: a hash (user, role, view_clear, method, created_at),
 *   expiring at the session's absolute end; `<id>` is the SHA-256 of the
 *   cookie token, never the token;
 * - `seen` and `created`: sorted sets id → last request / creation time, for
 *   the last-request time (updated with `ZADD XX`, which never re-creates a
 *   deleted session) and for purges;
 * - `user:<name>`: the ids of a user's sessions, for "log out everywhere";
 * - `throttle:<key>`: one JSON entry, expiring when it no longer matters,
 *   updated under WATCH so two dashboards counting the same key lose no failure.
 */
import type { Redis } from 'ioredis';
import type { DashboardStateStore, SessionBackend, SessionRecord, ThrottleBackend, ThrottleEntry } from '../../core/dashboard-state.ts';
import { CeleriacError, ConfigError } from '../../errors.ts';

/** Ids per DEL/ZREM call when deleting many sessions. */
const CHUNK = 500;

/**
 * A store on `client` (which it owns: `close()` quits it), checked at open:
 * a Redis user without the dashboard's keys in its ACL is a `ConfigError`
 * at start-up, not a failed login later.
 */
export async function openRedisDashboardState(client: Redis, keyPrefix: string, location: string): Promise<DashboardStateStore> {
  const store = createRedisDashboardState(client, keyPrefix, location);
  try {
    await store.sessions.count();
    await client.exists(`${keyPrefix}celeriac:dashboard:{state}:throttle:-`);
    return store;
  } catch (err) {
    await store.close();
    if (/NOPERM/.test((err as Error).message)) {
      throw new ConfigError(`the Redis user at ${location} may not use the dashboard's keys ${keyPrefix}celeriac:dashboard:*`, {
        hint: `grant that user ~${keyPrefix}celeriac:dashboard:* (only the dashboard's user: whoever can write these keys can create a dashboard session), or use --session-store sqlite:<path>`,
        cause: err,
      });
    }
    throw err;
  }
}

/** A store on `client` (which it owns: `close()` quits it), unchecked. */
export function createRedisDashboardState(client: Redis, keyPrefix: string, location: string): DashboardStateStore {
  const base = `${keyPrefix}celeriac:dashboard:{state}`;
  const k = {
    session: (id: string) => `${base}:session:${id}`,
    user: (user: string) => `${base}:user:${user}`,
    seen: `${base}:seen`,
    created: `${base}:created`,
    throttle: (key: string) => `${base}:throttle:${key}`,
  };

  /** Delete sessions by id; returns how many still existed. */
  const deleteIds = async (ids: readonly string[]): Promise<number> => {
    let n = 0;
    for (let i = 0; i < ids.length; i += CHUNK) {
      const part = ids.slice(i, i + CHUNK);
      const res = await client.multi().del(...part.map(k.session)).zrem(k.seen, ...part).zrem(k.created, ...part).exec();
      n += Number(res?.[0]?.[1] ?? 0);
    }
    return n;
  };

  const sessions: SessionBackend = {
    async insert(r: SessionRecord, expiresAt: number) {
      const ttl = Math.max(1, Math.ceil(expiresAt - Date.now()));
      await client
        .multi()
        .hset(k.session(r.id), { user: r.user, role: r.role, view_clear: r.viewClear ? '1' : '0', method: r.method, created_at: String(r.createdAt) })
        .pexpire(k.session(r.id), ttl)
        .zadd(k.created, r.createdAt, r.id)
        .zadd(k.seen, r.lastSeen, r.id)
        .sadd(k.user(r.user), r.id)
        // Sessions created later end later, so the newest sets the set's end.
        .pexpire(k.user(r.user), ttl)
        .exec();
    },
    async find(id) {
      const res = await client.multi().hgetall(k.session(id)).zscore(k.seen, id).exec();
      const h = (res?.[0]?.[1] ?? {}) as Record<string, string>;
      const seen = res?.[1]?.[1] as string | null | undefined;
      if (!h.user || seen === null || seen === undefined) return undefined;
      return { id, user: h.user, role: String(h.role), viewClear: h.view_clear === '1', method: String(h.method), createdAt: Number(h.created_at), lastSeen: Number(seen) };
    },
    async touch(id, lastSeen) {
      await client.zadd(k.seen, 'XX', String(lastSeen), id);
    },
    async delete(id) {
      await deleteIds([id]);
    },
    async deleteUser(user) {
      const ids = await client.smembers(k.user(user));
      if (ids.length === 0) return 0;
      const n = await deleteIds(ids);
      // SREM what was read, not DEL: a session created meanwhile stays listed.
      await client.srem(k.user(user), ...ids);
      return n;
    },
    async deleteAll() {
      return deleteIds(await client.zrange(k.created, '0', '-1'));
    },
    async purge(seenBefore, createdBefore) {
      const [idle, old] = await Promise.all([client.zrangebyscore(k.seen, '-inf', `(${seenBefore}`), client.zrangebyscore(k.created, '-inf', `(${createdBefore}`)]);
      return deleteIds([...new Set([...idle, ...old])]);
    },
    count: () => client.zcard(k.created),
  };

  const decode = (raw: string | null): ThrottleEntry | undefined => {
    if (raw === null) return undefined;
    try {
      const e = JSON.parse(raw) as Partial<ThrottleEntry>;
      return { failures: Array.isArray(e.failures) ? e.failures.filter((f): f is number => typeof f === 'number') : [], lockedUntil: Number(e.lockedUntil) || 0, expiresAt: Number(e.expiresAt) || 0 };
    } catch {
      return undefined;
    }
  };
  // WATCH belongs to the connection: updates from this process go one at a time, or one's
  // EXEC would end another's WATCH. Other processes are kept out by the WATCH itself.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(run: () => Promise<T>): Promise<T> => {
    const next = chain.then(run, run);
    chain = next.catch(() => undefined);
    return next;
  };
  const throttles: ThrottleBackend = {
    get: async (key) => decode(await client.get(k.throttle(key))),
    update: (key, fn) =>
      serial(async () => {
        const key1 = k.throttle(key);
        for (let attempt = 0; attempt < 50; attempt++) {
          await client.watch(key1);
          let next: ThrottleEntry | undefined;
          try {
            next = fn(decode(await client.get(key1)));
          } catch (err) {
            await client.unwatch();
            throw err;
          }
          const tx = client.multi();
          if (next) tx.set(key1, JSON.stringify(next), 'PX', Math.max(1, Math.ceil(next.expiresAt - Date.now())));
          else tx.del(key1);
          // null: another dashboard changed the key since WATCH; read it again.
          if ((await tx.exec()) !== null) return next;
        }
        throw new CeleriacError('ERR_DASHBOARD_STATE', `the login throttle entry ${key} kept changing during 50 attempts to update it`, { hint: 'the login is refused; try again (many dashboards counting one account at once)' });
      }),
    async delete(key) {
      await client.del(k.throttle(key));
    },
    purge: async () => 0, // the entries expire on the server
  };

  let closed = false;
  return {
    kind: 'redis',
    location,
    sessions,
    throttles,
    async close() {
      if (closed) return;
      closed = true;
      await client.quit().catch(() => undefined);
    },
  };
}
