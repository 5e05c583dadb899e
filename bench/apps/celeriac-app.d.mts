// Types of celeriac-app.mjs for the TypeScript parts of the benchmark.
import type { App, TaskHandle } from '../../dist/index.js';

export declare const app: App;
export declare const noop: TaskHandle<[], undefined>;
