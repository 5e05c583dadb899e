/** An app whose module fails to load while a marker file exists: replacement children cannot start. */
import { existsSync } from 'node:fs';
import { createApp } from '../../../../src/client/app.ts';

const marker = process.env.TEST_FAIL_START_FILE;
if (marker && existsSync(marker)) throw new Error('start refused by the test (marker file present)');

export const app = createApp();

/** Which process ran it. */
export const pid = app.task('flaky.pid', () => process.pid);
