/**
 * The SQLite engine (`sqlite://`): broker, result backend and a replay
 * store shared by the processes that open the same file.
 */
import type { Engine } from '../../core/engine.ts';
import { ENGINES } from '../../core/schemes.ts';
import { ConfigError } from '../../errors.ts';
import { createSqliteBackend } from './backend.ts';
import { createSqliteBroker } from './broker.ts';
import { openSqlite, sqliteLocationFromUrl } from './open.ts';
import { SqliteReplayStore } from './replay-store.ts';
import { createSqliteBeatStore } from './beat-store.ts';

export const engine: Engine = {
  ...ENGINES.sqlite,
  createBroker: (url, ctx) => createSqliteBroker({ url, ...ctx }),
  createBackend: (url, ctx) => createSqliteBackend({ url, ...ctx }),
  createReplayStore: async ({ url, logger }) => {
    if (url === undefined) throw new ConfigError('the SQLite replay store needs a SQLite URL', { hint: 'use a sqlite:// broker, or securityReplayStore: local' });
    return new SqliteReplayStore(openSqlite(sqliteLocationFromUrl(url), { role: 'broker', logger }));
  },
  createBeatStore: async ({ url, namespace, logger }) => {
    const location = sqliteLocationFromUrl(url);
    return createSqliteBeatStore(openSqlite(location, { role: 'broker', logger }), namespace, location.path);
  },
};
