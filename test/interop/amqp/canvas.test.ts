/**
 * Canvas across languages with RabbitMQ as the broker and Redis as the
 * result backend (the usual mixed setup): the cases of
 * test/helpers/canvas-interop.ts that involve both workers, on a private
 * vhost of the shared node.
 */
import { canvasInteropCases } from '../../helpers/canvas-interop.ts';
import { hasRedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery } from '../../helpers/services.ts';
import { createTestVhost, hasRabbitmq } from '../../integration/amqp/support/rabbit.ts';

canvasInteropCases({
  name: 'RabbitMQ broker, Redis results',
  ready: hasRabbitmq() && hasRedisServer() && hasPythonCelery(),
  broker: async () => {
    const vh = await createTestVhost('canvas');
    return { url: vh.url(), close: () => vh.delete() };
  },
});
