/**
 * createApp: configuration, the task registry, and the client side of the
 * protocol (build, sign, route and publish task messages; read results).
 */
import { createBackend } from '../transport/index.ts';
import { ResultStore } from './results.ts';
import type { ResultBackend } from '../core/backend.ts';
import { createBroker, defaultSqliteUrl, engineOf, openSharedTokenBuckets } from '../transport/index.ts';
import type { Broker } from '../core/broker.ts';
import { contentTypeOf, decodeByContentType, JSON_SERIALIZER, serializerByName } from '../codec/serializers.ts';
import { BROKER_URL_VARS, RESULT_BACKEND_VARS, settingFromEnv, type Env } from '../config/env.ts';
import { resolveSettings, type AppSettingsInput, type ResolvedSettings } from '../config/options.ts';
import { isProduction } from '../config/mode.ts';
import { evaluatePolicy, InsecureConfigError, policyInputFromSettings } from '../config/policy.ts';
import { enforcePolicy, recordPolicyRefusals } from '../observability/policy-events.ts';
import { recordSecurityEvent } from '../observability/security-events.ts';
import { ClosedError, ConfigError } from '../errors.ts';
import { createLogger, type Logger } from '../observability/logging.ts';
import type { BodyDecoder, TaskMessageInput } from '../protocol/task-message.ts';
import type { WireMessage } from '../protocol/types.ts';
import { AsyncResult } from './result.ts';
import {
  type Init,
  type KwargsByName,
  type Last,
  type SendOptions,
  type TaskDefinition,
  type TaskFunction,
  type TaskHandle,
  type TaskOptions,
} from './task.ts';
import type { MessageSecurity } from '../security/message-security-types.ts';
import { createMessageSecurity } from '../security/message-security.ts';
import { createControlSigner } from '../security/control-guard.ts';
import { loadSecuritySettings } from '../config/security-settings.ts';
import { SubmissionLimits } from './submission-limits.ts';
import { Producer, readKeptSend, type PreparedSend } from './producer.ts';
import { createControl, type Control } from './control.ts';
import { withReplyRoute } from './rpc-route.ts';
import { isRpcBackendUrl } from '../core/schemes.ts';
import { loadTracing, type Tracing } from '../observability/tracing/index.ts';

export type { MessageSecurity } from '../security/message-security-types.ts';

/** Options of `createApp`: Celery settings (any spelling) plus injected adapters. */
export interface AppOptions extends AppSettingsInput {
  /** Use this broker instead of one built from `brokerUrl`. */
  broker?: Broker;
  /** Use this result backend instead of one built from `resultBackend`; `null` disables results. */
  backend?: ResultBackend | null;
  /** Logger (default: pino on stderr). */
  logger?: Logger;
  /** Environment to read URLs from (default `process.env`). */
  env?: Env;
}

/** One call of a bulk send. */
export interface SendCall {
  name: string;
  args?: readonly unknown[];
  kwargs?: Readonly<Record<string, unknown>>;
  options?: SendOptions;
}

/** A Celeriac application. */
export class App {
  readonly settings: ResolvedSettings;
  readonly logger: Logger;
  /** Registered tasks by name. */
  readonly registry = new Map<string, TaskDefinition>();
  /** Signing/verification hooks; undefined means plain json/msgpack. */
  security: MessageSecurity = {};
  private readonly env: Env;
  /** Which URLs came from the environment (and may be reloaded). */
  private readonly urlsFromEnv: { broker: boolean; backend: boolean };
  private brokerPromise: Promise<Broker> | undefined;
  private backendPromise: Promise<ResultStore | undefined> | undefined;
  /** The connected broker and store once their promises resolved: sends skip an await each. */
  private brokerReady: Broker | undefined;
  private storeReady: { store: ResultStore | undefined } | undefined;
  private readonly injectedBroker: Broker | undefined;
  private readonly injectedBackend: ResultBackend | null | undefined;
  /** Set when nothing was configured and the app uses the embedded SQLite default; cleared once announced. */
  private embeddedDefault: { results: boolean } | undefined;
  private closed = false;
  private readonly acceptTypes: ReadonlySet<string>;
  /** Send rate limits and queue caps (CEL-019). */
  private readonly submission: SubmissionLimits;
  /**
   * Routes, builds, signs, caps and publishes every task message: the
   * client's sends and a worker's follow-ups (retries, chains, callbacks).
   */
  readonly producer: Producer;

