/**
 * The hooks through which message integrity plugs into the client and the
 * worker: signing on send, verification and decoding on receive, replay
 * checks that need shared state, and sealing of result records.
 */
import type { RecordSealer } from '../client/results.ts';
import type { BodyDecoder, TaskRequest } from '../protocol/task-message.ts';
import type { WireMessage } from '../protocol/types.ts';
import type { Finding } from '../config/policy.ts';

export interface MessageSecurity {
  /** Sign an outgoing task message (body and/or header signature); returns the message to publish. */
  sign?(message: WireMessage): WireMessage;
  /** Verify and decode a received body; replaces the plain decoder. Throws `DecodeError`s (incl. signature errors). */
  decodeBody?: BodyDecoder;
  /**
   * True when every received message must carry a valid signature: a
   * message refused before its signature was checked has an
   * unauthenticated id, so the worker writes no record under that id.
   */
  readonly verifiesSenders?: boolean;
  /**
   * Checks that need shared state, run after decoding and before the task is
   * scheduled (e.g. replay detection). Resolves to a rejection reason, or
   * undefined to accept.
   */
  admit?(message: WireMessage, request: TaskRequest, delivery: { redelivered: boolean; deliveryTag: string }): Promise<string | undefined>;
  /** The message was settled (acked or dead-lettered) for good. */
  settled?(message: WireMessage): void;
  /**
   * The message is about to be given back to the broker (requeued: shutdown,
   * a lost child process, a failed settle). Whatever this consumer holds for
   * it (e.g. a replay-guard hold) must be let go, so the redelivery is
   * accepted wherever it lands. Call it before the requeue.
   */
  released?(message: WireMessage): void;
  /**
   * Refuse a configuration the security policy does not allow (e.g. no
   * message signing in production). Throws `ConfigError`; called once before
   * the first connection.
   */
  startupCheck?(): void;
  /**
   * The same checks as findings, without throwing or logging: refusals and
   * warnings to merge into the start-up policy report, so one start lists
   * every refusal.
   */
  policyChecks?(): { refusals: Finding[]; warnings: Finding[] };
  /** Seal and open result records at rest. */
  resultSealer?: RecordSealer;
  /** Lines to log as warnings at every start (weaker modes in use). */
  warnings?: string[];
  /**
   * The broker's or backend's URL changed (SIGHUP rotation): connections of
   * this layer made from that URL (the Redis replay store) switch to its
   * credentials. Rejects, keeping the old ones, when the new ones are refused.
   */
  updateCredentials?(url: string, side: 'broker' | 'backend'): Promise<void>;
  /** Open what a worker needs before it consumes (a local replay file), so problems stop the start. */
  prepare?(): Promise<void>;
  /** Release resources (connections of a shared replay store). */
  close?(): Promise<void>;
}
