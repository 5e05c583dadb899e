/**
 * Dashboard server parts: password hashing, users file, lockout windows,
 * audit log, OIDC role mapping.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createAuditLog } from '../../../src/dashboard/server/audit-log.ts';
import { createLoginThrottle } from '../../../src/dashboard/server/lockout.ts';
import { roleFromClaims } from '../../../src/dashboard/server/oidc.ts';
import { hashPassword, openUserStore, passwordProblem, verifyPassword } from '../../../src/dashboard/server/users.ts';

const dir = mkdtempSync(join(tmpdir(), 'celeriac-dash-parts-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('dashboard passwords and users file', () => {
  it('hashes with scrypt and a random salt; verifies only the right password', async () => {
    const a = await hashPassword('correct horse battery staple 42');
    const b = await hashPassword('correct horse battery staple 42');
    assert.match(a, /^scrypt\$32768\$8\$1\$/);
    assert.notEqual(a, b);
    assert.equal(await verifyPassword('correct horse battery staple 42', a), true);
    assert.equal(await verifyPassword('correct horse battery staple 43', a), false);
    assert.equal(await verifyPassword('x', 'plain-text-password'), false);
    assert.equal(await verifyPassword('x', 'scrypt$99999999999$8$1$AAAA$AAAA'), false, 'absurd cost refused');
  });
  it('applies the project strength rule', () => {
    assert.match(passwordProblem('ann', 'short')!, /shorter than 16/);
    assert.match(passwordProblem('ann', 'passwordpassword')!, /too easy|known/);
    assert.match(passwordProblem('ann', 'qwertyuiopasdfgh')!, /too easy|known/);
    assert.equal(passwordProblem('ann', 'Tq7#vL9m-Rw2$Kp8-Zx4'), undefined);
  });
  it('refuses a malformed users file with the fix', () => {
    const p = join(dir, 'bad.json');
    appendFileSync(p, '{"users":[{"name":"x","role":"root","hash":"h"}]}');
    assert.throws(() => openUserStore(p), /entry 0 is malformed/);
  });
  it('writes the users file with mode 0600 and no clear password', async () => {
    const p = join(dir, 'users.json');
    const store = openUserStore(p);
    await store.add('ann', 'Tq7#vL9m-Rw2$Kp8-Zx4', 'viewer');
    assert.equal(statSync(p).mode & 0o777, 0o600);
    assert.doesNotMatch(readFileSync(p, 'utf8'), /Tq7#vL9m/);
    await assert.rejects(store.add('bad name!', 'Tq7#vL9m-Rw2$Kp8-Zx4', 'viewer'), /not allowed/);
    await assert.rejects(store.add('<script>', 'Tq7#vL9m-Rw2$Kp8-Zx4', 'viewer'), /not allowed/);
  });
});

describe('dashboard login throttle', () => {
  it('locks after N failures within the window, and unlocks after the lock time', async () => {
    let now = 0;
    const t = createLoginThrottle({ maxFailures: 3, windowMs: 1000, lockMs: 5000, now: () => now });
    await t.fail('k');
    now += 1500; // the first failure leaves the window
    await t.fail('k');
    assert.equal(await t.fail('k'), false);
    assert.equal(await t.lockedFor('k'), 0);
    assert.equal(await t.fail('k'), true);
    assert.equal(await t.lockedFor('k'), 5000);
    now += 5001;
    assert.equal(await t.lockedFor('k'), 0);
  });
});

describe('dashboard audit log', () => {
  it('appends JSON lines with a time, mode 0600, and skips a torn last line', () => {
    const p = join(dir, 'audit.jsonl');
    const log = createAuditLog(p);
    log.write({ who: 'ann', what: 'login', from: '127.0.0.1', outcome: 'ok' });
    appendFileSync(p, '{"torn":');
    assert.equal(statSync(p).mode & 0o777, 0o600);
    const entries = log.read();
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.who, 'ann');
    assert.ok(Date.parse(entries[0]!.at) > 0);
  });
});

describe('dashboard OIDC role mapping', () => {
  const map = { roleClaim: 'groups', roleMap: { ops: 'operator', admins: 'admin', viewers: 'viewer', 'pii-readers': 'view-clear' } as const };
  it('takes the highest mapped role, and view-clear separately', () => {
    assert.deepEqual(roleFromClaims({ groups: ['viewers', 'ops'] }, map), { role: 'operator', viewClear: false });
    assert.deepEqual(roleFromClaims({ groups: ['admins', 'pii-readers'] }, map), { role: 'admin', viewClear: true });
    assert.deepEqual(roleFromClaims({ groups: 'ops viewers' }, map), { role: 'operator', viewClear: false });
  });
  it('grants nothing for unmapped values, prototype names or a missing claim', () => {
    assert.equal(roleFromClaims({ groups: ['staff', 'constructor', '__proto__', 'toString'] }, map).role, undefined);
    assert.equal(roleFromClaims({}, map).role, undefined);
    assert.equal(roleFromClaims({ groups: [{ admin: true }] }, map).role, undefined);
  });
});

describe('dashboard users file shared with the CLI', () => {
  it('sees accounts another process added, and does not overwrite them when saving', async () => {
    const p = join(dir, 'shared.json');
    const server = openUserStore(p);
    await server.add('ann', 'Tq7#vL9m-Rw2$Kp8-Zx4', 'admin');
    const cli = openUserStore(p);
    await new Promise((r) => setTimeout(r, 20)); // a distinct mtime
    await cli.add('bob', 'Yp3!nD8s-Kq6&Lw1-Vb5', 'viewer');
    assert.equal(server.get('bob')?.role, 'viewer');
    await new Promise((r) => setTimeout(r, 20));
    await server.add('cy', 'Hm2@xR7t-Fz9*Nc4-Qj6', 'operator');
    assert.deepEqual(openUserStore(p).list().map((u) => u.name).sort(), ['ann', 'bob', 'cy']);
  });
});
