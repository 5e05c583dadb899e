/**
 * Issue 20 #13: secret files were checked by their mode bits only, so a
 * 0600 file owned by another user, or one in a directory every user may
 * write to (anyone can swap it), was read; `secrets generate --out` wrote
 * into a 0777 directory without a word.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readSecretFile } from '../../../src/config/env.ts';
import { ConfigError } from '../../../src/errors.ts';
import { generateSecret, writeSecretFiles } from '../../../src/secrets/generate.ts';

const root = mkdtempSync(join(tmpdir(), 'celeriac-owner-'));
after(() => rmSync(root, { recursive: true, force: true }));
const isRoot = process.getuid?.() === 0;

function secretIn(dir: string, dirMode: number, name = 'pw'): string {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, dirMode);
  const p = join(dir, name);
  writeFileSync(p, 'Zr8-vQ2_kLm9xTw4Pn7c\n', { mode: 0o600 });
  return p;
}

const refused = (fn: () => unknown, code: string, re: RegExp): void => {
  assert.throws(fn, (e: unknown) => e instanceof ConfigError && e.code === code && re.test(e.message) && !e.message.includes('Zr8-vQ2'));
};

describe('secret file owner and directory (issue 20 #13)', () => {
  it('refuses a file in a directory every user, or its group, may write to', () => {
    refused(() => readSecretFile(secretIn(join(root, 'open'), 0o777), 'T_FILE'), 'ERR_SECRET_FILE_DIR', /every user may write/);
    refused(() => readSecretFile(secretIn(join(root, 'group'), 0o775), 'T_FILE'), 'ERR_SECRET_FILE_DIR', /its group may write/);
  });

  it('refuses a link whose target sits in an open directory', () => {
    const target = secretIn(join(root, 'open2'), 0o777);
    const safe = join(root, 'safe');
    mkdirSync(safe, { mode: 0o700 });
    const link = join(safe, 'pw-link');
    symlinkSync(target, link);
    refused(() => readSecretFile(link, 'T_FILE'), 'ERR_SECRET_FILE_DIR', /open2/);
  });

  it('accepts private and sticky directories (/tmp, Kubernetes secret volumes)', () => {
    assert.equal(readSecretFile(secretIn(join(root, 'private'), 0o700), 'T_FILE'), 'Zr8-vQ2_kLm9xTw4Pn7c');
    assert.equal(readSecretFile(secretIn(join(root, 'sticky'), 0o1777), 'T_FILE'), 'Zr8-vQ2_kLm9xTw4Pn7c');
  });

  it('refuses a 0600 file owned by another user', (t) => {
    if (!isRoot) return t.skip('needs root to give a file to another user');
    const p = secretIn(join(root, 'theirs'), 0o755);
    chownSync(p, 65534, 65534);
    refused(() => readSecretFile(p, 'T_FILE'), 'ERR_SECRET_FILE_OWNER', /belongs to another user \(uid 65534\)/);
    const dir = join(root, 'their-dir');
    const q = secretIn(dir, 0o755);
    chownSync(dir, 65534, 65534);
    refused(() => readSecretFile(q, 'T_FILE'), 'ERR_SECRET_FILE_DIR', /belongs to another user/);
  });

  it('secrets generate --out refuses a directory others may write to, before writing anything', async () => {
    const open = join(root, 'out-open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const s = await generateSecret('password');
    assert.throws(() => writeSecretFiles(open, s), (e: unknown) => e instanceof ConfigError && /refusing to write secrets into .*every user may write/.test(e.message));
    assert.deepEqual(writeSecretFiles(join(root, 'out-new'), s), [join(root, 'out-new', 'password')]);
  });
});
