/**
 * What a Celeriac errback with Celery's new signature `(request, exc,
 * traceback)` receives as `request`: the failed task's request, as
 * Celery's `Context` carries it. (An errback whose function declares one
 * parameter gets the failed task's id instead, as a task message.)
 */
export interface ErrbackRequest {
  id: string;
  task: string;
  args: readonly unknown[];
  kwargs: Readonly<Record<string, unknown>>;
  group: string | null;
  root_id: string;
  parent_id: string | null;
  retries: number;
}
