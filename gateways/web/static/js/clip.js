/**
 * A clip (/clips/{id}, and /clips/{id}?embed=1 with the player alone, for other sites' iframes:
 * this page alone may be framed).  It plays the clip's MP4 once the media workers have made it
 * (`mp4_url`; a new clip's MP4 follows within seconds, so the page asks again for a few seconds
 * before it starts), else the clip's HLS playlist from `start_offset_s`, where the clip begins in
 * its GOP-aligned segments.  Title, channel, views and the MP4 download link are shown beside it;
 * heartbeats count the view (`clip_id` in the beat).
 */

import { api, ApiError, seg } from './api.js';
import { byId, setStatus } from './dom.js';
import { Heartbeats } from './heartbeats.js';
import { Playback } from './playback.js';
import { loadHls, playerUnavailable } from './player.js';
import { VodPlayer } from './vod_player.js';
import { formatClock, formatViews } from './vod_format.js';

const MP4_WAIT_MS = 4000;      // how long a new clip's page waits for its MP4 before playing the playlist
const MP4_POLL_MS = 1000;
const MP4_KEEP_POLLING_MS = 60_000;   // the download link may still appear while the playlist plays

const clipId = decodeURIComponent(location.pathname.split('/')[2] || '');
const embedded = new URLSearchParams(location.search).get('embed') === '1';
const media = byId('video');

function showMessage(text, kind = '') {
  setStatus(byId('player-message'), text, kind);
}

const fetchClip = () => api(`/v1/clips/${seg(clipId)}`);
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

function showInfo(clip) {
  byId('clip-title').textContent = clip.title || 'Untitled clip';
  const channel = byId('channel-name');
  channel.textContent = clip.channel_name || 'channel';
  channel.href = clip.channel_name ? `/c/${encodeURIComponent(clip.channel_name)}` : '/';
  byId('clip-meta').textContent = `${formatClock(clip.duration_ms / 1000)} · ${formatViews(clip.view_count)}`;
  const source = byId('clip-source');
  source.hidden = !clip.video_id;
  if (clip.video_id) source.href = `/videos/${encodeURIComponent(clip.video_id)}`;
  showMp4(clip);
  document.title = `${clip.title || 'Clip'} · ${clip.channel_name || ''} · Glasscast`;
}

function showMp4(clip) {
  const link = byId('clip-download');
  link.hidden = !clip.mp4_url;
  if (clip.mp4_url) link.href = clip.mp4_url;
  const state = { ready: '', failed: 'The MP4 could not be made.', processing: 'Making the MP4…' }[clip.mp4_status];
  byId('clip-mp4-state').textContent = clip.mp4_url ? '' : (state ?? 'Making the MP4…');
}

/** The clip once its MP4 is ready, or as it is after MP4_WAIT_MS. */
async function waitForMp4(clip) {
  let latest = clip;
  const deadline = Date.now() + MP4_WAIT_MS;
  while (!latest.mp4_url && latest.mp4_status !== 'failed' && Date.now() < deadline) {
    await sleep(MP4_POLL_MS);
    latest = await fetchClip().catch(() => latest);
  }
  return latest;
}

/** While the playlist plays, keep asking a little longer so the download link shows when the MP4 does. */
async function watchForMp4(clip) {
  const deadline = Date.now() + MP4_KEEP_POLLING_MS;
  let latest = clip;
  while (!latest.mp4_url && latest.mp4_status !== 'failed' && Date.now() < deadline) {
    await sleep(MP4_POLL_MS * 2);
    latest = await fetchClip().catch(() => latest);
  }
  showMp4(latest);
}

function mp4Report() {
  let ahead = 0;
  for (let i = 0; i < media.buffered.length; i += 1) {
    if (media.buffered.start(i) <= media.currentTime && media.currentTime <= media.buffered.end(i)) {
      ahead = media.buffered.end(i) - media.currentTime;
    }
  }
  return { rendition: 'mp4', buffer_health_s: Math.min(3600, Math.round(ahead * 1000) / 1000), bitrate_kbps: 0 };
}

async function start() {
  if (embedded) document.body.classList.add('embed');
  const hlsReady = loadHls();
  let clip;
  try {
    clip = await fetchClip();
  } catch (err) {
    const missing = err instanceof ApiError && err.status === 404;
    byId('clip-title').textContent = missing ? 'This clip does not exist' : 'Clip unavailable';
    showMessage(missing ? 'Check the address.' : err.message, 'error');
    return;
  }
  showInfo(clip);
  const ready = await waitForMp4(clip);
  showInfo(ready);
  const playback = new Playback(clip.video_id);
  playback.adopt(clip.playback);
  const state = { clip: ready, mode: null, player: null };
  window.glasscastClip = state;   // for the console and the browser tests
  let report = mp4Report;
  if (ready.mp4_url) {
    state.mode = 'mp4';
    media.src = ready.mp4_url;
    media.play().catch(() => showMessage('Press play to start watching.'));
  } else {
    await hlsReady;
    const problem = playerUnavailable();
    if (problem) {
      showMessage(problem, 'error');
      return;
    }
    const player = new VodPlayer(media, (url) => playback.tokenFor(url), showMessage);
    state.mode = 'hls';
    state.player = player;
    report = () => player.report();
    player.load(clip.playback.hls.master, Number(clip.playback.start_offset_s) || 0);
    watchForMp4(ready);
  }
  new Heartbeats(media, clip.video_id, () => playback.answer, () => ({ ...report(), clip_id: clip.id }));
}

start();
