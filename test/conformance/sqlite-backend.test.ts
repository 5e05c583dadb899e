import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSqliteBackend } from '../../src/transport/sqlite/backend.ts';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { sqliteUrlForPath } from '../../src/transport/sqlite/open.ts';
import { backendConformance } from './backend.ts';

// Every instance opens the same file, as processes on one machine do.
const dir = mkdtempSync(join(tmpdir(), 'celeriac-sqlite-backend-'));
const url = sqliteUrlForPath(join(dir, 'results.db'));
const logger = createLogger({ level: 'silent' });
backendConformance('sqlite', {
  shared: true,
  teardown: async () => rmSync(dir, { recursive: true, force: true }),
  create: async () => createSqliteBackend({ url, logger, settings: resolveSettings({}) }),
});
