import type { ResolvedSettings } from '../config/options.ts';
import type { Logger } from '../observability/logging.ts';

/** What every broker and backend adapter receives besides its URL. */
export interface AdapterContext {
  settings: ResolvedSettings;
  logger: Logger;
}
