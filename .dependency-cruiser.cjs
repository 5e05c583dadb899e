// @ts-check
/**
 * Celeriac's layering, in executable form (docs/architecture.md draws it).
 *
 * Checked by `npm run lint:layers` (scripts/lint-layers.mjs) and by
 * test/unit/architecture/layers.test.ts (so `npm test`, and CI with it, fails
 * on a violation). Paths are relative to the repository root; only `src/` is
 * cruised. `npx depcruise src -c .dependency-cruiser.cjs` works too, but also
 * lists cycles through type-only imports (see no-circular).
 *
 * The layers, bottom to top:
 *   protocol/ codec/ config/  pure: values and bytes in, values and bytes out
 *   core/                     the interfaces (Broker, ResultBackend, ReplayStore, Engine) and the
 *                             engines' static facts; config/ may read it, protocol/ and codec/ may not
 *   observability/            counters and logging, usable from every layer above the pure ones
 *   transport/                index.ts (the registry), virtual/ (shared consumer core), one folder per engine
 *   client/ security/         the app side; creates engines through transport/index.ts only
 *   control/                  the generic pidbox mailbox (workers and beat answer control messages through it)
 *   worker/                   sees engines only through core/ interfaces
 *   audit/ secrets/ runtime/  tools
 *   dashboard/                the web monitor (model/ over the client app, server/ + ui/), loaded by cli/ only
 *   beat/                     the periodic scheduler: client, control, core and the pure layers; loaded by cli/ only
 *   cli/                      entry points, loaded only by bin/
 */

/** Node built-ins that open sockets, spawn processes or threads: never in a pure layer. */
const NETWORK_AND_PROCESS_BUILTINS =
  '^(http|https|http2|dgram|dns|dns/promises|child_process|cluster|worker_threads|inspector|repl)$';

/** npm packages that talk to a server or write logs. */
const IO_PACKAGES = '^node_modules/(ioredis|@ioredis/[^/]+|amqplib|better-sqlite3|pg|pino)/';

/**
 * One known edge that `rule` forbids, tolerated for now (see TEMPORARY_ALLOWLIST).
 * @param {string} rule @param {string} from @param {string} to
 */
const allowEdge = (rule, from, to) => ({
  type: /** @type {const} */ ('dependency'),
  rule: { name: rule, severity: /** @type {const} */ ('error') },
  from,
  to,
});

/**
 * Known violations tolerated while a larger change lands in steps; empty on
 * main. An entry turns that one edge from an error into "ignore"; any other
 * edge still fails, and test/unit/architecture/layers.test.ts fails when an
 * entry no longer occurs, so the list can only shrink.
 */
