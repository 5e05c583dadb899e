/**
 * The in-process engine (`memory://`, tests and demos): broker, result
 * backend and a replay store private to this process.
 */
import type { Engine } from '../../core/engine.ts';
import { ENGINES } from '../../core/schemes.ts';
import { createMemoryBackend } from './backend.ts';
import { createMemoryBroker } from './broker.ts';
import { MemoryReplayStore } from './replay-store.ts';
import { createMemoryBeatStore } from './beat-store.ts';

export const engine: Engine = {
  ...ENGINES.memory,
  createBroker: () => createMemoryBroker(),
  createBackend: () => createMemoryBackend(),
  createReplayStore: async () => new MemoryReplayStore(),
  createBeatStore: async ({ namespace }) => createMemoryBeatStore(namespace),
};
