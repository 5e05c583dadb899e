/**
 * A scripted AMQP 0-9-1 server on 127.0.0.1 for tests of what RabbitMQ
 * itself would never send: it answers the handshake and the methods a
 * Celeriac consumer and publisher use, and delivers content frames built by
 * the test byte for byte (so a content header can carry a table RabbitMQ
 * would refuse). Frames are built with amqplib's own encoders.
 */
import { createRequire } from 'node:module';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
// Celeriac first: amqplib's protocol definitions must load behind the header guard.
import '../../../../src/transport/amqp/field-table.ts';

const require = createRequire(import.meta.url);
const lib = join(dirname(require.resolve('amqplib')), 'lib');
export const defs = require(join(lib, 'defs.js')) as Record<string, number> & {
  encodeMethod(id: number, channel: number, fields: Record<string, unknown>): Buffer;
  encodeProperties(id: number, channel: number, size: number, fields: Record<string, unknown>): Buffer;
  decode(id: number, buf: Buffer): Record<string, unknown>;
};

const FRAME_METHOD = 1;
const FRAME_HEADER = 2;
const FRAME_BODY = 3;
const FRAME_END = 0xce;

/** A content header frame whose properties bytes (flags + property list) are given raw. */
export function rawHeaderFrame(channel: number, bodySize: number, propertyBytes: Buffer): Buffer {
  const payload = Buffer.alloc(12 + propertyBytes.length);
  payload.writeUInt16BE(60, 0);
  payload.writeUInt16BE(0, 2);
  payload.writeBigUInt64BE(BigInt(bodySize), 4);
  propertyBytes.copy(payload, 12);
  return frame(FRAME_HEADER, channel, payload);
}

function frame(type: number, channel: number, payload: Buffer): Buffer {
  const f = Buffer.alloc(8 + payload.length);
  f.writeUInt8(type, 0);
  f.writeUInt16BE(channel, 1);
  f.writeUInt32BE(payload.length, 3);
  payload.copy(f, 7);
  f.writeUInt8(FRAME_END, 7 + payload.length);
  return f;
}

/** One message the fake broker delivers: its header frame (may be malformed) and body. */
export interface ScriptedDelivery {
  header: (channel: number) => Buffer;
  body: Buffer;
}

/** A message a client published (e.g. a dead-letter copy). */
export interface Published {
  routingKey: string;
  properties: Record<string, unknown>;
  body: Buffer;
}

export interface FakeBroker {
  url: string;
  published: Published[];
  /** Delivery tags acked / rejected by the client. */
  acked: number[];
  rejected: number[];
  /** Connections accepted (the consumer and the publisher each open one; a reconnect shows as another). */
  connections: number;
  /** Connections that have closed. */
  closed: number;
  close(): Promise<void>;
}

