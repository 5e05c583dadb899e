/**
 * Roles and the permissions they grant. The server checks a permission on
 * every route; the model never knows who is asking.
 */

export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/**
 * `read`: every view (args/kwargs/results redacted). `view-clear`: the same in
 * clear text, audited each time; granted on its own, never implied by a role.
 * `operate`: revoke/terminate, rate limit, retry, redrive/drop dead letters,
 * pause/resume a queue. `admin`: shutdown, pool size, consumers, users, audit.
 */
export type Permission = 'read' | 'view-clear' | 'operate' | 'admin';

const GRANTS: Record<Role, readonly Permission[]> = {
  viewer: ['read'],
  operator: ['read', 'operate'],
  admin: ['read', 'operate', 'admin'],
};

/** True when `role` (plus the separate `viewClear` grant) allows `permission`. */
export function allows(principal: { role: Role; viewClear?: boolean }, permission: Permission): boolean {
  if (permission === 'view-clear') return principal.viewClear === true;
  return GRANTS[principal.role].includes(permission);
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}
