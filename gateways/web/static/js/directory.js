/**
 * The live directory (/): live channels sorted by viewers, filtered by
 * category (GET /v1/categories), paged with next_cursor, and a search box
 * (GET /v1/search).  The chosen category and query stay in the URL so a
 * filtered directory can be shared and survives a reload.  A signed-in user also gets the
 * "Followed channels" rail (followed_rail.js).
 */

import { api, ApiError } from './api.js';
import { byId, el, formatUptime, formatViewers, setStatus } from './dom.js';
import { FollowedRail } from './followed_rail.js';

const PAGE_SIZE = 24;
const REFRESH_MS = 60_000;

const state = { category: '', cursor: null, loading: false, generation: 0 };

function channelHref(name) {
  return `/c/${encodeURIComponent(name)}`;
}

function thumbnail(url, title) {
  const img = el('img', { className: 'thumb', alt: title ? `Preview of ${title}` : 'Stream preview',
                          loading: 'lazy', decoding: 'async', width: 320, height: 180 });
  img.addEventListener('error', () => img.classList.add('missing'), { once: true });
  if (url) img.src = url; else img.classList.add('missing');
  return img;
}

function streamCard(stream) {
  const title = stream.title || `${stream.channel_name} is live`;
  const uptime = formatUptime(stream.started_at_ms);
  return el('a', { className: 'card', href: channelHref(stream.channel_name),
                   dataset: { streamId: stream.stream_id, channel: stream.channel_name } },
    el('div', { className: 'thumb-wrap', dataset: { initial: (stream.channel_name || '?').slice(0, 1) } },
      thumbnail(stream.thumbnail_url, title),
      el('span', { className: 'badge live' }, 'LIVE'),
      el('span', { className: 'badge viewers' }, formatViewers(stream.viewers)),
      uptime ? el('span', { className: 'badge uptime' }, uptime) : null),
    el('div', { className: 'card-body' },
      el('h3', { className: 'card-title', title }, title),
      el('p', { className: 'card-channel' }, stream.channel_name),
      stream.category ? el('p', { className: 'card-category' }, stream.category) : null,
      (stream.tags || []).length
        ? el('ul', { className: 'tags' }, stream.tags.slice(0, 4).map((t) => el('li', {}, t)))
        : null));
}

function explain(err, what) {
  if (err instanceof ApiError && err.status === 404) return `${what} is not available on this server yet.`;
  return `${what} could not be loaded: ${err.message}`;
}

async function loadStreams({ append = false } = {}) {
  const grid = byId('streams');
  const status = byId('directory-status');
  const more = byId('load-more');
  const generation = append ? state.generation : ++state.generation;
  state.loading = true;
  more.disabled = true;
  if (!append) setStatus(status, 'Loading live channels…', 'busy');
  const params = new URLSearchParams({ sort: 'viewers', limit: String(PAGE_SIZE) });
  if (state.category) params.set('category', state.category);
  if (append && state.cursor) params.set('cursor', state.cursor);
  try {
    const page = await api(`/v1/directory/streams?${params}`);
    if (generation !== state.generation) return;
    const cards = (page.streams || []).map(streamCard);
    if (append) grid.append(...cards); else grid.replaceChildren(...cards);
    state.cursor = page.next_cursor || null;
    more.hidden = !state.cursor;
    if (!grid.children.length) {
      setStatus(status, state.category
        ? `Nobody is live in ${state.category} right now.`
        : 'Nobody is live right now. Start streaming from the creator dashboard!');
    } else {
      setStatus(status, '');
    }
  } catch (err) {
    if (generation !== state.generation) return;
    if (!append) grid.replaceChildren();
    more.hidden = !append;
    setStatus(status, explain(err, 'The live directory'), 'error');
  } finally {
    state.loading = false;
    more.disabled = false;
  }
}

function categoryChip(name, label) {
  return el('button', { type: 'button', className: 'chip', dataset: { category: name },
                        attrs: { 'aria-pressed': String(state.category === name) },
                        onclick: () => selectCategory(name) }, label);
}

function markChips() {
  for (const chip of byId('categories').querySelectorAll('.chip')) {
    chip.setAttribute('aria-pressed', String(chip.dataset.category === state.category));
  }
}

async function loadCategories() {
  const nav = byId('categories');
  try {
    const { categories = [] } = await api('/v1/categories');
    const chips = categories
      .filter((c) => c && c.name)
      .map((c) => categoryChip(c.name, `${c.name} · ${formatViewers(c.viewers)}`));
    if (state.category && !categories.some((c) => c.name === state.category)) {
      chips.unshift(categoryChip(state.category, state.category));
    }
    nav.replaceChildren(categoryChip('', 'All'), ...chips);
  } catch (err) {
    nav.replaceChildren(el('p', { className: 'status', dataset: { kind: 'error' } }, explain(err, 'Categories')));
  }
}

function syncUrl() {
  const params = new URLSearchParams();
  if (state.category) params.set('category', state.category);
  const q = byId('search-q').value.trim();
  if (q) params.set('q', q);
  const query = params.toString();
  history.replaceState(null, '', query ? `/?${query}` : '/');
}

function selectCategory(name) {
  state.category = name;
  state.cursor = null;
  byId('directory-heading').textContent = name ? `Live in ${name}` : 'Live channels';
  markChips();
  syncUrl();
  loadStreams();
}

function searchResult(r) {
  const meta = r.live ? `LIVE · ${formatViewers(r.viewers)}` : 'Offline';
  return el('li', { className: 'result' },
    el('a', { href: channelHref(r.channel_name), className: 'result-link' },
      el('span', { className: r.live ? 'badge live' : 'badge offline' }, meta),
      el('strong', { className: 'result-channel' }, r.channel_name),
      el('span', { className: 'result-title' }, r.title || ''),
      r.category ? el('span', { className: 'result-category' }, r.category) : null));
}

async function runSearch(q) {
  const section = byId('search-results');
  const list = byId('search-list');
  const status = byId('search-status');
  byId('search-term').textContent = q;
  section.hidden = false;
  list.replaceChildren();
  setStatus(status, 'Searching…', 'busy');
  try {
    const { results = [] } = await api(`/v1/search?${new URLSearchParams({ q })}`);
    list.replaceChildren(...results.map(searchResult));
    setStatus(status, results.length ? '' : `No channels match “${q}”.`);
  } catch (err) {
    setStatus(status, explain(err, 'Search'), 'error');
  }
}

function clearSearch() {
  byId('search-q').value = '';
  byId('search-results').hidden = true;
  syncUrl();
}

function start() {
  const params = new URLSearchParams(location.search);
  state.category = params.get('category') || '';
  if (state.category) byId('directory-heading').textContent = `Live in ${state.category}`;
  const q = (params.get('q') || '').trim();
  byId('search').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = byId('search-q').value.trim();
    syncUrl();
    if (value) runSearch(value); else clearSearch();
  });
  byId('search-clear').addEventListener('click', clearSearch);
  byId('load-more').addEventListener('click', () => { if (!state.loading) loadStreams({ append: true }); });
  if (q) {
    byId('search-q').value = q;
    runSearch(q);
  }
  loadCategories();
  loadStreams();
  new FollowedRail().start();
  // Viewer counts move; refresh the first page while nobody has paged further.
  setInterval(() => {
    if (!document.hidden && !state.loading && byId('streams').children.length <= PAGE_SIZE) loadStreams();
  }, REFRESH_MS);
}

start();
