/**
 * Load the user's app module for `-A` (TypeScript or JavaScript, no build
 * step: a TypeScript module is loaded through tsx).
 */
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { App, createApp } from '../client/app.ts';
import { CeleriacError, ConfigError } from '../errors.ts';
import { importModule } from '../runtime/import-module.ts';

/** Resolve `-A` to a file URL: a path (`./tasks.ts`, `tasks`), trying .ts/.mts/.cts/.js/.mjs/.cjs. */
export function resolveAppModule(spec: string, cwd: string): string {
  const base = isAbsolute(spec) ? spec : resolve(cwd, spec);
  for (const candidate of [base, ...['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'].map((ext) => base + ext)]) {
    if (existsSync(candidate)) return pathToFileURL(candidate).href;
  }
  throw new ConfigError(`app module ${spec} not found`, { hint: 'pass -A with the path of the module that exports your app, e.g. -A ./tasks.ts' });
}

/** Import a module and return its app (`app` export, else default export). */
export async function loadApp(moduleUrl: string): Promise<App> {
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(moduleUrl);
  } catch (err) {
    if (err instanceof CeleriacError) throw err;
    // The user's own error: keep it as the cause, so the CLI prints its stack (file and line).
    throw new ConfigError(`app module ${fileURLToPath(moduleUrl)} failed to load`, { hint: 'the error it threw, and where, follows', cause: err });
  }
  for (const candidate of [mod.app, mod.default]) {
    if (candidate instanceof App) return candidate;
    if (candidate && typeof candidate === 'object' && (candidate as { registry?: unknown }).registry instanceof Map) return candidate as App;
  }
  throw new ConfigError(`module ${moduleUrl} exports no app`, { hint: 'export the result of createApp() as "app" or as the default export' });
}

/** The app from `-A`, or one configured from the environment alone. */
export async function appFromArgs(spec: string | undefined, cwd: string): Promise<{ app: App; moduleUrl: string | undefined }> {
  if (!spec) return { app: createApp(), moduleUrl: undefined };
  const moduleUrl = resolveAppModule(spec, cwd);
  return { app: await loadApp(moduleUrl), moduleUrl };
}
