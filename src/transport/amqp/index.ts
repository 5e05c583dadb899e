/**
 * The RabbitMQ engine (`amqp://`, `amqps://`, kombu's `pyamqp://`): a
 * broker, and Celery's `rpc://` results over it (replies to the caller's
 * queue, not a store: see rpc-backend.ts); replay nonces go to another
 * engine's store.
 */
import type { Engine } from '../../core/engine.ts';
import { ENGINES } from '../../core/schemes.ts';
import { createAmqpBroker } from './broker.ts';
import { createRpcBackend } from './rpc-backend.ts';

export const engine: Engine = {
  ...ENGINES.amqp,
  createBroker: (url, ctx) => createAmqpBroker({ url, ...ctx }),
  createRpcBackend: (brokerUrl, ctx) => createRpcBackend({ brokerUrl, ...ctx }),
};
