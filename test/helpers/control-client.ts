/**
 * A minimal pidbox client for tests: broadcasts one control request as
 * Celery's `Mailbox._broadcast` writes it and collects the replies.
 */
import { randomUUID } from 'node:crypto';
import { controlExchange, replyExchange, type Broker } from '../../src/core/broker.ts';
import type { WireMessage } from '../../src/protocol/types.ts';

export function controlMessage(body: unknown, headers: Record<string, unknown> = { clock: 1, expires: Date.now() / 1000 + 5 }): WireMessage {
  return { headers, properties: { delivery_mode: 2, priority: 0 }, contentType: 'application/json', contentEncoding: 'utf-8', body: Buffer.from(JSON.stringify(body)) };
}

export interface AskOptions {
  destination?: string[] | null;
  timeoutMs?: number;
  /** Stop after this many replies. */
  limit?: number;
  headers?: Record<string, unknown>;
}

/** Send `method` and return the decoded replies (`{node: result}` each) and their headers. */
export async function ask(broker: Broker, method: string, args: Record<string, unknown> = {}, o: AskOptions = {}): Promise<Array<Record<string, unknown>>> {
  const oid = randomUUID();
  const replies = await broker.openReplyQueue(replyExchange(), oid);
  const ticket = randomUUID();
  const request = { method, arguments: args, destination: o.destination ?? null, pattern: null, matcher: null, ticket, reply_to: { exchange: replyExchange().name, routing_key: oid } };
  await broker.broadcast(controlExchange(), '', controlMessage(request, o.headers));
  const out: Array<Record<string, unknown>> = [];
  const deadline = Date.now() + (o.timeoutMs ?? 1000);
  while (out.length < (o.limit ?? Infinity) && Date.now() < deadline) {
    const r = await replies.receive(Math.max(1, deadline - Date.now()));
    if (!r) break;
    if (r.message.headers.ticket !== ticket) continue;
    out.push(JSON.parse(r.message.body.toString()) as Record<string, unknown>);
  }
  await replies.close();
  return out;
}