  constructor(options: AppOptions = {}) {
    const { broker, backend, logger, env, ...settings } = options;
    this.env = env ?? process.env;
    this.logger = logger ?? createLogger();
    this.injectedBroker = broker;
    this.injectedBackend = backend;
    const resolved = resolveSettings(settings);
    this.urlsFromEnv = { broker: resolved.brokerUrl === undefined, backend: resolved.resultBackend === undefined };
    resolved.brokerUrl ??= settingFromEnv(this.env, BROKER_URL_VARS);
    resolved.resultBackend ??= settingFromEnv(this.env, RESULT_BACKEND_VARS);
    // Nothing configured: the embedded SQLite broker in the working directory, resolved to an
    // absolute path now so a client and a worker started in the same directory meet on one file.
    // Results default to the same file only with the default broker: an explicit broker (Redis,
    // RabbitMQ) without a result backend keeps Celery's "no results".
    if (!broker && !resolved.brokerUrl) {
      resolved.brokerUrl = defaultSqliteUrl();
      const results = backend === undefined && !resolved.resultBackend;
      if (results) resolved.resultBackend = resolved.brokerUrl;
      this.embeddedDefault = { results };
    }
    this.settings = resolved;
    this.acceptTypes = new Set(resolved.acceptContent.map(contentTypeOf));
    this.security = createMessageSecurity({ settings: resolved, env: this.env, logger: this.logger, acceptTypes: this.acceptTypes });
    // Shared send-rate buckets: on Redis when the broker or the backend is Redis (as before), else on PostgreSQL.
    const urls = [resolved.brokerUrl, resolved.resultBackend];
    const bucketUrl = urls.find((u) => engineOf(u)?.name === 'redis') ?? urls.find((u) => engineOf(u)?.name === 'postgres');
    this.submission = new SubmissionLimits({
      clientLimit: resolved.limits.sendRateLimit,
      wait: resolved.limits.sendRateLimitWait,
      maxQueueLength: resolved.limits.maxQueueLength,
      transportMaxQueueLength: resolved.brokerTransportOptions.maxQueueLength,
      sharedBuckets: bucketUrl ? () => openSharedTokenBuckets(bucketUrl, bucketUrl === resolved.brokerUrl ? 'broker' : 'backend', 'rate-limit', { settings: resolved, logger: this.logger }) : undefined,
      keyPrefix: typeof resolved.brokerTransportOptions.globalKeyprefix === 'string' ? resolved.brokerTransportOptions.globalKeyprefix : '',
      logger: this.logger,
    });
    this.producer = new Producer({
      settings: resolved,
      registry: this.registry,
      serializer: serializerByName(resolved.taskSerializer) ?? JSON_SERIALIZER,
      signer: () => this.security.sign,
      submission: this.submission,
      brokerReady: () => this.brokerReady,
      broker: () => this.broker(),
      closed: () => this.closed,
      logger: this.logger,
      tracing: this.tracingRef,
    });
  }

  /**
   * OpenTelemetry hooks (src/observability/tracing), loaded when the broker
   * first connects with `telemetryTracing` on; undefined otherwise, and then
   * the send and run paths skip tracing with one check.
   */
  tracing: Tracing | undefined;
  private readonly tracingRef = (): Tracing | undefined => this.tracing;

  /** True in production mode (the default unless `CELERIAC_ENV`/`NODE_ENV` asks for development; see `config/mode.ts`), where the security policy is strict. */
  get production(): boolean {
    return isProduction(this.env);
  }

  // ── tasks ────────────────────────────────────────────────────────────

  /**
   * Register a task and get a typed handle. The handle's `delay(...)` and
   * `applyAsync(args, kwargs, options)` are checked against `fn`.
   */
  task<F extends TaskFunction>(name: string, fn: F, options: TaskOptions & { kwargs: true }): TaskHandle<Init<Parameters<F>>, Awaited<ReturnType<F>>, Last<Parameters<F>>>;
  task<F extends TaskFunction, const P extends readonly string[]>(name: string, fn: F, options: TaskOptions & { params: P }): TaskHandle<Parameters<F>, Awaited<ReturnType<F>>, KwargsByName<P, Parameters<F>>>;
  task<F extends TaskFunction>(name: string, fn: F, options?: TaskOptions): TaskHandle<Parameters<F>, Awaited<ReturnType<F>>>;
  task(name: string, fn: TaskFunction, options: TaskOptions = {}): TaskHandle<unknown[], unknown, Record<string, unknown>> {
    if (!name) throw new ConfigError('a task needs a name', { hint: "e.g. app.task('tasks.add', fn)" });
    if (this.registry.has(name)) throw new ConfigError(`task ${name} is already registered`, { hint: 'give each task a unique name' });
    const def: TaskDefinition = { name, fn: fn as unknown as (...args: unknown[]) => unknown, options };
    this.registry.set(name, def);
    return this.handle(def);
  }

