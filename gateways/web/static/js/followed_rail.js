/**
 * The directory's "Followed channels" rail for a signed-in user: the channels they follow that are
 * live now first (GET /v1/users/{me}/follows?live=true), then the others, newest follow first
 * (GET /v1/users/{me}/follows).  Refreshed every RAIL_REFRESH_MS and at once when a go-live
 * notification arrives (the notification menu's `glasscast:notification` event).
 */

import { api } from './api.js';
import { byId, el, setStatus } from './dom.js';
import { NOTIFICATION_EVENT } from './notifications_menu.js';
import { currentSession } from './session.js';

const RAIL_SIZE = 50;
const RAIL_REFRESH_MS = 15_000;
const AFTER_PUSH_MS = [0, 2000, 5000];   // the live view may land just after the notification does

/** Live follows first, then offline ones not already listed (pure). */
export function railEntries(live, all) {
  const seen = new Set(live.map((f) => f.channel_id));
  return [...live.map((f) => ({ ...f, live: true })),
          ...all.filter((f) => !seen.has(f.channel_id)).map((f) => ({ ...f, live: Boolean(f.live_stream_id) }))];
}

function entry(follow) {
  const name = follow.channel_name || 'unknown channel';
  return el('li', { className: 'rail-item', dataset: { channel: name, live: String(follow.live) } },
    el('a', { href: `/c/${encodeURIComponent(name)}`, className: 'rail-link' },
      el('span', { className: 'rail-initial', attrs: { 'aria-hidden': 'true' } }, name.slice(0, 1)),
      el('span', { className: 'rail-name' }, name),
      el('span', { className: follow.live ? 'badge live' : 'badge offline' }, follow.live ? 'LIVE' : 'Offline')));
}

export class FollowedRail {
  constructor() {
    this.root = byId('followed-rail');
    this.list = byId('followed-list');
    this.status = byId('followed-status');
    this.timer = null;
    this.loading = null;
  }

  start() {
    window.addEventListener(NOTIFICATION_EVENT, () => {
      for (const delay of AFTER_PUSH_MS) setTimeout(() => this.refresh(), delay);
    });
    this.refresh();
    this.timer = setInterval(() => { if (!document.hidden) this.refresh(); }, RAIL_REFRESH_MS);
  }

  async refresh() {
    if (this.loading) return this.loading;
    this.loading = this.load().finally(() => { this.loading = null; });
    return this.loading;
  }

  async load() {
    const session = currentSession();
    if (!session?.user?.id) {
      this.root.hidden = true;
      return;
    }
    this.root.hidden = false;
    const base = `/v1/users/${encodeURIComponent(session.user.id)}/follows?limit=${RAIL_SIZE}`;
    try {
      const [live, all] = await Promise.all([api(`${base}&live=true`, { token: session.token }),
                                             api(base, { token: session.token })]);
      const entries = railEntries(live.follows || [], all.follows || []);
      this.list.replaceChildren(...entries.map(entry));
      this.root.dataset.live = String(entries.filter((f) => f.live).length);
      setStatus(this.status, entries.length ? '' : 'Channels you follow show here. Follow one from its page.');
    } catch (err) {
      setStatus(this.status, `Followed channels could not be loaded: ${err.message}`, 'error');
    }
  }
}
