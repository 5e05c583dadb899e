/**
 * What every dashboard state store (memory, SQLite, Redis) must do, as one
 * list of checks run against each: the session rules in sessions.ts and
 * lockout.ts rely on exactly these.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { DashboardStateStore, SessionRecord } from '../../src/core/dashboard-state.ts';

const id = (): string => randomBytes(32).toString('hex');

/** Run the contract on a fresh, empty store (times are near the real clock: Redis expires keys by it). */
export async function checkStateStoreContract(store: DashboardStateStore): Promise<void> {
  const s = store.sessions;
  const t = Date.now();
  const rec = (user: string, over: Partial<SessionRecord> = {}): SessionRecord => ({ id: id(), user, role: 'viewer', viewClear: false, method: 'password', createdAt: t, lastSeen: t, ...over });
  const a = rec('ann', { role: 'admin', viewClear: true, method: 'oidc' });
  const b = rec('ann');
  const c = rec('bob', { createdAt: t - 50_000, lastSeen: t - 40_000 });
  for (const r of [a, b, c]) await s.insert(r, t + 3_600_000);
  assert.equal(await s.count(), 3);
  assert.deepEqual(await s.find(a.id), a, 'a record reads back as written');
  assert.equal(await s.find(id()), undefined);

  await s.touch(b.id, t + 1000);
  assert.equal((await s.find(b.id))?.lastSeen, t + 1000);

  await s.delete(b.id);
  assert.equal(await s.find(b.id), undefined);
  await s.touch(b.id, t + 2000);
  assert.equal(await s.find(b.id), undefined, 'a touch never brings a deleted session back');
  assert.equal(await s.count(), 2);

  // purge: seen before t - 30 s, or created before t - 60 s.
  assert.equal(await s.purge(t - 30_000, t - 60_000), 1, 'bob, idle for 40 s');
  assert.equal(await s.find(c.id), undefined);
  assert.equal(await s.purge(t - 30_000, t + 1), 1, 'ann, created before the cut');
  assert.equal(await s.count(), 0);

  const u1 = rec('carl');
  const u2 = rec('carl');
  const other = rec('dora');
  for (const r of [u1, u2, other]) await s.insert(r, t + 3_600_000);
  assert.equal(await s.deleteUser('carl'), 2);
  assert.equal(await s.deleteUser('carl'), 0, 'counts only sessions that still existed');
  assert.ok(await s.find(other.id));
  const u3 = rec('carl');
  await s.insert(u3, t + 3_600_000);
  assert.ok(await s.find(u3.id), 'a session created after "log out everywhere" is a new one');
  assert.equal(await s.deleteAll(), 2);
  assert.equal(await s.count(), 0);

  const th = store.throttles;
  assert.equal(await th.get('user:x'), undefined);
  const e = await th.update('user:x', (cur) => ({ failures: [...(cur?.failures ?? []), t], lockedUntil: 0, expiresAt: t + 60_000 }));
  assert.deepEqual(e, { failures: [t], lockedUntil: 0, expiresAt: t + 60_000 });
  await th.update('user:x', (cur) => ({ failures: [...(cur?.failures ?? []), t + 1], lockedUntil: t + 5000, expiresAt: t + 60_000 }));
  assert.deepEqual(await th.get('user:x'), { failures: [t, t + 1], lockedUntil: t + 5000, expiresAt: t + 60_000 });
  assert.equal(await th.update('user:x', () => undefined), undefined);
  assert.equal(await th.get('user:x'), undefined, 'update to undefined deletes');
  await th.update('user:y', () => ({ failures: [t], lockedUntil: 0, expiresAt: t + 60_000 }));
  await th.delete('user:y');
  assert.equal(await th.get('user:y'), undefined);
}
