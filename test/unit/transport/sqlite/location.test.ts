import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../../src/errors.ts';
import { DEFAULT_SQLITE_PATH, defaultSqliteUrl, sqliteLocationFromUrl, sqliteUrlForPath } from '../../../../src/transport/sqlite/location.ts';

describe('sqlite locations', () => {
  it('resolves absolute, relative and default paths', () => {
    assert.equal(sqliteLocationFromUrl('sqlite:///var/lib/q.db', '/w').path, '/var/lib/q.db');
    assert.equal(sqliteLocationFromUrl('sqlite://data/q.db', '/w').path, '/w/data/q.db');
    assert.equal(sqliteLocationFromUrl('sqlite://', '/w').path, `/w/${DEFAULT_SQLITE_PATH}`);
    assert.equal(defaultSqliteUrl('/w'), 'sqlite:///w/.celeriac/celeriac.db');
  });

  it('round-trips paths with reserved characters through the URL', () => {
    const path = '/tmp/a b/100%/q?#.db';
    assert.equal(sqliteLocationFromUrl(sqliteUrlForPath(path)).path, path);
  });

  it('reads options and refuses bad ones', () => {
    const l = sqliteLocationFromUrl('sqlite:///q.db?synchronous=full&busy_timeout=250&wake=poll');
    assert.deepEqual({ s: l.synchronous, b: l.busyTimeoutMs, w: l.wake }, { s: 'FULL', b: 250, w: 'poll' });
    const d = sqliteLocationFromUrl('sqlite:///q.db');
    assert.deepEqual({ s: d.synchronous, b: d.busyTimeoutMs, w: d.wake }, { s: 'NORMAL', b: 5000, w: 'watch' });
    for (const bad of ['sqlite:///q.db?synchronous=off', 'sqlite:///q.db?busy_timeout=-1', 'sqlite:///q.db?wake=spin', 'sqlite://:memory:', 'redis://h/0']) {
      assert.throws(() => sqliteLocationFromUrl(bad), ConfigError, bad);
    }
  });
});
