/**
 * Canvas across languages on Redis (broker db 0, results db 1 of a private
 * server): the cases are in test/helpers/canvas-interop.ts.
 */
import { canvasInteropCases } from '../../helpers/canvas-interop.ts';
import { hasRedisServer } from '../../helpers/redis-server.ts';
import { hasPythonCelery } from '../../helpers/services.ts';

canvasInteropCases({
  name: 'Redis',
  ready: hasRedisServer() && hasPythonCelery(),
  broker: async (redis) => ({ url: redis.url(0), close: async () => undefined }),
});
