/**
 * The RabbitMQ engine (`amqp://`, `amqps://`, kombu's `pyamqp://`): a
 * broker only (no result backend; replay nonces go to another engine's
 * store).
 */
import type { Engine } from '../../core/engine.ts';
import { ENGINES } from '../../core/schemes.ts';
import { createAmqpBroker } from './broker.ts';

export const engine: Engine = {
  ...ENGINES.amqp,
  createBroker: (url, ctx) => createAmqpBroker({ url, ...ctx }),
};
