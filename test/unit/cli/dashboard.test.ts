/**
 * `celeriac dashboard`: refuses to start without auth and off loopback
 * without TLS (before touching a broker), each naming the fix; `dashboard
 * users add` reads the password from stdin and applies the strength rule.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { Exit, type CliIo } from '../../../src/cli/io.ts';
import { main } from '../../../src/cli/main.ts';
import { openUserStore } from '../../../src/dashboard/server/index.ts';

function io(stdin?: string): { io: CliIo & { stdin?: NodeJS.ReadableStream }; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void): Writable => new Writable({ write: (chunk: Buffer, _e, cb) => (append(chunk.toString()), cb()) });
  return {
    io: { stdout: sink((s) => (out += s)), stderr: sink((s) => (err += s)), env: { NODE_ENV: 'test' }, cwd: process.cwd(), ...(stdin !== undefined ? { stdin: Readable.from([stdin]) } : {}) },
    out: () => out,
    err: () => err,
  };
}

describe('celeriac dashboard', () => {
  const dir = mkdtempSync(join(tmpdir(), 'celeriac-dash-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const users = join(dir, 'users.json');

  it('refuses to start without an authentication method, naming the fix', async () => {
    const c = io();
    assert.equal(await main(['dashboard', '--broker', 'redis://127.0.0.1:1/0'], c.io), Exit.ERROR);
    assert.match(c.err(), /refuses to start without an authentication method/);
    assert.match(c.err(), /--users-file/);
    assert.match(c.err(), /dashboard users add/);
  });

  it('refuses a weak password for a new account', async () => {
    const c = io('passwordpassword\n');
    assert.equal(await main(['dashboard', 'users', 'add', 'ann', '--role', 'admin', '--users-file', users], c.io), Exit.ERROR);
    assert.match(c.err(), /password refused/);
  });

  it('adds an account from stdin (scrypt hash, file mode 0600)', async () => {
    const password = randomBytes(24).toString('base64url');
    const c = io(`${password}\n`);
    assert.equal(await main(['dashboard', 'users', 'add', 'ann', '--role', 'operator', '--view-clear', '--users-file', users], c.io), Exit.OK, c.err());
    const text = readFileSync(users, 'utf8');
    assert.match(text, /"hash": "scrypt\$/);
    assert.doesNotMatch(text, new RegExp(password));
    assert.equal(statSync(users).mode & 0o777, 0o600);
    const u = openUserStore(users).get('ann');
    assert.equal(u?.role, 'operator');
    assert.equal(u?.viewClear, true);
    const l = io();
    assert.equal(await main(['dashboard', 'users', 'list', '--users-file', users], l.io), Exit.OK);
    assert.match(l.out(), /ann\toperator\tview-clear/);
  });

  it('refuses to listen off loopback without TLS, naming the fix', async () => {
    const c = io();
    assert.equal(await main(['dashboard', '--users-file', users, '--bind', '0.0.0.0', '--broker', 'redis://127.0.0.1:1/0'], c.io), Exit.ERROR);
    assert.match(c.err(), /refuses to listen on 0\.0\.0\.0 without TLS/);
    assert.match(c.err(), /--tls-cert/);
  });

  it('rejects an unknown role', async () => {
    const c = io('x\n');
    assert.equal(await main(['dashboard', 'users', 'add', 'bob', '--role', 'root', '--users-file', users], c.io), Exit.USAGE);
    assert.match(c.err(), /--role must be one of viewer, operator, admin/);
  });
});
