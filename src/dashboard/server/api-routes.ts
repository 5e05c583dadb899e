/**
 * The model behind permissions: read views, actions (each audited with its
 * outcome), clear-text views (a separate permission, audited each time), the
 * live SSE stream, the audit log (admins), /metrics, /healthz and /readyz.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import { redactAll } from '../../config/redact.ts';
import type { ActionResult, LiveUpdate, TaskQuery } from '../model/types.ts';
import { guard, sessionOf, type ServerContext } from './context.ts';
import { allows, type Permission } from './roles.ts';

type Detail = Record<string, string | number | boolean | undefined>;

const ID = { type: 'string', minLength: 1, maxLength: 200 } as const;
const NAME = { type: 'string', minLength: 1, maxLength: 255 } as const;
const IDS = { type: 'array', maxItems: 1000, items: ID } as const;

function objectBody(properties: Record<string, unknown>, required: string[] = []): { body: Record<string, unknown> } {
  return { body: { type: 'object', additionalProperties: false, properties, required } };
}

/** Run an action after the permission check; audit it with its outcome. */
async function action(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply, permission: Permission, what: string, detail: Detail, run: () => Promise<ActionResult>): Promise<unknown> {
  const session = await guard(ctx, req, reply, permission, { what, detail });
  if (!session) return reply;
  try {
    const result = await run();
    ctx.audit.write({ who: session.user, what, from: req.ip, outcome: result.ok ? 'ok' : 'failed', detail: { ...detail, message: result.message.slice(0, 300) } });
    return result;
  } catch (err) {
    const message = redactAll((err as Error)?.message ?? String(err)).slice(0, 300);
    ctx.audit.write({ who: session.user, what, from: req.ip, outcome: 'error', detail: { ...detail, message } });
    return reply.code(502).send({ ok: false, message });
  }
}

/** Check view-clear when the request asks for clear text; audit the view (allowed or not). */
async function clearAllowed(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply, asked: boolean, what: string, detail: Detail): Promise<boolean | undefined> {
  if (!asked) return false;
  const session = await guard(ctx, req, reply, 'view-clear', { what, detail });
  if (!session) return undefined;
  ctx.audit.write({ who: session.user, what, from: req.ip, outcome: 'ok', detail });
  return true;
}

const num = (v: unknown): number | undefined => (typeof v === 'string' && v !== '' && Number.isFinite(Number(v)) ? Number(v) : undefined);
const str = (v: unknown, max = 255): string | undefined => (typeof v === 'string' && v !== '' ? v.slice(0, max) : undefined);