  /**
   * A typed handle for a task defined elsewhere (e.g. in Python):
   * `app.remoteTask<(x: number, y: number) => number>('tasks.add')`.
   */
  remoteTask<F extends TaskFunction>(name: string, options: TaskOptions = {}): TaskHandle<Parameters<F>, Awaited<ReturnType<F>>, Record<string, unknown>> {
    return this.handle({ name, fn: undefined, options }) as TaskHandle<Parameters<F>, Awaited<ReturnType<F>>, Record<string, unknown>>;
  }

  private handle(def: TaskDefinition): TaskHandle<unknown[], unknown, Record<string, unknown>> {
    return {
      name: def.name,
      delay: (...args: unknown[]) => this.send(def, args, {}, {}),
      applyAsync: (args: unknown[], kwargs?: Record<string, unknown>, options?: SendOptions) =>
        this.send(def, args ?? [], kwargs ?? {}, options ?? {}),
    };
  }

  /** Send a task by name (for tasks defined elsewhere, e.g. in Python). */
  sendTask<R = unknown>(name: string, args: readonly unknown[] = [], kwargs: Readonly<Record<string, unknown>> = {}, options: SendOptions = {}): Promise<AsyncResult<R>> {
    const def = this.registry.get(name) ?? { name, fn: undefined, options: {} };
    return this.send(def, args, kwargs, options) as Promise<AsyncResult<R>>;
  }

  /**
   * Build a task's message exactly as `sendTask` would (routed, validated,
   * signed, send limits taken) without publishing it, for a caller that
   * stores the send together with a record of its own (celeriac beat's
   * outbox: the tick's record and its message in one atomic step, so a
   * crash between the two can neither lose nor repeat it).
   */
  async prepareSend(name: string, args: readonly unknown[] = [], kwargs: Readonly<Record<string, unknown>> = {}, options: SendOptions = {}): Promise<PreparedSend> {
    const def = this.registry.get(name) ?? { name, fn: undefined, options: {} };
    const routed = this.rpcResults ? await withReplyRoute(this.resultStore(), options) : options;
    return this.producer.prepareSend(def, args, kwargs, routed);
  }

  /**
   * Publish again a message kept with `PreparedSend.keep()` (its queue's cap
   * applies); resolves with its task id. The message is sent as it was
   * built and signed: a worker that already ran a signed copy refuses this
   * one as a replay.
   */
  async publishKept(kept: string): Promise<string> {
    const { queue, priority, message } = readKeptSend(kept);
    // Not signed again: a kept message changed where it was kept fails verification at the workers.
    await this.producer.publish(queue, message, priority);
    return String(message.headers.id ?? '');
  }

  /**
   * Send many tasks in one broker round trip where the broker allows.
   * Resolves once the broker holds all of them.
   */
  async sendMany(calls: readonly SendCall[]): Promise<AsyncResult[]> {
    const broker = await this.broker();
    const store = await this.resultStore();
    const route = (o: SendOptions): Promise<SendOptions> => (this.rpcResults ? withReplyRoute(Promise.resolve(store), o) : Promise.resolve(o));
    const ids = await this.producer.sendMany(
      broker,
      await Promise.all(calls.map(async (c) => ({ def: this.registry.get(c.name) ?? { name: c.name, fn: undefined, options: {} }, args: c.args ?? [], kwargs: c.kwargs ?? {}, options: await route(c.options ?? {}) }))),
    );
    return ids.map((id, i) => new AsyncResult(id, store, this.controlRef, this.tracing && { tracing: this.tracingRef, task: calls[i]!.name }));
  }

  private controlClient: Control | undefined;
  private readonly controlRef = (): Control => this.control;

  /** Remote control of workers (Celery's `app.control`): inspect, revoke, rate limits, shutdown, … */
  get control(): Control {
    // Signed with the keys that sign tasks, so workers that verify control obey it (docs/control-security.md).
    this.controlClient ??= createControl({
      broker: () => this.broker(),
      sign: createControlSigner({ security: loadSecuritySettings(this.settings, this.env, this.acceptTypes) }),
    });
    return this.controlClient;
  }

  /** A result handle for a known task id. */
  asyncResult<R = unknown>(taskId: string): AsyncResult<R> {
    // The store may not be connected yet; AsyncResult resolves it lazily.
    return new LazyAsyncResult<R>(taskId, this);
  }

