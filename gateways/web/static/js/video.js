/**
 * A past broadcast (/videos/{id}): the VOD played with hls.js, its chat replayed beside it in time
 * (chat_replay.js), a seek bar with the storyboard's thumbnails (storyboard.js), a "Clip" button
 * (the 30 s ending at the playhead), for the channel's owner a Delete button, and heartbeats (a beat
 * for an ended broadcast counts as a view of the video).
 */

import { api, ApiError, seg } from './api.js';
import { ChatReplay } from './chat_replay.js';
import { ClipButton, vodClipBody } from './clip_request.js';
import { byId, setStatus } from './dom.js';
import { Heartbeats } from './heartbeats.js';
import { Playback } from './playback.js';
import { loadHls, playerUnavailable } from './player.js';
import { currentSession } from './session.js';
import { SeekBar, parseStoryboard } from './storyboard.js';
import { VodPlayer } from './vod_player.js';
import { formatClock, formatDay, formatViews } from './vod_format.js';

const TICK_MS = 100;   // how often the chat catches up with the playhead

const videoId = decodeURIComponent(location.pathname.split('/')[2] || '');
const media = byId('video');

function showMessage(text, kind = '') {
  setStatus(byId('player-message'), text, kind);
}

async function loadVideo() {
  const token = currentSession()?.token;
  try {
    return await api(`/v1/videos/${seg(videoId)}`, { token });
  } catch (err) {
    const missing = err instanceof ApiError && err.status === 404;
    byId('video-title').textContent = missing ? 'This video does not exist or was deleted' : 'Video unavailable';
    showMessage(missing ? 'Its channel may have deleted it, or it expired.' : err.message, 'error');
    return null;
  }
}

function showInfo(video) {
  byId('video-title').textContent = video.title || 'Untitled broadcast';
  const channel = byId('channel-name');
  channel.textContent = video.channel_name || 'channel';
  channel.href = video.channel_name ? `/c/${encodeURIComponent(video.channel_name)}` : '/';
  byId('video-category').textContent = video.category || '';
  byId('video-meta').textContent = [formatDay(video.started_at_ms), formatClock(video.duration_ms / 1000),
    formatViews(video.view_count)].filter(Boolean).join(' · ');
  document.title = `${video.title || 'Video'} · ${video.channel_name || ''} · Glasscast`;
}

async function loadStoryboard(video, seekBar) {
  if (!video.storyboard) return;
  try {
    const response = await fetch(video.storyboard.vtt_url, { credentials: 'same-origin' });
    if (!response.ok) return;
    seekBar.setStoryboard(parseStoryboard(await response.text(), video.storyboard.vtt_url));
  } catch {
    // no previews: the bar still seeks
  }
}

function ownerControls(video) {
  const button = byId('delete-video');
  button.hidden = !video.owner;
  const status = byId('video-status');
  button.addEventListener('click', async () => {
    if (!window.confirm('Delete this video for good? Its clips stay.')) return;
    button.disabled = true;
    setStatus(status, 'Deleting…', 'busy');
    try {
      await api(`/v1/videos/${seg(video.id)}`, { method: 'DELETE', token: currentSession()?.token });
      window.glasscastVod?.player.destroy();
      setStatus(status, 'The video was deleted.', 'ok');
      showMessage('This video was deleted.');
    } catch (err) {
      setStatus(status, `Not deleted: ${err.message}`, 'error');
      button.disabled = false;
    }
  });
}

/** Play/pause and sound buttons and the clock: the page draws its own controls around the seek bar. */
function transportControls(totalS) {
  const toggle = byId('play-toggle');
  const sound = byId('sound-toggle');
  const clock = byId('clock');
  const render = () => {
    toggle.textContent = media.paused ? 'Play' : 'Pause';
    sound.textContent = media.muted ? 'Sound on' : 'Mute';
    const length = Number.isFinite(media.duration) ? media.duration : totalS;
    clock.textContent = `${formatClock(media.currentTime)} / ${formatClock(length)}`;
  };
  toggle.addEventListener('click', () => (media.paused ? media.play().catch(() => {}) : media.pause()));
  sound.addEventListener('click', () => { media.muted = !media.muted; });
  for (const name of ['play', 'pause', 'timeupdate', 'durationchange', 'volumechange']) {
    media.addEventListener(name, render);
  }
  render();
}

async function start() {
  const hlsReady = loadHls();
  const video = await loadVideo();
  if (!video) return;
  showInfo(video);
  ownerControls(video);
  transportControls(video.duration_ms / 1000);
  const replay = new ChatReplay(byId('replay-messages'), video.channel_id,
    (text) => setStatus(byId('replay-state'), text));
  await hlsReady;
  const problem = playerUnavailable();
  if (problem) {
    showMessage(problem, 'error');
    return;
  }
  const playback = new Playback(video.id);
  playback.adopt(video.playback);
  const player = new VodPlayer(media, (url) => playback.tokenFor(url), showMessage);
  const seekBar = new SeekBar(byId('seek-bar'), media,
    () => (Number.isFinite(media.duration) ? media.duration : video.duration_ms / 1000));
  loadStoryboard(video, seekBar);
  new ClipButton(byId('clip-button'), byId('clip-status'), () => vodClipBody(video.id, media.currentTime));
  new Heartbeats(media, video.id, () => playback.answer, () => player.report());

  // The playhead as wall-clock time: the frame's program date-time, else the start plus the position.
  const playheadMs = () => player.playingDateMs() ?? video.started_at_ms + media.currentTime * 1000;
  media.addEventListener('seeked', () => replay.seek(playheadMs()));
  media.addEventListener('ended', () => replay.update(video.ended_at_ms));
  setInterval(() => { if (!media.seeking) replay.update(playheadMs()); }, TICK_MS);
  // And with every frame presented, where the browser can say so: a timer may run late on a busy machine.
  if ('requestVideoFrameCallback' in media) {
    const onFrame = () => {
      if (!media.seeking) replay.update(playheadMs());
      media.requestVideoFrameCallback(onFrame);
    };
    media.requestVideoFrameCallback(onFrame);
  }
  window.glasscastVod = { video, player, replay, seekBar, playback };   // for the console and the browser tests
  replay.seek(video.started_at_ms);
  player.load(video.playback.hls.vod, 0);
}

start();
