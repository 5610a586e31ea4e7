/**
 * How videos and clips are shown: a media clock ("4:05", "1:02:03"), view counts, when a video
 * was streamed, and a card (thumbnail, title, duration, views, link) for the channel page's tabs.
 */

import { el } from './dom.js';

/** Seconds as a media clock: "0:07", "4:05", "1:02:03". */
export function formatClock(seconds) {
  const total = Math.max(0, Math.floor(Number(seconds) || 0));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** "1 view", "1,234 views". */
export function formatViews(count) {
  const n = Number.isFinite(count) ? count : 0;
  return `${n.toLocaleString('en')} ${n === 1 ? 'view' : 'views'}`;
}

/** A date in the viewer's locale ("4 Dec 2026"), or '' when unknown. */
export function formatDay(epochMs) {
  if (!Number.isFinite(epochMs)) return '';
  return new Date(epochMs).toLocaleDateString(undefined, { day: 'numeric', month: 'short', year: 'numeric' });
}

/** A card for a video or a clip: {url, thumbnail_url, title, duration_ms, view_count, date_ms, kind}. */
export function mediaCard({ url, thumbnailUrl, title, durationMs, views, dateMs, kind }) {
  const thumb = el('img', { className: 'thumb', alt: '', loading: 'lazy', decoding: 'async' });
  thumb.addEventListener('error', () => thumb.classList.add('missing'), { once: true });
  if (thumbnailUrl) thumb.src = thumbnailUrl; else thumb.classList.add('missing');
  return el('a', { className: 'card media-card', href: url, dataset: { kind } },
    el('div', { className: 'thumb-wrap', dataset: { initial: (title || kind || '?').slice(0, 1) } },
      thumb,
      el('span', { className: 'badge duration' }, formatClock((durationMs || 0) / 1000)),
      el('span', { className: 'badge views' }, formatViews(views))),
    el('div', { className: 'card-body' },
      el('h3', { className: 'card-title', title: title || '' }, title || 'Untitled'),
      el('p', { className: 'card-channel' }, formatDay(dateMs))));
}
