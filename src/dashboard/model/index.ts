import type { DashboardModel, DashboardModelOptions } from './types.ts';

export type * from './types.ts';

/**
 * Build the dashboard's model: consumes events, refreshes `inspect`, keeps task
 * history in a bounded store, and performs actions through `app.control`.
 * (Replaced by the model's implementation; this placeholder only fixes the signature.)
 */
export async function createDashboardModel(_options: DashboardModelOptions): Promise<DashboardModel> {
  throw new Error('createDashboardModel: the dashboard model is not built yet');
}
