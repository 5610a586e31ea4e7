/**
 * The REST API from the browser: JSON in, JSON out, and RFC 9457 problem
 * details turned into an ApiError whose message is the server's `detail`.
 */

export class ApiError extends Error {
  /** status 0 means the server could not be reached at all. */
  constructor(status, detail, problem = null) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
  }
}

/**
 * Call the API: `api('/v1/channels', {method: 'POST', body: {...}, token})`.
 * Resolves to the parsed JSON body (null for 204); rejects with ApiError.
 */
export async function api(path, { method = 'GET', body, token, signal, keepalive = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, keepalive,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'Cannot reach Glasscast: check your connection and try again.');
  }
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    const detail = (data && typeof data.detail === 'string' && data.detail)
      || `${response.status} ${response.statusText || 'error'}`;
    throw new ApiError(response.status, detail, data);
  }
  return data;
}

/** A path segment safe to put in an API URL. */
export function seg(value) {
  return encodeURIComponent(String(value));
}
