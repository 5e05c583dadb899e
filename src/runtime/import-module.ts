/**
 * Import a user module (an app given with `-A`, a prefork child's app
 * module, the demo's tasks) whether it is JavaScript or TypeScript, ES
 * module or CommonJS.
 *
 * Celeriac itself runs as compiled JavaScript from `dist/` when installed,
 * with no TypeScript loader: the loader (tsx) costs about 30 MiB and a thread
 * in every process, prefork children included. It is registered only when a
 * TypeScript module is actually imported, and it is the user's: tsx is an
 * optional peer dependency, resolved from the app module's own directory
 * first. When Celeriac runs from its own `src/` (tests, a checkout), tsx is
 * already active.
 */
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError } from '../errors.ts';

/** True when this module is the TypeScript source (tsx is active), false when it is the compiled `dist/`. */
export const RUNNING_FROM_SOURCE = import.meta.url.endsWith('.ts');

const TYPESCRIPT_FILE = /\.(?:[cm]?ts|tsx)$/;
let registered: Promise<void> | undefined;

/** Whether importing `url` needs a TypeScript loader that is not active yet. */
export function needsTypeScriptLoader(url: string): boolean {
  if (RUNNING_FROM_SOURCE || !url.startsWith('file:')) return false;
  return TYPESCRIPT_FILE.test(new URL(url).pathname);
}

/** Where tsx is: beside the user's module first (their devDependency), else beside Celeriac. */
function resolveTsx(moduleUrl: string): string {
  for (const from of [fileURLToPath(moduleUrl), fileURLToPath(import.meta.url)]) {
    try {
      return pathToFileURL(createRequire(from).resolve('tsx')).href;
    } catch {
      // not installed there
    }
  }
  throw new ConfigError(`${fileURLToPath(moduleUrl)} is TypeScript, and no TypeScript loader (tsx) is installed`, {
    hint: 'install it in your project (npm install --save-dev tsx), or compile your task module to JavaScript and pass the .js file',
  });
}

/**
 * `import(url)`, registering tsx first when `url` is a TypeScript file and no
 * loader is active. tsx's main entry registers both its ES-module and its
 * CommonJS hooks, so a `.ts` module loads in `"type": "module"` and
 * `"type": "commonjs"` projects alike (and `.mts`/`.cts` whatever the type).
 */
export async function importModule(url: string): Promise<Record<string, unknown>> {
  if (needsTypeScriptLoader(url)) {
    registered ??= import(resolveTsx(url)).then(() => undefined);
    await registered;
  }
  const ns = (await import(url)) as Record<string, unknown>;
  // A CommonJS module (tsx compiles a `.ts` file of a "type": "commonjs"
  // project to one) whose export names Node cannot detect arrives as
  // `{ default: module.exports }`: expose its exports by name too, so
  // `export const app` is found as `app` whatever the module format.
  const exported = ns.default;
  if (exported && typeof exported === 'object' && Object.getPrototypeOf(exported) === Object.prototype) {
    return { ...(exported as Record<string, unknown>), ...ns };
  }
  return ns;
}
