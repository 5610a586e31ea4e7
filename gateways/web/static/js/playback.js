/**
 * Playback access for one stream: GET /v1/streams/{id}/playback hands out the
 * signed HLS URLs, a token and the chat socket; the token is renewed with
 * POST .../playback/refresh-token a minute before it expires, and tokenFor()
 * re-signs any URL hls.js requests with the newest one.
 */

import { api, seg } from './api.js';

const RENEW_EARLY_S = 60;
const RENEW_RETRY_MS = 10_000;
const SESSION_KEY = 'glasscast.viewer-session';

/** This tab's viewer session id: stable across reloads, so a reload is not a second viewer. */
export function viewerSession() {
  let id = sessionStorage.getItem(SESSION_KEY);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    sessionStorage.setItem(SESSION_KEY, id);
  }
  return id;
}

export class Playback {
  constructor(streamId) {
    this.streamId = streamId;
    this.answer = null;
    this.timer = null;
  }

  /** Fetch the playback answer ({live, status, session_id, token, expires_in, hls, chat_ws_url}). */
  async open() {
    const query = new URLSearchParams({ session: viewerSession() });
    this.answer = await api(`/v1/streams/${seg(this.streamId)}/playback?${query}`);
    this.schedule();
    return this.answer;
  }

  schedule() {
    clearTimeout(this.timer);
    const lifetime = Number(this.answer?.expires_in) || 0;
    const delayS = Math.max(5, lifetime > 2 * RENEW_EARLY_S ? lifetime - RENEW_EARLY_S : lifetime / 2);
    this.timer = setTimeout(() => this.renew(), delayS * 1000);
  }

  async renew() {
    try {
      this.answer = await api(`/v1/streams/${seg(this.streamId)}/playback/refresh-token`,
        { method: 'POST', body: { token: this.answer.token } });
      this.schedule();
    } catch {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.renew(), RENEW_RETRY_MS);
    }
  }

  close() {
    clearTimeout(this.timer);
  }

  /** The URL with the current token in place of whichever one it carries. */
  tokenFor(url) {
    if (!this.answer) return url;
    const parsed = new URL(url, location.href);
    if (!parsed.searchParams.has('token')) return url;
    parsed.searchParams.set('token', this.answer.token);
    return parsed.toString();
  }
}
