/**
 * The UI: static HTML, ES modules and CSS, read once at start from a fixed
 * directory (no path from a request ever reaches the file system). The HTML
 * shell gets the response's CSP nonce on its one script and one stylesheet.
 */
import type { FastifyInstance } from 'fastify';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../errors.ts';

const TYPES: Record<string, string> = {
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.html': 'text/html; charset=utf-8',
};

/** Where the UI files are: next to this folder in src/ and in dist/ (the build copies them). */
export function defaultUiDir(): string {
  return fileURLToPath(new URL('../ui/', import.meta.url));
}

export function registerUiRoutes(app: FastifyInstance, uiDir: string = defaultUiDir()): void {
  if (!existsSync(`${uiDir}/index.html`)) throw new ConfigError(`dashboard UI files not found in ${uiDir}`, { hint: 'reinstall celeriac (the build copies src/dashboard/ui to dist/dashboard/ui)' });
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const name of readdirSync(uiDir)) {
    const ext = name.slice(name.lastIndexOf('.'));
    if (!/^[a-z0-9-]+\.[a-z]+$/.test(name) || !TYPES[ext] || name === 'index.html') continue;
    files.set(name, { type: TYPES[ext], body: readFileSync(`${uiDir}/${name}`) });
  }
  const shell = readFileSync(`${uiDir}/index.html`, 'utf8');
  app.get('/', async (_req, reply) => {
    const nonce = (reply as unknown as { cspNonce: { script: string; style: string } }).cspNonce;
    // Nonces are base64 (no HTML metacharacters); replaced into attribute values only.
    const html = shell.replaceAll('{{SCRIPT_NONCE}}', nonce.script).replaceAll('{{STYLE_NONCE}}', nonce.style);
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(html);
  });
  app.get<{ Params: { file: string } }>('/ui/:file', async (req, reply) => {
    const f = files.get(req.params.file);
    if (!f) return reply.code(404).send({ error: 'not found' });
    return reply.type(f.type).header('cache-control', 'no-cache').send(f.body);
  });
}
