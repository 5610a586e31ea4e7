/**
 * Channel analytics (/dashboard/analytics?channel=&stream=&range=): how a channel's streams went, for
 * its owner.  One stream (GET /v1/streams/{id}/analytics) or every stream of a period
 * (GET /v1/channels/{id}/analytics?from=&to=): the figures, charts of concurrent viewers, chat
 * messages and ingest health per minute (uPlot, served from /static/vendor/ like hls.js), the
 * rendition mix, and the same numbers as CSV (`?format=csv`, fetched with the owner's token, since
 * the API reads the token from a header and not from a cookie).
 *
 * Every chart keeps its uPlot instance on its element (`node.uplot`, whose `data` holds the points)
 * and says how many points it drew in `data-points`; a table of the same numbers sits under each
 * chart for those who do not see the canvas.
 */

import { api, ApiError, seg } from './api.js';
import { byId, el, setStatus } from './dom.js';
import { currentSession } from './session.js';

const CHART_HEIGHT = 220;
const STREAM_CHOICES = 20;   // past broadcasts offered in the stream picker
const DEFAULT_RANGE_MS = 86_400_000;
const VIEWERS_COLOR = '#a970ff';
const CHAT_COLOR = '#3ddc97';
const INGEST_COLOR = '#ffb84d';
const DROPPED_COLOR = '#ff5c6c';

const state = { session: null, channels: [], charts: new Map(), generation: 0 };

/** The query of this page's URL as {channel, stream, range}. */
function fromUrl() {
  const q = new URLSearchParams(location.search);
  return { channel: q.get('channel') || '', stream: q.get('stream') || '', range: q.get('range') || '' };
}

function syncUrl() {
  const q = new URLSearchParams();
  if (byId('channel').value) q.set('channel', byId('channel').value);
  if (byId('stream').value) q.set('stream', byId('stream').value);
  else q.set('range', byId('range').value);
  history.replaceState(null, '', `${location.pathname}?${q}`);
}

/** The API path of what the form picks (pure but for the clock). */
export function analyticsPath(channelId, streamId, rangeMs, nowMs = Date.now()) {
  if (streamId) return `/v1/streams/${seg(streamId)}/analytics`;
  const to = Math.floor(nowMs);
  return `/v1/channels/${seg(channelId)}/analytics?from=${to - rangeMs}&to=${to}`;
}

/** "1h 02m 05s" / "3m 20s" / "45s" for a number of seconds. */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (h) return `${h}h ${String(m).padStart(2, '0')}m ${String(rest).padStart(2, '0')}s`;
  return m ? `${m}m ${String(rest).padStart(2, '0')}s` : `${rest}s`;
}

const FIGURES = {
  peak_viewers: (v) => Number(v || 0).toLocaleString('en'),
  avg_viewers: (v) => Number(v || 0).toFixed(1),
  unique_viewers: (v) => Number(v || 0).toLocaleString('en'),
  watch_time_s: formatDuration,
  avg_watch_time_s: formatDuration,
  chat_messages: (v) => Number(v || 0).toLocaleString('en'),
  chatters: (v) => Number(v || 0).toLocaleString('en'),
  new_followers: (v) => Number(v || 0).toLocaleString('en'),
  new_subscribers: (v) => Number(v || 0).toLocaleString('en'),
  rebuffering_ratio: (v) => `${(Number(v || 0) * 100).toFixed(2)} %`,
};

/** Points of a per-minute series as uPlot columns: [[t in seconds...], [values...], ...] (pure). */
export function columns(points, fields) {
  const sorted = [...(points || [])].sort((a, b) => a.t - b.t);
  return [sorted.map((p) => p.t / 1000), ...fields.map((f) => sorted.map((p) => Number(p[f] ?? 0)))];
}

function minuteLabel(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace('T', ' ');
}

function dataTable(table, data, headings) {
  const head = el('tr', {}, el('th', { scope: 'col' }, 'Minute (UTC)'),
    headings.map((h) => el('th', { scope: 'col' }, h)));
  const rows = data[0].map((t, i) => el('tr', {}, el('td', {}, minuteLabel(t)),
    data.slice(1).map((series) => el('td', {}, String(series[i])))));
  table.replaceChildren(el('thead', {}, head), el('tbody', {}, rows));
}

/** The x range of the charts, in seconds: the report's period, widened to its first and last minute (pure). */
export function xRange(fromMs, toMs, times) {
  const first = times.length ? Math.min(...times) : fromMs / 1000;
  const last = times.length ? Math.max(...times) + 60 : toMs / 1000;
  return [Math.min(fromMs / 1000, first), Math.max(toMs / 1000, last)];
}

function drawChart(id, data, series, range) {
  const node = byId(`chart-${id}`);
  state.charts.get(id)?.destroy();
  node.replaceChildren();
  const width = Math.max(280, node.clientWidth || node.parentElement.clientWidth - 40);
  const options = {
    width, height: CHART_HEIGHT,
    scales: { x: { time: true, range: () => range } },
    axes: [{ stroke: '#aaa', grid: { stroke: '#2a2a35' } }, { stroke: '#aaa', grid: { stroke: '#2a2a35' } }],
    series: [{}, ...series.map(([label, color]) => ({ label, stroke: color, width: 2, fill: `${color}22` }))],
  };
  const chart = new window.uPlot(options, data, node);
  node.uplot = chart;
  node.dataset.points = String(data[0].length);
  state.charts.set(id, chart);
  dataTable(byId(`data-${id}`), data, series.map(([label]) => label));
}

