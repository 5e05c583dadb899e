/**
 * The CLI entry: unknown commands (including Object.prototype's names) are
 * usage errors, --help lists --version, and an app module that throws at
 * import is reported with its stack (file and line).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { Exit, type CliIo } from '../../../src/cli/io.ts';
import { main } from '../../../src/cli/main.ts';

function io(): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void): Writable => new Writable({ write: (chunk: Buffer, _e, cb) => (append(chunk.toString()), cb()) });
  return { io: { stdout: sink((s) => (out += s)), stderr: sink((s) => (err += s)), env: { NODE_ENV: 'test' }, cwd: process.cwd() }, out: () => out, err: () => err };
}

describe('celeriac command line', () => {
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
    it(`treats ${name} as an unknown command`, async () => {
      const c = io();
      assert.equal(await main([name], c.io), Exit.USAGE);
      assert.match(c.err(), new RegExp(`unknown command "${name}"`));
    });
  }

  it('lists --version in --help, and prints the version', async () => {
    const c = io();
    assert.equal(await main(['--help'], c.io), Exit.OK);
    assert.match(c.out(), /-V, --version/);
    const v = io();
    assert.equal(await main(['--version'], v.io), Exit.OK);
    assert.match(v.out(), /^\d+\.\d+\.\d+/);
  });

  it('offers every engine\'s schemes, postgres:// included, for an unknown URL scheme', async () => {
    const c = io();
    const before = process.env.CELERIAC_BROKER_URL;
    try {
      assert.equal(await main(['send', 'x.y', '-b', 'foo://somewhere'], c.io), Exit.ERROR);
    } finally {
      if (before === undefined) delete process.env.CELERIAC_BROKER_URL;
      else process.env.CELERIAC_BROKER_URL = before;
    }
    assert.match(c.err(), /scheme "foo" is not supported — use one of redis:\/\/.*sqlite:\/\/.*postgres:\/\//);
    assert.doesNotMatch(c.err(), /db\+postgresql/, 'SQLAlchemy spellings are accepted, not advertised');
  });

  it('reports an app module that throws at import with its stack', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'celeriac-badmod-'));
    try {
      const file = join(dir, 'broken.mjs');
      writeFileSync(file, 'export const app = 1;\nconst cfg = null;\ncfg.url;\n');
      const c = io();
      assert.equal(await main(['send', 'x.y', '-A', file], c.io), Exit.ERROR);
      assert.match(c.err(), /app module .*broken\.mjs failed to load/);
      assert.match(c.err(), /TypeError: Cannot read properties of null/);
      assert.match(c.err(), /broken\.mjs:3:5/, 'the file and line where it threw');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