  private send(def: TaskDefinition, args: readonly unknown[], kwargs: Readonly<Record<string, unknown>>, options: SendOptions): Promise<AsyncResult<unknown>> {
    if (this.rpcResults) return withReplyRoute(this.resultStore(), options).then((o) => this.sendRouted(def, args, kwargs, o));
    return this.sendRouted(def, args, kwargs, options);
  }

  /** `rpc://` results: every send names the client's reply queue (rpc-route.ts). */
  private get rpcResults(): boolean {
    return isRpcBackendUrl(this.settings.resultBackend) || typeof this.injectedBackend?.replyRoute === 'function';
  }

  private sendRouted(def: TaskDefinition, args: readonly unknown[], kwargs: Readonly<Record<string, unknown>>, options: SendOptions): Promise<AsyncResult<unknown>> {
    return this.producer.send(def, args, kwargs, options, (id) =>
      this.storeReady ? new AsyncResult(id, this.storeReady.store, this.controlRef, this.tracing && { tracing: this.tracingRef, task: def.name }) : this.resultStore().then((store) => new AsyncResult(id, store, this.controlRef, this.tracing && { tracing: this.tracingRef, task: def.name })),
    );
  }

  /** Build (and sign, when signing is on) a task message. */
  buildMessage(input: TaskMessageInput): WireMessage {
    return this.producer.buildMessage(input);
  }

  /** Publish an already-built message (the queue's cap applies). */
  publish(queue: string, message: WireMessage, priority?: number): Promise<void> {
    return this.producer.publish(queue, message, priority);
  }

  /** Decoder for received bodies: accept list, limits and (when configured) signature verification. */
  get decodeBody(): BodyDecoder {
    if (this.security.decodeBody) return this.security.decodeBody;
    const accept = this.acceptTypes;
    const limits = this.settings.decodeLimits;
    return (message) => decodeByContentType(message.body, message.contentType, accept, limits, { compression: message.headers.compression, contentEncoding: message.contentEncoding });
  }

  // ── connections ──────────────────────────────────────────────────────

  private policyChecked = false;

  /**
   * Run the security policy once per app, before the first connection:
   * refuses insecure settings with an error naming each setting and its
   * fix, and logs every accepted unsafe override as a warning.
   */
  enforceSecurityPolicy(): void {
    if (this.policyChecked) return;
    // One report: transport and credential rules plus message signing (CEL-007) and its weaker modes,
    // so a refused start lists every refusal at once, each with its fix.
    const input = policyInputFromSettings(this.settings, this.env);
    const signing = this.security.policyChecks?.();
    enforcePolicy({ ...input, otherChecks: signing ? [signing] : [] }, this.logger);
    this.policyChecked = true;
  }

  /** Log, once, that the embedded default is in use (at first connection, so pool children that never connect stay quiet). */
  private announceEmbeddedDefault(): void {
    if (!this.embeddedDefault) return;
    const { results } = this.embeddedDefault;
    this.embeddedDefault = undefined;
    const url = this.settings.brokerUrl ?? '';
    const path = decodeURIComponent(url.slice('sqlite://'.length));
    this.logger.info(
      { path },
      `no broker configured: using the embedded SQLite broker${results ? ' and result backend' : ''} at ${path} (set CELERIAC_BROKER_URL for Redis or RabbitMQ)`,
    );
  }

  /** The broker, connected on first use. */
  broker(): Promise<Broker> {
    if (this.closed) return Promise.reject(new ClosedError('app'));
    this.brokerPromise ??= (async () => {
      this.enforceSecurityPolicy();
      this.announceEmbeddedDefault();
      if (this.settings.telemetryTracing) this.tracing ??= await loadTracing();
      let broker = this.injectedBroker;
      if (!broker) {
        const url = this.settings.brokerUrl;
        if (!url) {
          throw new ConfigError('no broker URL configured', {
            hint: 'set CELERIAC_BROKER_URL (or CELERY_BROKER_URL), or pass brokerUrl to createApp',
          });
        }
        broker = await createBroker(url, { settings: this.settings, logger: this.logger });
      }
      await broker.connect();
      return broker;
    })();
    this.brokerPromise.then(
      (b) => {
        if (!this.closed) this.brokerReady = b;
      },
      () => {
        this.brokerPromise = undefined;
      },
    );
    return this.brokerPromise;
  }

