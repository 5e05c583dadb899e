/**
 * The package as users install it: `npm pack`, then `npm install <tarball>`
 * into fresh projects — one "type": "commonjs" (what `npm init -y` writes),
 * one "type": "module" — and the README's Quick start run there as written
 * (its code blocks are extracted from README.md, so the README cannot drift
 * from what works): a worker on Redis whose task calls currentTask() and
 * retries, a TypeScript client that exits, a CommonJS client using
 * require('celeriac'), `send --wait`, `celeriac demo` (in a shell with no
 * mode variable: production by default, development asked for by the demo
 * itself), the worker with the README's own `export` lines (development
 * asked for; without it, refused); app modules in every
 * extension load with one copy of Celeriac; the packed types compile in a
 * strict consumer without skipLibCheck. Nothing comes from the repository's
 * node_modules: dependencies are installed from npm (its cache first).
 * Redis is a private server on a free port.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ROOT } from '../helpers/celeriac-worker.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { hasCommand, requireService, sleep } from '../helpers/services.ts';

const run = promisify(execFile);
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };

/** The README's code blocks that start with a file name comment (`// tasks.ts`), by file name. */
export function readmeFiles(readme: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const m of readme.matchAll(/```(?:ts|js)\n\/\/ (\S+\.(?:[cm]?[jt]s))\b[^\n]*\n([\s\S]*?)```/g)) files.set(m[1]!, m[2]!);
  return files;
}

/** The `export NAME=value` lines of the README's sh block that starts the Quick start worker. */
export function readmeWorkerExports(readme: string): Record<string, string> {
  const block = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('npx celeriac worker -A ./tasks.ts -c 8'));
  const out: Record<string, string> = {};
  for (const m of (block ?? '').matchAll(/^export (\w+)=(\S+)/gm)) out[m[1]!] = m[2]!;
  return out;
}

/** The environment of a user's shell: nothing from the npm script or the test runner that started us (not its NODE_ENV=test either). */
function userEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(npm_|NODE_OPTIONS$|NODE_ENV$|NODE_TEST|INIT_CWD$|CELERIAC_)/.test(k)) env[k] = v;
  return { ...env, ...extra };
}