const TEMPORARY_ALLOWLIST = [
];

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'An import cycle makes load order decide behaviour (half-initialised modules under CommonJS, ' +
        'the form dist/ ships in). A cycle through an `import type` is erased at run time and is not ' +
        'counted: swc cannot label type-only imports for dependency-cruiser, so scripts/lint-layers.mjs ' +
        '(npm run lint:layers, and the test) drops those cycles after the cruise. Layers that import ' +
        'each other only for types are still caught by the layer rules below.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment:
        'An import that does not resolve would slip past every other rule (and fails at run time); ' +
        'after a move, a stale path shows up here first.',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
    {
      name: 'protocol-codec-stay-pure',
      severity: 'error',
      comment:
        'protocol/ and codec/ are pure functions over values and bytes (wire format, serializers, ' +
        'signing, encryption), tested against the golden vectors. They import each other, config/ and ' +
        'src/errors.ts, nothing else in src/: no engine, client, worker, observability, security, cli, ' +
        'and not core/ (core/ is built on them).',
      from: { path: '^src/(protocol|codec)/' },
      to: { path: '^src/', pathNot: '^src/(protocol|codec|config)/|^src/errors\\.ts$' },
    },
    {
      name: 'config-stays-pure',
      severity: 'error',
      comment:
        'config/ (the schema, env and *_FILE loading, URLs, TLS options, redaction, the security policy) ' +
        'is shared with `celeriac audit`, so it is pure: the policy returns findings and its callers log ' +
        'and count them. It may read core/ (plain data such as the engines\' scheme table, and types; ' +
        'core/ is itself pure by the rules below) but no engine, client, worker, observability, ' +
        'security or cli.',
      from: { path: '^src/config/' },
      to: { path: '^src/', pathNot: '^src/(protocol|codec|config|core)/|^src/errors\\.ts$' },
    },
    {
      name: 'pure-layers-no-io-packages',
      severity: 'error',
      comment:
        'The pure layers and core/ never talk to a server or write a log line, so they do not import ' +
        'the clients (ioredis, amqplib, better-sqlite3, pg) or the logger (pino) — not even for a type: ' +
        'core/ declares the narrow shape it needs instead.',
      from: { path: '^src/(protocol|codec|config|core)/' },
      to: { path: IO_PACKAGES },
    },
    {
      name: 'pure-layers-no-network-builtins',
      severity: 'error',
      comment:
        'No sockets, processes or threads in protocol/, codec/, config/ or core/. Reading local files ' +
        '(config: env *_FILE secrets and TLS files; codec: the certificate store) is allowed.',
      from: { path: '^src/(protocol|codec|config|core)/' },
      to: { dependencyTypes: ['core'], path: NETWORK_AND_PROCESS_BUILTINS },
    },
    {
      name: 'protocol-codec-no-sockets',
      severity: 'error',
      comment:
        'node:net and node:tls are where sockets live. config/ may use their pure helpers (isIP, ' +
        'checkServerIdentity, the ConnectionOptions type) to validate URLs and build TLS options; ' +
        'protocol/, codec/ and core/ have no reason to.',
      from: { path: '^src/(protocol|codec|core)/' },
      to: { dependencyTypes: ['core'], path: '^(net|tls)$' },
    },
    {
      name: 'core-is-interfaces-only',
      severity: 'error',
      comment:
        'core/ holds the interfaces every layer above programs against (Broker, ResultBackend, ' +
        'ReplayStore, the Engine descriptor). It may use the vocabulary of protocol/, codec/ and config/ ' +
        'and src/errors.ts, and the Logger type of observability/logging.ts (every adapter is handed ' +
        'a logger); importing an engine, the client, the worker or the counters would make the ' +
        'interfaces depend on an implementation.',
      from: { path: '^src/core/' },
      to: { path: '^src/', pathNot: '^src/(core|protocol|codec|config)/|^src/errors\\.ts$|^src/observability/logging\\.ts$' },
    },
    {
      name: 'observability-is-a-leaf',
      severity: 'error',
      comment:
        'Counters and logging are used by engines, client and worker alike, so they import none of them ' +
        '(that would be a cycle waiting to happen).',
      from: { path: '^src/observability/' },
      to: { path: '^src/(transport|client|worker|security|audit|secrets|runtime|cli|dashboard|beat|control)/' },
    },
    {
      name: 'transport-not-upward',
      severity: 'error',
      comment:
        'Engines implement core/ interfaces and are driven from above; an engine importing the client, ' +
        'the worker, security wiring, audit, cli or the dashboard would tie the data path to the ' +
        'application built on it.',
      from: { path: '^src/transport/' },
      to: { path: '^src/(client|worker|cli|audit|dashboard|security|secrets|runtime|beat|control)/' },
    },
    {
      name: 'engines-are-independent',
      severity: 'error',
      comment:
        'One engine = one folder: transport/redis never imports transport/amqp, sqlite or memory ' +
        '(deleting or adding an engine touches nothing else). Code two engines share goes through ' +
        'transport/virtual/. No engine imports the registry (transport/index.ts) that imports it. ' +
        'virtual/ itself imports no engine.',
      from: { path: '^src/transport/([^/]+)/' },
      to: { path: '^src/transport/', pathNot: ['^src/transport/$1/', '^src/transport/virtual/'] },
    },
    {
      name: 'engines-only-through-registry',
      severity: 'error',
      comment:
        'transport/index.ts is the only place a URL scheme is matched and an engine is created; outside ' +
        'transport/ nobody reaches into transport/<engine>/ or transport/virtual/. The client creates ' +
        'engines through the registry; everything else sees them as core/ interfaces.',
      from: { path: '^src/', pathNot: '^src/transport/' },
      to: { path: '^src/transport/[^/]+/' },
    },
    {
      name: 'worker-sees-core-interfaces-only',
      severity: 'error',
      comment:
        'The worker consumes through the Broker and stores through the ResultBackend interfaces of ' +
        'core/; the engines are created by the app (the client) and handed over. Not even the registry ' +
        'is imported from worker/.',
      from: { path: '^src/worker/' },
      to: { path: '^src/transport/' },
    },
    {
      name: 'worker-not-app',
      severity: 'error',
      comment:
        'The worker sees the app that hosts it through a narrow runtime interface (worker/runtime.ts: ' +
        'settings, registry, decoder, security hooks, Producer, broker, result store), never client/app.ts ' +
        'itself, so what the worker may touch is one short list.',
      from: { path: '^src/worker/' },
      to: { path: '^src/client/app\\.ts$' },
    },
    {
      name: 'client-not-worker',
      severity: 'error',
      comment:
        'An app that only sends tasks must not load the worker; the task context both sides read ' +
        'lives in core/. (The worker uses the client only through the narrow runtime interface.)',
      from: { path: '^src/client/' },
      to: { path: '^src/worker/' },
    },
    {
      name: 'audit-stays-offline-of-the-runtime',
      severity: 'error',
      comment:
        '`celeriac audit` shares the pure policy (config/) and the codecs, and probes servers with its ' +
        'own read-only clients; it never loads the worker, the client or the cli, so auditing a ' +
        'deployment cannot start one.',
      from: { path: '^src/audit/' },
      to: { path: '^src/(worker|client|cli|dashboard|beat|control)/' },
    },
    {
      name: 'dashboard-stays-above-the-app',
      comment:
        'The dashboard (`celeriac dashboard`) watches and steers workers through the client app (events, ' +
        'app.control, broker access through the registry) and shares the pure layers, the security wiring, ' +
        'the counters and the certificate generator (secrets/x509.ts, for its self-signed certificate). It ' +
        'never loads the worker, an engine, audit/ or the cli.',
      severity: 'error',
      from: { path: '^src/dashboard/' },
      to: { path: '^src/', pathNot: '^src/(dashboard|client|config|security|observability|protocol|codec|core)/|^src/secrets/x509\\.ts$|^src/errors\\.ts$' },
    },
    {
      name: 'dashboard-only-from-cli',
      comment:
        'The dashboard (fastify, OIDC, its UI) is an application: only `celeriac dashboard` (cli/) loads it, ' +
        'so the library (src/index.ts) pulls in none of its dependencies.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(cli|dashboard)/' },
      to: { path: '^src/dashboard/' },
    },
    {
      name: 'control-mailbox-is-generic',
      severity: 'error',
      comment:
        'control/ is the pidbox mailbox every node kind answers through (workers, `celeriac beat`): read a ' +
        'control message, match its destination, ask the guard, run the node\'s command, reply. It works on ' +
        'core/\'s Broker and the pure layers, logs and counts through observability/, and is handed its guard ' +
        '(security/control-guard.ts) and command table, so it imports no worker, beat, client, security or engine.',
      from: { path: '^src/control/' },
      to: { path: '^src/', pathNot: '^src/(control|core|protocol|codec|config|observability)/|^src/errors\\.ts$' },
    },
    {
      name: 'beat-sends-through-the-client',
      severity: 'error',
      comment:
        'celeriac beat sends through the app\'s client (so its messages are signed, routed and capped like ' +
        'any other) and keeps its state behind the BeatStore interface of core/, opened by client/beat-store.ts ' +
        'through the registry: it never reaches an engine, the registry, the worker or security wiring itself. ' +
        'It answers control messages through the generic mailbox of control/, with the guard cli/ builds.',
      from: { path: '^src/beat/' },
      to: { path: '^src/', pathNot: '^src/(beat|client|control|core|config|protocol|codec|observability)/|^src/errors\\.ts$' },
    },
    {
      name: 'beat-only-from-cli',
      severity: 'error',
      comment: 'beat/ is started by `celeriac beat`; the library, the worker and the engines never load the scheduler.',
      from: { path: '^src/', pathNot: '^src/(beat|cli)/' },
      to: { path: '^src/beat/' },
    },
    {
      name: 'dashboard-model-below-server',
      severity: 'error',
      comment:
        'The dashboard model (src/dashboard/model/: events, task store, inspect, actions) sees the cluster through ' +
        'the app (client/) like any client, and knows nothing of who asks: it never imports the dashboard server ' +
        '(HTTP, sessions, roles, audit), the worker, audit, secrets or the cli, so permission checks live in one ' +
        'place (the server) and the model is tested without HTTP.',
      from: { path: '^src/dashboard/model/' },
      to: { path: '^src/(dashboard/server|dashboard/ui|worker|cli|audit|secrets)/' },
    },
    {
      name: 'cli-only-from-bin',
      severity: 'error',
      comment:
        'cli/ is the top: commands parse flags, print and exit. Only bin/celeriac.mjs loads it; the ' +
        'library (src/index.ts and everything under it) never does.',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
  ],
  options: {
    // TypeScript is parsed with swc: dependency-cruiser reads .ts through the `typescript`
    // compiler API (< 7) or swc, and this project compiles with TypeScript 7, which has no such API.
    // swc reports every import, `import type` included, and literal dynamic `import()`s.
    parser: 'swc',
    // Read only when a TypeScript compiler with the classic API is installed (not with 7);
    // resolution does not need it: every specifier is a literal relative `.ts` path, no `paths` aliases.
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    moduleSystems: ['es6', 'cjs'],
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '\\.d\\.ts$' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
      extensions: ['.ts', '.mjs', '.js', '.cjs', '.json'],
    },
    knownViolations: TEMPORARY_ALLOWLIST,
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
