/**
 * The signed-in user (creator or viewer): the access token from POST /v1/auth/login, kept in
 * localStorage until it expires or the creator logs out.
 */

/** The localStorage key (other tabs see it change through the `storage` event). */
export const SESSION_KEY = 'glasscast.session';
const EXPIRY_MARGIN_MS = 30_000;

/** {token, user: {id, username}, expiresAtMs} or null when signed out or expired. */
export function currentSession() {
  let session;
  try {
    session = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
  } catch {
    session = null;
  }
  if (!session || typeof session.token !== 'string') return null;
  if (Number.isFinite(session.expiresAtMs) && Date.now() > session.expiresAtMs - EXPIRY_MARGIN_MS) {
    clearSession();
    return null;
  }
  return session;
}

/** Keep a login answer ({access_token, expires_in, user}). */
export function saveSession(login) {
  const session = {
    token: login.access_token,
    user: login.user || null,
    expiresAtMs: Date.now() + (Number(login.expires_in) || 3600) * 1000,
  };
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  return session;
}

export function clearSession() {
  localStorage.removeItem(SESSION_KEY);
}
