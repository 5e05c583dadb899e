/**
 * Where `celeriac beat` finds its schedule: a `--schedule` file (JSON in
 * Celery's `beat_schedule` shape, or a module), else the app module's
 * `beatSchedule` (or `beat_schedule`) export.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../errors.ts';
import { importModule } from '../runtime/import-module.ts';
import type { BeatScheduleInput } from '../beat/schedule.ts';

function fromModule(mod: Record<string, unknown>, where: string): BeatScheduleInput {
  const s = mod.beatSchedule ?? mod.beat_schedule ?? mod.schedule;
  if (!s || typeof s !== 'object') throw new ConfigError(`${where} exports no beat schedule`, { hint: 'export const beatSchedule = { name: { task, schedule, args, kwargs, options } }, or pass --schedule <file.json>' });
  return s as BeatScheduleInput;
}

/** The schedule from `--schedule` (resolved against `cwd`) or from the app module. */
export async function loadBeatSchedule(file: string | undefined, appModuleUrl: string | undefined, cwd: string): Promise<BeatScheduleInput> {
  if (file) {
    const path = isAbsolute(file) ? file : resolve(cwd, file);
    if (path.endsWith('.json')) {
      try {
        return JSON.parse(readFileSync(path, 'utf8')) as BeatScheduleInput;
      } catch (err) {
        throw new ConfigError(`cannot read the beat schedule ${path}: ${(err as Error).message}`, { hint: 'a JSON object in Celery beat_schedule shape' });
      }
    }
    return fromModule(await importModule(pathToFileURL(path).href), path);
  }
  if (!appModuleUrl) throw new ConfigError('celeriac beat needs a schedule', { hint: 'pass -A <module> exporting beatSchedule, or --schedule <file>' });
  return fromModule(await importModule(appModuleUrl), appModuleUrl);
}