export function registerApiRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { model } = ctx;

  // ---- reads -------------------------------------------------------------
  app.get('/api/workers', async (req, reply) => ((await guard(ctx, req, reply, 'read')) ? { workers: model.workers() } : reply));
  app.get<{ Params: { hostname: string } }>('/api/workers/:hostname', async (req, reply) => {
    if (!(await guard(ctx, req, reply, 'read'))) return reply;
    const w = model.worker(req.params.hostname);
    return w ?? reply.code(404).send({ error: 'no such worker' });
  });
  app.get<{ Querystring: Record<string, string> }>('/api/tasks', async (req, reply) => {
    if (!(await guard(ctx, req, reply, 'read'))) return reply;
    const q = req.query;
    const clear = await clearAllowed(ctx, req, reply, q.clear === '1', 'view-clear', { view: 'tasks' });
    if (clear === undefined) return reply;
    const query: TaskQuery = {
      id: str(q.id), name: str(q.name), state: str(q.state, 32), worker: str(q.worker), from: num(q.from), to: num(q.to),
      limit: Math.min(Math.max(num(q.limit) ?? 50, 1), 500), cursor: str(q.cursor, 1000), clear,
    };
    return model.tasks(query);
  });
  app.get('/api/task-names', async (req, reply) => ((await guard(ctx, req, reply, 'read')) ? { names: model.taskNames() } : reply));
  app.get<{ Params: { id: string }; Querystring: Record<string, string> }>('/api/tasks/:id', async (req, reply) => {
    if (!(await guard(ctx, req, reply, 'read'))) return reply;
    const clear = await clearAllowed(ctx, req, reply, req.query.clear === '1', 'view-clear', { task: req.params.id });
    if (clear === undefined) return reply;
    const t = await model.task(req.params.id, { clear });
    return t ?? reply.code(404).send({ error: 'no such task' });
  });
  app.get('/api/beat', async (req, reply) => {
    if (!(await guard(ctx, req, reply, 'read'))) return reply;
    if (!model.beat) return reply.code(404).send({ error: 'this dashboard does not show celeriac beat' });
    return model.beat();
  });
  app.get('/api/queues', async (req, reply) => ((await guard(ctx, req, reply, 'read')) ? { queues: await model.queues() } : reply));
  app.get<{ Params: { name: string }; Querystring: Record<string, string> }>('/api/queues/:name/dead-letters', async (req, reply) => {
    if (!(await guard(ctx, req, reply, 'read'))) return reply;
    const clear = await clearAllowed(ctx, req, reply, req.query.clear === '1', 'view-clear', { queue: req.params.name, view: 'dead-letters' });
    if (clear === undefined) return reply;
    return { deadLetters: await model.deadLetters(req.params.name, { limit: Math.min(num(req.query.limit) ?? 100, 1000), clear }) };
  });
  app.get<{ Querystring: Record<string, string> }>('/api/series', async (req, reply) => {
    if (!(await guard(ctx, req, reply, 'read'))) return reply;
    const now = Date.now() / 1000;
    const from = Math.max(num(req.query.from) ?? now - 3600, now - 31 * 86400);
    const bucket = Math.min(Math.max(num(req.query.bucket) ?? 60, 1), 86400);
    return { points: await model.series({ from, bucketSeconds: bucket, taskName: str(req.query.task) }) };
  });

  // ---- live updates (SSE) ------------------------------------------------
  /** Open streams per session: a few tabs are normal, hundreds are an attempt to exhaust the server. */
  const streams = new Map<string, number>();
  const MAX_STREAMS_PER_SESSION = 8;
  app.get('/api/events', async (req, reply) => {
    const session = await guard(ctx, req, reply, 'read');
    if (!session) return reply;
    if ((streams.get(session.id) ?? 0) >= MAX_STREAMS_PER_SESSION) return reply.code(429).send({ error: 'too many live streams for this session', hint: 'close other dashboard tabs' });
    const sid = session.id;
    streams.set(sid, (streams.get(sid) ?? 0) + 1);
    reply.hijack();
    const res = reply.raw;
    const headers = reply.getHeaders();
    res.writeHead(200, { ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' } as Record<string, string>);
    res.write('retry: 3000\n\n');
    let queue: LiveUpdate[] = [];
    let dropped = 0;
    const unsubscribe = model.subscribe((u) => {
      // Live rows never carry payloads: the UI refetches what it shows, through the permission checks.
      const slim: LiveUpdate = u.kind === 'task' ? { kind: 'task', task: { ...u.task, args: undefined, kwargs: undefined, result: undefined } } : u;
      if (queue.length >= 200) (queue.shift(), dropped++);
      queue.push(slim);
    });
    // The stream lives as long as its session: a logout (here or on another replica), a removed account or a timeout ends it.
    let checking = false;
    let closed = false;
    const checkSession = (): void => {
      if (checking || closed) return;
      checking = true;
      sessionOf(ctx, req).then(
        (s) => {
          checking = false;
          if (s?.id !== sid) close();
        },
        () => close(),
      );
    };
    const flush = setInterval(() => {
      checkSession();
      if (queue.length === 0) return;
      res.write(`event: batch\ndata: ${JSON.stringify({ updates: queue, dropped })}\n\n`);
      queue = [];
      dropped = 0;
    }, 500);
    const ping = setInterval(() => {
      res.write(': ping\n\n');
    }, 15_000);
    function close(): void {
      if (closed) return;
      closed = true;
      const left = (streams.get(sid) ?? 1) - 1;
      if (left > 0) streams.set(sid, left);
      else streams.delete(sid);
      clearInterval(flush);
      clearInterval(ping);
      unsubscribe();
      res.end();
    }
    req.raw.on('close', close);
  });

  // ---- operator actions --------------------------------------------------
  app.post<{ Params: { id: string }; Body: { terminate?: boolean; signal?: string } }>(
    '/api/tasks/:id/revoke',
    { schema: objectBody({ terminate: { type: 'boolean' }, signal: { type: 'string', pattern: '^(SIG)?[A-Z0-9]{2,8}$' } }) },
    async (req, reply) => {
      const b = req.body ?? {};
      const what = b.terminate ? 'terminate' : 'revoke';
      return action(ctx, req, reply, 'operate', what, { task: req.params.id, signal: b.signal }, () => model.actions.revoke(req.params.id, { terminate: b.terminate === true, signal: b.signal }));
    },
  );
  app.post<{ Params: { id: string } }>('/api/tasks/:id/retry', async (req, reply) =>
    action(ctx, req, reply, 'operate', 'retry', { task: req.params.id }, () => model.actions.retry(req.params.id)),
  );
  app.post<{ Body: { task: string; rate: string; worker?: string } }>(
    '/api/rate-limit',
    { schema: objectBody({ task: NAME, rate: { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?(/[smh])?$' }, worker: NAME }, ['task', 'rate']) },
    async (req, reply) =>
      action(ctx, req, reply, 'operate', 'rate-limit', { taskName: req.body.task, rate: req.body.rate, worker: req.body.worker }, () => model.actions.rateLimit(req.body.task, req.body.rate, req.body.worker)),
  );
  app.post<{ Params: { name: string }; Body: { ids?: string[] } }>('/api/queues/:name/dead-letters/redrive', { schema: objectBody({ ids: IDS }) }, async (req, reply) =>
    action(ctx, req, reply, 'operate', 'dlq-redrive', { queue: req.params.name, ids: req.body?.ids?.length ?? 'all' }, () => model.actions.redriveDeadLetters(req.params.name, req.body?.ids)),
  );
  app.post<{ Params: { name: string }; Body: { ids?: string[] } }>('/api/queues/:name/dead-letters/drop', { schema: objectBody({ ids: IDS }) }, async (req, reply) =>
    action(ctx, req, reply, 'operate', 'dlq-drop', { queue: req.params.name, ids: req.body?.ids?.length ?? 'all' }, () => model.actions.dropDeadLetters(req.params.name, req.body?.ids)),
  );
  app.post<{ Params: { name: string } }>('/api/queues/:name/pause', async (req, reply) =>
    action(ctx, req, reply, 'operate', 'queue-pause', { queue: req.params.name }, () => model.actions.pauseQueue(req.params.name)),
  );
  app.post<{ Params: { name: string } }>('/api/queues/:name/resume', async (req, reply) =>
    action(ctx, req, reply, 'operate', 'queue-resume', { queue: req.params.name }, () => model.actions.resumeQueue(req.params.name)),
  );

  // ---- admin actions -----------------------------------------------------
  app.post<{ Params: { hostname: string } }>('/api/workers/:hostname/shutdown', async (req, reply) =>
    action(ctx, req, reply, 'admin', 'shutdown', { worker: req.params.hostname }, () => model.actions.shutdown(req.params.hostname)),
  );
  app.post<{ Params: { hostname: string }; Body: { delta: number } }>(
    '/api/workers/:hostname/pool',
    { schema: objectBody({ delta: { type: 'integer', minimum: -64, maximum: 64, not: { const: 0 } } }, ['delta']) },
    async (req, reply) => {
      const { delta } = req.body;
      return action(ctx, req, reply, 'admin', delta > 0 ? 'pool-grow' : 'pool-shrink', { worker: req.params.hostname, n: Math.abs(delta) }, () =>
        delta > 0 ? model.actions.poolGrow(req.params.hostname, delta) : model.actions.poolShrink(req.params.hostname, -delta),
      );
    },
  );
  app.post<{ Params: { hostname: string }; Body: { queue: string; action: 'add' | 'cancel' } }>(
    '/api/workers/:hostname/consumers',
    { schema: objectBody({ queue: NAME, action: { type: 'string', enum: ['add', 'cancel'] } }, ['queue', 'action']) },
    async (req, reply) => {
      const { queue, action: a } = req.body;
      return action(ctx, req, reply, 'admin', a === 'add' ? 'consumer-add' : 'consumer-cancel', { worker: req.params.hostname, queue }, () =>
        a === 'add' ? model.actions.addConsumer(req.params.hostname, queue) : model.actions.cancelConsumer(req.params.hostname, queue),
      );
    },
  );

  // ---- audit (admins) ----------------------------------------------------
  app.get<{ Querystring: Record<string, string> }>('/api/audit', async (req, reply) => {
    if (!(await guard(ctx, req, reply, 'admin', { what: 'audit-view' }))) return reply;
    return { entries: ctx.audit.read({ limit: num(req.query.limit) ?? 500 }).reverse() };
  });
  app.get('/api/audit/export', async (req, reply) => {
    const session = await guard(ctx, req, reply, 'admin', { what: 'audit-export' });
    if (!session) return reply;
    ctx.audit.write({ who: session.user, what: 'audit-export', from: req.ip, outcome: 'ok' });
    return reply
      .type('application/x-ndjson; charset=utf-8')
      .header('content-disposition', `attachment; filename="celeriac-dashboard-audit-${new Date().toISOString().slice(0, 10)}.jsonl"`)
      .send(ctx.audit.exportText());
  });

  // ---- metrics and health ------------------------------------------------
  app.get('/metrics', async (req, reply) => {
    const auth = req.headers.authorization;
    let allowed = false;
    if (typeof auth === 'string' && auth.startsWith('Bearer ') && ctx.metricsTokenDigest) {
      const digest = createHash('sha256').update(auth.slice(7).trim()).digest();
      allowed = timingSafeEqual(digest, ctx.metricsTokenDigest);
    }
    if (!allowed) {
      const session = await sessionOf(ctx, req);
      allowed = session !== undefined && allows(session, 'read');
    }
    if (!allowed) return reply.code(401).header('www-authenticate', 'Bearer realm="celeriac-dashboard"').send({ error: 'metrics need a bearer token or a session', hint: 'start the dashboard with --metrics-token-file and send Authorization: Bearer <token>' });
    const m = await model.metrics();
    return reply.type(m.contentType).send(m.body);
  });
  app.get('/healthz', async (_req, reply) => {
    const h = model.health();
    return reply.code(h.live ? 200 : 503).send({ status: h.live ? 'ok' : 'down' });
  });
  app.get('/readyz', async (_req, reply) => {
    const h = model.health();
    return reply.code(h.ready ? 200 : 503).send({ status: h.ready ? 'ready' : 'not ready' });
  });
}
