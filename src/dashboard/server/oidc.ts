/**
 * OpenID Connect login with any provider, through `openid-client` (the
 * certified relying-party library): authorization code flow with PKCE (S256),
 * state and nonce, all checked by the library on the callback. The role comes
 * from a claim (e.g. `groups`) mapped to viewer/operator/admin; a user whose
 * claim maps to no role is refused.
 */
import * as oidc from 'openid-client';
import { randomBytes } from 'node:crypto';
import { ConfigError } from '../../errors.ts';
import { isRole, ROLES, type Role } from './roles.ts';

export interface OidcSettings {
  /** Issuer URL (discovery at `<issuer>/.well-known/openid-configuration`). */
  issuer: string;
  clientId: string;
  /** Omit for a public client (PKCE only). */
  clientSecret?: string;
  /** The dashboard's callback URL as registered at the provider: `https://<host>:<port>/auth/oidc/callback`. */
  redirectUri: string;
  /** Claim holding the user's groups or roles (default `groups`); a string or an array of strings. */
  roleClaim?: string;
  /** Claim value → role, or `view-clear` for the separate clear-text permission. */
  roleMap: Record<string, Role | 'view-clear'>;
  /** Extra scopes after `openid` (default `profile email`). */
  scope?: string;
  /** Claim used as the user name (default `preferred_username`, then `email`, then `sub`). */
  usernameClaim?: string;
  /** Allow an http:// issuer (tests only, on loopback). */
  allowInsecureIssuer?: boolean;
}

export interface OidcLoginResult {
  user: string;
  role: Role;
  viewClear: boolean;
}

export interface OidcClient {
  /** Start a login: where to send the browser, and the handle of the pending login (kept in a short-lived cookie). */
  start(): Promise<{ url: string; handle: string }>;
  /**
   * Finish it from the callback's query string; throws when state, nonce, PKCE
   * or the token fail. The callback URL is rebuilt from the configured redirect
   * URI (not the request's Host header), so the token request names exactly the
   * URI registered at the provider, whatever name the browser used.
   */
  finish(handle: string | undefined, query: string): Promise<OidcLoginResult>;
}

const PENDING_TTL_MS = 10 * 60_000;

/** Map a token's claims to a role (the highest one granted). */
export function roleFromClaims(claims: Record<string, unknown>, settings: Pick<OidcSettings, 'roleClaim' | 'roleMap'>): { role?: Role; viewClear: boolean } {
  const raw = claims[settings.roleClaim ?? 'groups'];
  const values = Array.isArray(raw) ? raw.filter((v): v is string => typeof v === 'string') : typeof raw === 'string' ? raw.split(/[\s,]+/) : [];
  let best = -1;
  let viewClear = false;
  for (const v of values) {
    if (!Object.hasOwn(settings.roleMap, v)) continue;
    const mapped = settings.roleMap[v];
    if (mapped === 'view-clear') viewClear = true;
    else if (isRole(mapped)) best = Math.max(best, ROLES.indexOf(mapped));
  }
  return { role: best >= 0 ? ROLES[best] : undefined, viewClear };
}

export async function createOidcClient(settings: OidcSettings): Promise<OidcClient> {
  const issuer = new URL(settings.issuer);
  if (issuer.protocol !== 'https:' && !settings.allowInsecureIssuer) {
    throw new ConfigError(`OIDC issuer ${issuer.origin} is not https`, { hint: 'use the https:// issuer URL of your identity provider' });
  }
  let config: oidc.Configuration;
  try {
    config = await oidc.discovery(
      issuer,
      settings.clientId,
      settings.clientSecret,
      settings.clientSecret ? oidc.ClientSecretPost(settings.clientSecret) : oidc.None(),
      settings.allowInsecureIssuer ? { execute: [oidc.allowInsecureRequests] } : undefined,
    );
  } catch (err) {
    throw new ConfigError(`OIDC discovery at ${issuer.origin} failed`, { hint: 'check --oidc-issuer and that the provider is reachable', cause: err });
  }
  const pending = new Map<string, { verifier: string; state: string; nonce: string; expires: number }>();
  return {
    async start() {
      const now = Date.now();
      for (const [k, p] of pending) if (p.expires < now) pending.delete(k);
      if (pending.size > 10_000) throw new ConfigError('too many pending OIDC logins', { hint: 'try again in a few minutes' });
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      const handle = randomBytes(32).toString('base64url');
      pending.set(handle, { verifier, state, nonce, expires: now + PENDING_TTL_MS });
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: settings.redirectUri,
        scope: `openid ${settings.scope ?? 'profile email'}`,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        nonce,
      });
      return { url: url.href, handle };
    },
    async finish(handle, query) {
      const callbackUrl = new URL(settings.redirectUri);
      callbackUrl.search = query;
      const p = handle ? pending.get(handle) : undefined;
      if (handle) pending.delete(handle);
      if (!p || p.expires < Date.now()) throw new Error('no pending login for this browser (expired or started elsewhere)');
      const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier: p.verifier, expectedState: p.state, expectedNonce: p.nonce, idTokenExpected: true });
      const claims = (tokens.claims() ?? {}) as Record<string, unknown>;
      let all: Record<string, unknown> = claims;
      // Many providers put groups only in userinfo: ask when the ID token lacks the claim.
      if (!((settings.roleClaim ?? 'groups') in claims) && tokens.access_token && typeof claims.sub === 'string') {
        try {
          all = { ...(await oidc.fetchUserInfo(config, tokens.access_token, claims.sub)), ...claims };
        } catch {
          // No userinfo: roles from the ID token only.
        }
      }
      const nameClaim = settings.usernameClaim;
      const user = String((nameClaim ? all[nameClaim] : undefined) ?? all.preferred_username ?? all.email ?? all.sub ?? '');
      if (!user) throw new Error('the ID token names no user');
      const { role, viewClear } = roleFromClaims(all, settings);
      if (!role) throw new Error(`user ${user} has no dashboard role in claim ${settings.roleClaim ?? 'groups'}`);
      return { user: `oidc:${user}`, role, viewClear };
    },
  };
}
