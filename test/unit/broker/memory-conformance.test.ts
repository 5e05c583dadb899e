import { createMemoryBroker, MemoryWorld } from '../../../src/broker/memory.ts';
import { brokerConformance } from '../../conformance/broker.ts';

// The memory broker cannot crash separately from its process, so the
// redelivery test is left to the real brokers.
const world = new MemoryWorld();
brokerConformance('memory', {
  priority: 'lower-first',
  // One world shared by every instance, like processes sharing one server.
  create: async () => createMemoryBroker({ world }),
});
