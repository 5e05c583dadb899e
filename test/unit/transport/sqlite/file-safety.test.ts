import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluateSqlitePath, type SqlitePathFacts } from '../../../../src/transport/sqlite/file-safety.ts';

function facts(over: Partial<SqlitePathFacts> = {}): SqlitePathFacts {
  return {
    path: '/home/u/app/.celeriac/celeriac.db',
    directory: { path: '/home/u/app/.celeriac', kind: 'directory', mode: 0o700, uid: 1000 },
    database: { path: '/home/u/app/.celeriac/celeriac.db', kind: 'file', mode: 0o600, uid: 1000 },
    companions: [{ path: '/home/u/app/.celeriac/celeriac.db-wal', kind: 'missing' }],
    processUid: 1000,
    ...over,
  };
}

describe('evaluateSqlitePath (pure)', () => {
  it('accepts a private directory and a 0600 file', () => {
    assert.deepEqual(evaluateSqlitePath(facts(), 'broker'), { refusals: [], warnings: [] });
    // A file not created yet is fine too.
    assert.deepEqual(evaluateSqlitePath(facts({ database: { path: '/x.db', kind: 'missing' } }), 'backend'), { refusals: [], warnings: [] });
  });

  it('refuses a world-writable directory, sticky or not, naming the path and the fix', () => {
    for (const mode of [0o777, 0o1777, 0o703]) {
      const r = evaluateSqlitePath(facts({ directory: { path: '/tmp', kind: 'directory', mode, uid: 0 } }), 'broker');
      assert.equal(r.refusals.length, 1);
      assert.equal(r.refusals[0]!.id, 'CEL-001');
      assert.equal(r.refusals[0]!.setting, 'brokerUrl');
      assert.match(r.refusals[0]!.message, /\/tmp is world-writable/);
      assert.match(r.refusals[0]!.fix, /chmod o-w \/tmp/);
    }
  });

  it('refuses the database or a companion file being a symlink', () => {
    const r = evaluateSqlitePath(
      facts({
        database: { path: '/d/c.db', kind: 'symlink', linkTarget: '/etc/passwd', mode: 0o777, uid: 1000 },
        companions: [{ path: '/d/c.db-wal', kind: 'symlink', linkTarget: '/home/u/.bashrc', mode: 0o777, uid: 1000 }],
      }),
      'backend',
    );
    assert.equal(r.refusals.length, 2);
    assert.ok(r.refusals.every((f) => f.id === 'CEL-014' && f.setting === 'resultBackend'));
    assert.match(r.refusals[0]!.message, /\/d\/c\.db is a symlink to \/etc\/passwd/);
    assert.match(r.refusals[1]!.message, /c\.db-wal is a symlink/);
  });

  it('refuses files others can access; warns for group access, group-writable directories and other owners', () => {
    const open = evaluateSqlitePath(facts({ database: { path: '/d/c.db', kind: 'file', mode: 0o644, uid: 1000 } }), 'broker');
    assert.equal(open.refusals.length, 1);
    assert.match(open.refusals[0]!.fix, /chmod 600 \/d\/c\.db/);
    const group = evaluateSqlitePath(
      facts({
        directory: { path: '/srv/q', kind: 'directory', mode: 0o2770, uid: 1001 },
        database: { path: '/srv/q/c.db', kind: 'file', mode: 0o660, uid: 1001 },
      }),
      'broker',
    );
    assert.equal(group.refusals.length, 0);
    assert.equal(group.warnings.length, 4);
  });

  it('refuses something that is not a regular file', () => {
    const r = evaluateSqlitePath(facts({ database: { path: '/d/c.db', kind: 'other', mode: 0o600, uid: 1000 } }), 'broker');
    assert.equal(r.refusals.length, 1);
    const d = evaluateSqlitePath(facts({ directory: { path: '/d', kind: 'other', mode: 0o600, uid: 1000 } }), 'broker');
    assert.equal(d.refusals.length, 1);
  });
});
