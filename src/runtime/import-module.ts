/**
 * Import a user module (an app given with `-A`, a prefork child's app
 * module, the demo's tasks) whether it is JavaScript or TypeScript.
 *
 * Celeriac itself runs as compiled JavaScript from `dist/` when built, with
 * no TypeScript loader: the loader (tsx) costs about 30 MiB and a thread in
 * every process, prefork children included. It is registered only when a
 * TypeScript module is actually imported. When Celeriac runs from its own
 * `src/` (tests, a checkout without a build), tsx is already active.
 */

/** True when this module is the TypeScript source (tsx is active), false when it is the compiled `dist/`. */
export const RUNNING_FROM_SOURCE = import.meta.url.endsWith('.ts');

const TYPESCRIPT_FILE = /\.(?:[cm]?ts|tsx)$/;
let registered: Promise<void> | undefined;

/** Whether importing `url` needs a TypeScript loader that is not active yet. */
export function needsTypeScriptLoader(url: string): boolean {
  if (RUNNING_FROM_SOURCE || !url.startsWith('file:')) return false;
  return TYPESCRIPT_FILE.test(new URL(url).pathname);
}

/** `import(url)`, registering tsx first when `url` is a TypeScript file and no loader is active. */
export async function importModule(url: string): Promise<Record<string, unknown>> {
  if (needsTypeScriptLoader(url)) {
    registered ??= import('tsx/esm/api').then(({ register }) => {
      register();
    });
    await registered;
  }
  return (await import(url)) as Record<string, unknown>;
}