describe('packed package installed in fresh projects', { timeout: 240_000 }, () => {
  let dir = '';
  let redis: RedisServer | undefined;
  let http: Server | undefined;
  let httpPort = 0;
  const hits = new Map<string, number>();
  const procs: ChildProcess[] = [];
  let ready = false;
  let env: NodeJS.ProcessEnv = {};

  before(async () => {
    if (!hasRedisServer() || !hasCommand('npm')) return;
    dir = mkdtempSync(join(tmpdir(), 'celeriac-packed-'));
    redis = await startRedisServer();
    // A page that answers 503 on its first request, then 200: the README's fetch_page retries once.
    http = createServer((req, res) => {
      const n = (hits.get(req.url!) ?? 0) + 1;
      hits.set(req.url!, n);
      res.writeHead(n === 1 ? 503 : 200).end();
    });
    await new Promise<void>((r) => http!.listen(0, '127.0.0.1', r));
    httpPort = (http.address() as { port: number }).port;
    // The README's worker exports (CELERIAC_ENV=development among them), its URLs pointed at the private Redis.
    const readmeText = readFileSync(join(ROOT, 'README.md'), 'utf8');
    env = userEnv({ ...readmeWorkerExports(readmeText), CELERIAC_BROKER_URL: redis.url(0), CELERIAC_RESULT_BACKEND: redis.url(1), CELERIAC_LOG_LEVEL: 'info' });

    // Pack a staged copy built from the current src/ into its own dist/: the repository's dist/ is
    // left alone (other tests use it), and the tarball holds exactly what `files` names.
    const stage = join(dir, 'stage');
    mkdirSync(stage);
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
    for (const entry of manifest.files.filter((f) => f !== 'dist')) cpSync(join(ROOT, entry), join(stage, entry), { recursive: true });
    cpSync(join(ROOT, 'package.json'), join(stage, 'package.json'));
    await run(process.execPath, [join(ROOT, 'scripts', 'build.mjs'), '--out', join(stage, 'dist')], { cwd: ROOT, env: userEnv({}) });
    await run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir, '--loglevel=error'], { cwd: stage, env: userEnv({}) });
    const tarball = join(dir, readdirSync(dir).find((f) => f.endsWith('.tgz'))!);
    // One install shared by both projects (better-sqlite3 compiles once); each project links to it.
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'packed-root', version: '1.0.0', private: true }));
    await run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', tarball, `tsx@${PKG.devDependencies.tsx}`, `typescript@${PKG.devDependencies.typescript}`, `@types/node@${PKG.devDependencies['@types/node']}`],
      { cwd: dir, env: userEnv({}), timeout: 150_000 },
    );
    const readme = readmeFiles(readmeText);
    for (const type of ['commonjs', 'module']) {
      const project = join(dir, type);
      mkdirSync(project);
      // As `npm init -y` writes it (npm 11 writes "type": "commonjs").
      writeFileSync(join(project, 'package.json'), JSON.stringify({ name: `app-${type}`, version: '1.0.0', main: 'index.js', type }, null, 2));
      symlinkSync(join(dir, 'node_modules'), join(project, 'node_modules'));
      for (const [name, text] of readme) writeFileSync(join(project, name), text);
    }
    ready = true;
  });

  after(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await redis?.stop();
    http?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** `npx <args>` in a project, as a user types it. */
  function npx(project: string, args: string[], timeoutMs = 60_000, withEnv: NodeJS.ProcessEnv = env): Promise<{ stdout: string; stderr: string }> {
    return run('npx', ['--no-install', ...args], { cwd: join(dir, project), env: withEnv, timeout: timeoutMs });
  }

  async function startWorker(project: string, queue: string): Promise<{ proc: ChildProcess; output: () => string }> {
    const proc = spawn('npx', ['--no-install', 'celeriac', 'worker', '-A', './tasks.ts', '-c', '2', '--processes', '1', '-Q', queue], {
      cwd: join(dir, project),
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    procs.push(proc);
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 40_000;
    while (!/worker \S+ ready/.test(out)) {
      if (proc.exitCode !== null) throw new Error(`worker exited early:\n${out}`);
      if (Date.now() > deadline) throw new Error(`worker not ready:\n${out}`);
      await sleep(100);
    }
    return { proc, output: () => out };
  }

  async function stopWorker(proc: ChildProcess): Promise<void> {
    if (proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    process.kill(-proc.pid!, 'SIGTERM'); // npx and the worker under it, a group we started
    await Promise.race([exited, sleep(15_000)]);
    if (proc.exitCode === null) process.kill(-proc.pid!, 'SIGKILL');
  }

  for (const type of ['commonjs', 'module'] as const) {
    it(`runs the README Quick start in a "type": "${type}" project`, async (t) => {
      if (!requireService(t, hasRedisServer() && hasCommand('npm'), 'redis-server and npm')) return;
      assert.ok(ready, 'the packed install was set up');
      // The README's worker listens on the default queue; each project gets its own Redis db pair instead.
      const db = type === 'commonjs' ? 2 : 4;
      env = { ...env, CELERIAC_BROKER_URL: redis!.url(db), CELERIAC_RESULT_BACKEND: redis!.url(db + 1) };
      assert.equal(env.CELERIAC_ENV, 'development', "the README's worker block asks for development");
      if (type === 'commonjs') {
        // Without the README's CELERIAC_ENV=development: production, the default, refuses the password-less loopback Redis.
        const { CELERIAC_ENV: _asked, ...noMode } = env;
        const refused = await npx(type, ['celeriac', 'worker', '-A', './tasks.ts', '-P', 'solo'], 60_000, noMode).then(
          () => assert.fail('the worker started in production without a password'),
          (e: { code?: number; stderr?: string }) => e,
        );
        assert.equal(refused.code, 4, refused.stderr);
        assert.match(refused.stderr ?? '', /refusing to start/);
        assert.match(refused.stderr ?? '', /\[CEL-001\] brokerUrl/);
      }
      const w = await startWorker(type, 'celery');
      try {
        // The TypeScript client of the README exits by itself once it closes the app.
        const client = await npx(type, ['tsx', 'client.mts'], 30_000);
        assert.equal(client.stdout.trim(), '5');
        // The CommonJS client: require('celeriac').
        const cjs = await run(process.execPath, ['client.cjs'], { cwd: join(dir, type), env, timeout: 30_000 });
        assert.equal(cjs.stdout.trim(), '5');
        // send --wait as the README writes it (no --timeout).
        const sent = await npx(type, ['celeriac', 'send', 'tasks.add', '[2, 3]', '--wait']);
        assert.equal(JSON.parse(sent.stdout).result, 5);
        // fetch_page calls currentTask() and retries on 503: one copy of the task context.
        const page = `/${type}`;
        const fetched = await npx(type, ['celeriac', 'send', 'tasks.fetch_page', JSON.stringify([`http://127.0.0.1:${httpPort}${page}`]), '--wait', '--timeout', '30']);
        const meta = JSON.parse(fetched.stdout) as { status: string; result: unknown };
        assert.deepEqual([meta.status, meta.result], ['SUCCESS', 200], w.output());
        assert.equal(hits.get(page), 2, 'a 503, a retry, a 200');
        assert.doesNotMatch(w.output(), /outside a running task/);
      } finally {
        await stopWorker(w.proc);
      }
    });
  }

  it('loads app modules of every extension with one copy of Celeriac', async (t) => {
    if (!requireService(t, hasRedisServer() && hasCommand('npm'), 'redis-server and npm')) return;
    assert.ok(ready, 'the packed install was set up');
    const esm = (name: string): string => `import { createApp } from 'celeriac';\nexport const app = createApp();\napp.task('fmt.${name}', () => 1);\n`;
    const cjs = (name: string): string => `const { createApp } = require('celeriac');\nconst app = createApp();\napp.task('fmt.${name}', () => 1);\nmodule.exports = { app };\n`;
    const cases: Record<string, Record<string, string>> = {
      commonjs: { 'm.js': cjs('js'), 'm.cjs': cjs('cjs'), 'm.mjs': esm('mjs'), 'm.ts': esm('ts'), 'm.cts': esm('cts'), 'm.mts': esm('mts') },
      module: { 'm.js': esm('js'), 'm.cjs': cjs('cjs'), 'm.mjs': esm('mjs'), 'm.ts': esm('ts'), 'm.cts': esm('cts'), 'm.mts': esm('mts') },
    };
    for (const [type, files] of Object.entries(cases)) {
      const sub = join(dir, type, 'formats');
      mkdirSync(sub, { recursive: true });
      for (const [name, text] of Object.entries(files)) writeFileSync(join(sub, name), text);
      // The CLI's own loader, from the installed package; the app must be an instance of the App that require('celeriac') gives.
      const check = `
        const { resolveAppModule, loadApp } = require(require.resolve('celeriac').replace(/index\\.js$/, 'cli/load-app.js'));
        const { App } = require('celeriac');
        (async () => {
          const out = [];
          for (const f of ${JSON.stringify(Object.keys(files))}) {
            const app = await loadApp(resolveAppModule('./formats/' + f, process.cwd()));
            out.push([f, app instanceof App, [...app.registry.keys()].filter((k) => k.startsWith('fmt.'))]);
            await app.close();
          }
          console.log(JSON.stringify(out));
        })().catch((e) => { console.error(e); process.exit(1); });`;
      const r = await run(process.execPath, ['-e', check], { cwd: join(dir, type), env, timeout: 30_000 });
      const got = JSON.parse(r.stdout) as Array<[string, boolean, string[]]>;
      for (const [f, same, tasks] of got) {
        assert.equal(same, true, `${type}/${f}: a second copy of Celeriac`);
        assert.deepEqual(tasks, [`fmt.${f.split('.')[1]}`], `${type}/${f}`);
      }
    }
  });

  it('compiles a strict TypeScript consumer against the packed types without skipLibCheck', async (t) => {
    if (!requireService(t, hasRedisServer() && hasCommand('npm'), 'redis-server and npm')) return;
    assert.ok(ready, 'the packed install was set up');
    for (const type of ['commonjs', 'module']) {
      const tsconfig = {
        compilerOptions: { strict: true, skipLibCheck: false, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true, allowImportingTsExtensions: true, types: ['node'] },
        files: ['tasks.ts', 'client.mts'],
      };
      writeFileSync(join(dir, type, 'tsconfig.json'), JSON.stringify(tsconfig));
      await npx(type, ['tsc', '-p', '.']).catch((e: { stdout?: string; stderr?: string }) => assert.fail(`tsc in ${type}: ${e.stdout ?? ''}${e.stderr ?? ''}`));
    }
  });

  it('runs celeriac demo from the installed package', async (t) => {
    if (!requireService(t, hasRedisServer() && hasCommand('npm'), 'redis-server and npm')) return;
    assert.ok(ready, 'the packed install was set up');
    // A fresh shell: no CELERIAC_ENV or NODE_ENV (production by default); the demo asks for development itself.
    const r = await npx('commonjs', ['celeriac', 'demo', '-n', '20', '-w', '1', '-c', '2'], 90_000, userEnv({}));
    assert.match(r.stdout, /succeeded/i);
    assert.match(r.stderr, /security mode: development \(set by the demo for its own processes\)/);
  });
});
