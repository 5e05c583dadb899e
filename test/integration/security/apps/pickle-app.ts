/**
 * An app that (wrongly) accepts pickle, for the start-up policy test: the
 * worker must refuse to start. URLs come from the environment.
 */
import { createApp } from '../../../../src/client/app.ts';

export const app = createApp({ acceptContent: ['json', 'pickle'] });

app.task('tasks.add', (x: number, y: number) => x + y);
