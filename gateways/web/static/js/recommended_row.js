/**
 * The directory's "Recommended for you" row for a signed-in viewer: live streams ranked for them
 * (GET /v1/recommendations): channels the audiences of what they follow and watch also watch,
 * then popular ones.  Channels they follow are on the followed rail instead, so the server never
 * lists them here.  Hidden for anonymous visitors, and when there is nothing to recommend.
 * Refreshed every ROW_REFRESH_MS while the page is visible.
 */

import { api, ApiError } from './api.js';
import { byId, el, formatViewers } from './dom.js';
import { currentSession } from './session.js';

const ROW_SIZE = 8;
const ROW_REFRESH_MS = 60_000;

function card(item) {
  const name = item.channel_name || 'unknown channel';
  const title = item.title || `${name} is live`;
  const img = el('img', { className: 'thumb', alt: `Preview of ${title}`, loading: 'lazy', decoding: 'async',
                          width: 320, height: 180 });
  img.addEventListener('error', () => img.classList.add('missing'), { once: true });
  if (item.thumbnail_url) img.src = item.thumbnail_url; else img.classList.add('missing');
  return el('a', { className: 'card', href: `/c/${encodeURIComponent(name)}`,
                   dataset: { streamId: item.stream_id, channel: name, reason: item.reason } },
    el('div', { className: 'thumb-wrap', dataset: { initial: name.slice(0, 1) } },
      img,
      el('span', { className: 'badge live' }, 'LIVE'),
      el('span', { className: 'badge viewers' }, formatViewers(item.viewers))),
    el('div', { className: 'card-body' },
      el('h3', { className: 'card-title', title }, title),
      el('p', { className: 'card-channel' }, name),
      item.category ? el('p', { className: 'card-category' }, item.category) : null));
}

export class RecommendedRow {
  constructor() {
    this.root = byId('recommended');
    this.list = byId('recommended-list');
    this.loading = null;
  }

  start() {
    this.refresh();
    setInterval(() => { if (!document.hidden) this.refresh(); }, ROW_REFRESH_MS);
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
    try {
      const body = await api(`/v1/recommendations?limit=${ROW_SIZE}`, { token: session.token });
      const items = body.recommendations || [];
      this.list.replaceChildren(...items.map(card));
      this.root.dataset.personalized = String(Boolean(body.personalized));
      this.root.hidden = items.length === 0;
    } catch (err) {
      // A row of suggestions is not worth an error on the directory: keep what was shown, or stay hidden.
      if (err instanceof ApiError && err.status === 401) this.root.hidden = true;
    }
  }
}

new RecommendedRow().start();