function showRenditions(renditions) {
  const list = byId('renditions');
  const items = [...(renditions || [])].sort((a, b) => b.share - a.share).map((r) => {
    const bar = el('span', { className: 'share-bar' });
    bar.style.width = `${Math.round(r.share * 100)}%`;   // CSSOM, which the page's CSP allows
    return el('li', { dataset: { rendition: r.rendition } },
      el('span', { className: 'rendition-name' }, r.rendition),
      el('span', { className: 'share-track' }, bar),
      el('span', { className: 'share-value' }, `${(r.share * 100).toFixed(1)} %`));
  });
  list.replaceChildren(...(items.length ? items : [el('li', { className: 'status' }, 'No playback yet.')]));
}

function show(body) {
  for (const [name, format] of Object.entries(FIGURES)) {
    const node = document.querySelector(`[data-figure="${name}"]`);
    node.textContent = format(body[name]);
    node.dataset.value = String(body[name] ?? 0);
  }
  const viewers = columns(body.viewers_per_minute, ['viewers']);
  const chat = columns(body.chat_per_minute, ['messages']);
  const ingest = columns(body.ingest, ['bitrate_kbps', 'dropped_frames']);
  const range = xRange(body.from, body.to, [...viewers[0], ...chat[0], ...ingest[0]]);
  drawChart('viewers', viewers, [['Viewers', VIEWERS_COLOR]], range);
  drawChart('chat', chat, [['Messages', CHAT_COLOR]], range);
  drawChart('ingest', ingest, [['Bitrate (kbps)', INGEST_COLOR], ['Dropped frames', DROPPED_COLOR]], range);
  showRenditions(body.renditions);
}

async function load() {
  const generation = ++state.generation;
  const status = byId('analytics-status');
  const channelId = byId('channel').value;
  if (!channelId) {
    setStatus(status, 'You have no channel yet: create one on the creator dashboard.');
    return;
  }
  byId('range').disabled = Boolean(byId('stream').value);   // a stream's period is its own
  const path = analyticsPath(channelId, byId('stream').value, Number(byId('range').value) || DEFAULT_RANGE_MS);
  byId('csv-export').href = `${path}${path.includes('?') ? '&' : '?'}format=csv`;
  setStatus(status, 'Loading…', 'busy');
  try {
    const body = await api(path, { token: state.session.token });
    if (generation !== state.generation) return;
    show(body);
    setStatus(status, '');
    byId('analytics').dataset.loaded = String(generation);
  } catch (err) {
    if (generation !== state.generation) return;
    if (err instanceof ApiError && err.status === 401) return signedOut();
    setStatus(status, `Analytics could not be loaded: ${err.message}`, 'error');
  }
}

async function loadStreams(channelId, wanted) {
  const select = byId('stream');
  const keep = select.firstElementChild;
  const options = [];
  const channel = state.channels.find((c) => c.id === channelId);
  if (channel?.live_stream_id) options.push(el('option', { value: channel.live_stream_id }, 'Live now'));
  try {
    const videos = await api(`/v1/channels/${seg(channelId)}/videos?limit=${STREAM_CHOICES}`,
                             { token: state.session.token });
    for (const v of videos.data || []) {
      if (v.id === channel?.live_stream_id) continue;
      const when = v.started_at_ms ? new Date(v.started_at_ms).toISOString().slice(0, 16).replace('T', ' ') : '';
      options.push(el('option', { value: v.id }, [when, v.title].filter(Boolean).join(' · ') || v.id));
    }
  } catch {
    // Past broadcasts are a convenience here: the period view still works without them.
  }
  if (wanted && !options.some((o) => o.value === wanted)) options.push(el('option', { value: wanted }, wanted));
  select.replaceChildren(keep, ...options);
  select.value = wanted || '';
}

async function exportCsv(event) {
  event.preventDefault();
  const link = event.currentTarget;
  const status = byId('analytics-status');
  try {
    const response = await fetch(link.getAttribute('href'), {
      headers: { Authorization: `Bearer ${state.session.token}`, Accept: 'text/csv' },
      credentials: 'same-origin',
    });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const url = URL.createObjectURL(await response.blob());
    const save = el('a', { href: url, download: link.getAttribute('download') || 'analytics.csv' });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    setStatus(status, `The CSV could not be exported: ${err.message}`, 'error');
  }
}

function signedOut() {
  byId('analytics').hidden = true;
  byId('signed-out').hidden = false;
}

async function start() {
  state.session = currentSession();
  if (!state.session) return signedOut();
  byId('analytics').hidden = false;
  const wanted = fromUrl();
  if (wanted.range) byId('range').value = wanted.range;
  try {
    const me = await api('/v1/me', { token: state.session.token });
    state.channels = me.channels || [];
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signedOut();
    setStatus(byId('analytics-status'), `Your channels could not be loaded: ${err.message}`, 'error');
    return undefined;
  }
  const select = byId('channel');
  select.replaceChildren(...state.channels.map((c) => el('option', { value: c.id }, c.name)));
  const chosen = state.channels.find((c) => c.id === wanted.channel || c.name === wanted.channel);
  if (chosen) select.value = chosen.id;
  if (select.value) await loadStreams(select.value, wanted.stream);
  select.addEventListener('change', async () => {
    await loadStreams(select.value, '');
    syncUrl();
    load();
  });
  for (const id of ['stream', 'range']) byId(id).addEventListener('change', () => { syncUrl(); load(); });
  byId('csv-export').addEventListener('click', exportCsv);
  return load();
}

start();