/** Start the fake broker; `deliveries` are sent to the first consumer of any queue, in order. */
export async function startFakeBroker(deliveries: ScriptedDelivery[]): Promise<FakeBroker> {
  const state: FakeBroker = { url: '', published: [], acked: [], rejected: [], connections: 0, closed: 0, close: async () => undefined };
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    state.connections++;
    sockets.add(sock);
    sock.on('close', () => {
      sockets.delete(sock);
      state.closed++;
    });
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let greeted = false;
    let deliveryTag = 0;
    const publishSeq = new Map<number, number>();
    let pending: { channel: number; routingKey: string; properties?: Record<string, unknown>; size?: number; body: Buffer[] } | undefined;
    const send = (id: number, channel: number, fields: Record<string, unknown>): void => {
      sock.write(defs.encodeMethod(id, channel, fields));
    };
    const onMethod = (channel: number, id: number, args: Buffer): void => {
      const f = defs.decode(id, args);
      switch (id) {
        case defs.ConnectionStartOk:
          send(defs.ConnectionTune!, 0, { channelMax: 0, frameMax: 131072, heartbeat: 0 });
          break;
        case defs.ConnectionOpen:
          send(defs.ConnectionOpenOk!, 0, { knownHosts: '' });
          break;
        case defs.ConnectionClose:
          send(defs.ConnectionCloseOk!, 0, {});
          sock.end();
          break;
        case defs.ChannelOpen:
          send(defs.ChannelOpenOk!, channel, { channelId: Buffer.alloc(0) });
          break;
        case defs.ChannelClose:
          send(defs.ChannelCloseOk!, channel, {});
          break;
        case defs.ConfirmSelect:
          send(defs.ConfirmSelectOk!, channel, {});
          break;
        case defs.BasicQos:
          send(defs.BasicQosOk!, channel, {});
          break;
        case defs.ExchangeDeclare:
          send(defs.ExchangeDeclareOk!, channel, {});
          break;
        case defs.QueueDeclare:
          send(defs.QueueDeclareOk!, channel, { queue: f.queue, messageCount: 0, consumerCount: 0 });
          break;
        case defs.QueueBind:
          send(defs.QueueBindOk!, channel, {});
          break;
        case defs.BasicCancel:
          send(defs.BasicCancelOk!, channel, { consumerTag: f.consumerTag });
          break;
        case defs.BasicConsume: {
          const consumerTag = (f.consumerTag as string) || 'ctag-1';
          send(defs.BasicConsumeOk!, channel, { consumerTag });
          for (const d of deliveries.splice(0)) {
            sock.write(defs.encodeMethod(defs.BasicDeliver!, channel, { consumerTag, deliveryTag: ++deliveryTag, redelivered: false, exchange: '', routingKey: String(f.queue) }));
            sock.write(d.header(channel));
            sock.write(frame(FRAME_BODY, channel, d.body));
          }
          break;
        }
        case defs.BasicPublish:
          pending = { channel, routingKey: String(f.routingKey), body: [] };
          break;
        case defs.BasicAck:
          state.acked.push(Number(f.deliveryTag));
          break;
        case defs.BasicReject:
          state.rejected.push(Number(f.deliveryTag));
          break;
        default:
          break;
      }
    };
    const onContent = (type: number, channel: number, payload: Buffer): void => {
      if (!pending || pending.channel !== channel) return;
      if (type === FRAME_HEADER) {
        pending.size = Number(payload.readBigUInt64BE(4));
        pending.properties = defs.decode(60, payload.subarray(12));
      } else pending.body.push(payload);
      const body = Buffer.concat(pending.body);
      if (pending.size !== undefined && body.length >= pending.size) {
        state.published.push({ routingKey: pending.routingKey, properties: pending.properties ?? {}, body });
        const seq = (publishSeq.get(channel) ?? 0) + 1;
        publishSeq.set(channel, seq);
        pending = undefined;
        send(defs.BasicAck!, channel, { deliveryTag: seq, multiple: false });
      }
    };
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!greeted) {
        if (buf.length < 8) return;
        buf = buf.subarray(8); // "AMQP" 0 0 9 1
        greeted = true;
        send(defs.ConnectionStart!, 0, { versionMajor: 0, versionMinor: 9, serverProperties: {}, mechanisms: Buffer.from('PLAIN'), locales: Buffer.from('en_US') });
      }
      while (buf.length >= 8) {
        const size = buf.readUInt32BE(3);
        if (buf.length < 8 + size) break;
        const type = buf.readUInt8(0);
        const channel = buf.readUInt16BE(1);
        const payload = buf.subarray(7, 7 + size);
        buf = buf.subarray(8 + size);
        if (type === FRAME_METHOD) onMethod(channel, payload.readUInt32BE(0), payload.subarray(4));
        else if (type === FRAME_HEADER || type === FRAME_BODY) onContent(type, channel, payload);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  state.url = `amqp://fake:fake-password-not-a-secret@127.0.0.1:${port}/`;
  state.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return state;
}