  /** The result store, or undefined when the app has no result backend. */
  resultStore(): Promise<ResultStore | undefined> {
    if (this.closed) return Promise.reject(new ClosedError('app'));
    this.backendPromise ??= (async () => {
      this.enforceSecurityPolicy();
      this.announceEmbeddedDefault();
      let backend: ResultBackend | undefined | null = this.injectedBackend;
      if (backend === null) return undefined;
      if (!backend) {
        const url = this.settings.resultBackend;
        if (!url) return undefined;
        backend = await createBackend(url, { settings: this.settings, logger: this.logger });
      }
      await backend.connect();
      return new ResultStore(backend, {
        serializer: serializerByName(this.settings.resultSerializer) ?? JSON_SERIALIZER,
        accept: new Set(this.settings.resultAcceptContent.map(contentTypeOf)),
        expiresSeconds: this.settings.resultExpires,
        limits: this.settings.decodeLimits,
        sealer: this.security.resultSealer,
      });
    })();
    this.backendPromise.then(
      (store) => {
        if (!this.closed) this.storeReady = { store };
      },
      () => {
        this.backendPromise = undefined;
      },
    );
    return this.backendPromise;
  }

  /**
   * Re-read the broker and backend URLs from their environment variables or
   * secret files (what SIGHUP does) and hand changed credentials to the
   * open adapters; in-flight work is not interrupted. URLs given in code
   * are not reloaded. Returns what changed.
   */
  async reloadCredentials(options: { announce?: boolean } = {}): Promise<{ broker: boolean; backend: boolean }> {
    const changed = { broker: false, backend: false };
    const nextBroker = this.urlsFromEnv.broker ? settingFromEnv(this.env, BROKER_URL_VARS) : undefined;
    const nextBackend = this.urlsFromEnv.backend ? settingFromEnv(this.env, RESULT_BACKEND_VARS) : undefined;
    // The policy that refused a weak secret at start refuses it on reload too; the current credentials stay.
    if ((nextBroker && nextBroker !== this.settings.brokerUrl) || (nextBackend && nextBackend !== this.settings.resultBackend)) {
      const candidate = { ...this.settings, brokerUrl: nextBroker ?? this.settings.brokerUrl, resultBackend: nextBackend ?? this.settings.resultBackend };
      const report = evaluatePolicy(policyInputFromSettings(candidate, this.env));
      if (report.refusals.length > 0) {
        recordPolicyRefusals(report.refusals, ' (reload refused; the current credentials are kept)');
        throw new InsecureConfigError(report.refusals);
      }
    }
    if (nextBroker && nextBroker !== this.settings.brokerUrl) {
      const broker = await this.brokerPromise;
      await broker?.updateCredentials?.(nextBroker);
      // rpc:// results ride on a connection of their own to the broker: it follows the broker's credentials.
      if (this.rpcResults) await (await this.backendPromise)?.backend.updateCredentials?.(nextBroker);
      await this.security.updateCredentials?.(nextBroker, 'broker');
      this.settings.brokerUrl = nextBroker;
      changed.broker = true;
    }
    if (nextBackend && nextBackend !== this.settings.resultBackend) {
      const store = await this.backendPromise;
      await store?.backend.updateCredentials?.(nextBackend);
      await this.security.updateCredentials?.(nextBackend, 'backend');
      this.settings.resultBackend = nextBackend;
      changed.backend = true;
    }
    // A prefork pool announces once, when the supervisor and every child have switched (announce: false here).
    if ((changed.broker || changed.backend) && options.announce !== false) {
      recordSecurityEvent('secret_reloaded', { reason: `credentials reloaded for ${[changed.broker && 'broker', changed.backend && 'result backend'].filter(Boolean).join(' and ')}` }, this.logger);
    }
    return changed;
  }

  /** Close broker and backend connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.brokerReady = undefined;
    this.storeReady = undefined;
    const b = this.brokerPromise;
    const r = this.backendPromise;
    // First, so replay-guard holds are released before the broker hands unsettled deliveries back.
    await Promise.allSettled([this.security.close?.(), this.submission.close()]);
    await Promise.allSettled([b?.then((x) => x.close()), r?.then((x) => x?.close())]);
  }
}

/** AsyncResult that connects the app's result store on first use. */
class LazyAsyncResult<R> extends AsyncResult<R> {
  constructor(id: string, private readonly app: App) {
    super(id, undefined, () => app.control);
  }
  private async real(): Promise<AsyncResult<R>> {
    return new AsyncResult<R>(this.id, await this.app.resultStore(), () => this.app.control, { tracing: () => this.app.tracing });
  }
  override async get(options?: Parameters<AsyncResult<R>['get']>[0]): Promise<R> {
    return (await this.real()).get(options);
  }
  override async meta(): ReturnType<AsyncResult<R>['meta']> {
    return (await this.real()).meta();
  }
  override async forget(): Promise<void> {
    return (await this.real()).forget();
  }
}

/** Create a Celeriac app. */
export function createApp(options: AppOptions = {}): App {
  return new App(options);
}
