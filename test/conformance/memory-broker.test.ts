import { createMemoryBroker, MemoryWorld } from '../../src/transport/memory/broker.ts';
import { brokerConformance } from './broker.ts';
import { broadcastRaw } from '../../src/transport/memory/fanout.ts';

// The memory broker cannot crash separately from its process, so the
// redelivery test is left to the real brokers.
const world = new MemoryWorld();
brokerConformance('memory', {
  priority: 'lower-first',
  // One world shared by every instance, like processes sharing one server.
  create: async () => createMemoryBroker({ world }),
  injectMalformedBroadcast: async (ex, rk) => broadcastRaw(world, ex.name, rk, { not: 'a message' }),
});
