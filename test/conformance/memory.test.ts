/**
 * The in-process engine's conformance run: registry, broker, result
 * backend and replay store. The memory broker cannot crash separately from
 * its process, so the redelivery test is left to the real brokers; each
 * memory backend and replay store is private to its instance, so the
 * cross-instance tests are left to the real stores.
 */
import { engine } from '../../src/transport/memory/index.ts';
import { createMemoryBroker, MemoryWorld } from '../../src/transport/memory/broker.ts';
import { broadcastRaw } from '../../src/transport/memory/fanout.ts';
import { resolveSettings } from '../../src/config/options.ts';
import { createLogger } from '../../src/observability/logging.ts';
import { backendConformance } from './backend.ts';
import { brokerConformance } from './broker.ts';
import { registryConformance } from './registry.ts';
import { replayStoreConformance } from './replay-store.ts';

const logger = createLogger({ level: 'silent' });
const ctx = { logger, settings: resolveSettings({}) };

registryConformance(engine, (scheme) => `${scheme}://`);

// One world shared by every instance, like processes sharing one server (the engine's own factory gives each broker a private world).
const world = new MemoryWorld();
brokerConformance('memory', {
  priority: 'lower-first',
  create: async () => createMemoryBroker({ world }),
  injectMalformedBroadcast: async (ex, rk) => broadcastRaw(world, ex.name, rk, { not: 'a message' }),
});

backendConformance('memory', { shared: false, create: async () => engine.createBackend!('memory://', ctx) });

replayStoreConformance('memory', { shared: false, open: async () => engine.createReplayStore!({ ...ctx, side: 'broker', keyPrefix: '' }) });
