/**
 * A channel page (/c/{name}): the channel's live stream in the player, its
 * title, category, tags and viewer count, the Follow button with its bell and the follower count
 * (follow.js), and the chat panel.  An offline
 * channel says so and starts playing by itself when it goes live; its chat
 * is open all the while, as on Twitch.  Under the player, a "Clip" button
 * clips the last 30 s of the live stream, and the Videos and Clips tabs list
 * the channel's past broadcasts and clips (channel_library.js).
 */

import { api, ApiError, seg } from './api.js';
import { ChannelLibrary } from './channel_library.js';
import { ChatPanel, chatUrlFor } from './chat.js';
import { CLIP_S, ClipButton } from './clip_request.js';
import { byId, el, formatViewers } from './dom.js';
import { FollowControls } from './follow.js';
import { Heartbeats } from './heartbeats.js';
import { Playback } from './playback.js';
import { LivePlayer, loadHls, playerUnavailable } from './player.js';

const OFFLINE_POLL_MS = 10_000;
const INFO_POLL_MS = 15_000;

const channelName = decodeURIComponent(location.pathname.split('/')[2] || '');
const video = byId('video');
const chat = new ChatPanel({
  root: byId('chat-panel'), list: byId('chat-messages'), badge: byId('chat-state'), form: byId('chat-form'),
  input: byId('chat-input'), login: byId('chat-login'), roomState: byId('chat-room-state'),
  standing: byId('chat-standing'),
});
const watching = { streamId: null, playback: null, player: null, heartbeats: null, infoTimer: null };
let hlsReady = Promise.resolve();
const follow = new FollowControls();
const library = new ChannelLibrary();
let channelId = null;   // the Clip button (shown while live) clips this channel's live stream
new ClipButton(byId('clip-button'), byId('clip-status'),
  () => (channelId ? { broadcaster_id: channelId, duration_s: CLIP_S } : null), () => library.reload());

function showMessage(text, kind = '') {
  const box = byId('player-message');
  box.textContent = text || '';
  box.hidden = !text;
  box.dataset.kind = kind;
}

function showInfo({ title, category, tags, viewers, live }) {
  byId('stream-title').textContent = title || channelName;
  byId('stream-category').textContent = category || '';
  byId('stream-tags').replaceChildren(...(tags || []).map((t) => el('li', {}, t)));
  byId('viewer-count').textContent = live && Number.isFinite(viewers) ? formatViewers(viewers) : '';
  byId('live-badge').hidden = !live;
  byId('clip-button').hidden = !live;
  document.title = `${channelName}${title ? ` · ${title}` : ''} · Glasscast`;
}

async function loadChannel() {
  try {
    return await api(`/v1/channels/${seg(channelName)}`);
  } catch (err) {
    const missing = err instanceof ApiError && err.status === 404;
    byId('stream-title').textContent = missing ? `There is no channel called ${channelName}` : 'Channel unavailable';
    showMessage(missing ? 'Check the address, or find a live channel in the directory.' : err.message, 'error');
    return null;
  }
}

function stopWatching() {
  clearTimeout(watching.infoTimer);
  watching.playback?.close();
  watching.player?.dispose();
  watching.heartbeats?.dispose();
  Object.assign(watching, { streamId: null, playback: null, player: null, heartbeats: null, infoTimer: null });
}

async function waitForLive(channel, message = `${channel.name} is offline.`) {
  showInfo({ title: channel.title, category: channel.category, tags: channel.tags, live: false });
  showMessage(message);
  const check = async () => {
    const fresh = await loadChannel();
    if (fresh?.live_stream_id) watch(fresh); else setTimeout(check, OFFLINE_POLL_MS);
  };
  setTimeout(check, OFFLINE_POLL_MS);
}

async function refreshInfo(channel) {
  const { streamId } = watching;
  try {
    const stream = await api(`/v1/streams/${seg(streamId)}`);
    if (streamId !== watching.streamId) return;
    showInfo({ ...stream, live: stream.status === 'live' });
    if (stream.status === 'ended') {
      stopWatching();
      waitForLive(channel, `The stream has ended. ${channel.name} is offline.`);
      return;
    }
  } catch {
    showInfo({ title: channel.title, category: channel.category, tags: channel.tags, live: true });
  }
  watching.infoTimer = setTimeout(() => refreshInfo(channel), INFO_POLL_MS);
}

async function openPlayback(streamId) {
  const playback = new Playback(streamId);
  try {
    await playback.open();
    return playback;
  } catch (err) {
    showMessage(`The stream cannot be played: ${err.message}`, 'error');
    return null;
  }
}

async function watch(channel) {
  stopWatching();
  const streamId = channel.live_stream_id;
  watching.streamId = streamId;
  refreshInfo(channel);
  const playback = await openPlayback(streamId);
  if (!playback || watching.streamId !== streamId) return;
  watching.playback = playback;
  const answer = playback.answer;
  chat.useUrl(answer.chat_ws_url);
  await hlsReady;
  if (watching.streamId !== streamId) return;
  const problem = playerUnavailable();
  if (problem) {
    showMessage(problem, 'error');
    return;
  }
  if (!answer.live && !answer.hls.vod) {
    showMessage('The stream is about to start…');
  }
  const player = new LivePlayer(video, {
    quality: byId('quality'),
    latency: byId('latency'),
    catchUp: byId('catch-up'),
    onMessage: showMessage,
    onRefused: async () => {
      const renewed = await openPlayback(streamId);
      if (!renewed || watching.streamId !== streamId) return;
      watching.playback.close();
      watching.playback = renewed;
      player.load(renewed.answer.hls.master);
    },
  }, (url) => watching.playback.tokenFor(url));
  watching.player = player;
  window.glasscastPlayer = player;   // for the console, the browser tests and bench/latency.py (stats, sample())
  watching.heartbeats = new Heartbeats(video, streamId, () => watching.playback?.answer, () => player.report());
  player.load(answer.live ? answer.hls.master : (answer.hls.vod || answer.hls.master));
}

async function start() {
  const link = byId('channel-name');
  link.textContent = channelName;
  link.href = `/c/${encodeURIComponent(channelName)}`;
  const loading = loadChannel();
  hlsReady = loadHls();   // evaluated while the API answers
  const channel = await loading;
  if (!channel) return;
  follow.show(channel);
  channelId = channel.id;
  library.open(channel.id);
  chat.open(channel.id, chatUrlFor(channel.id));   // chat works whether or not the channel is live
  if (channel.live_stream_id) watch(channel); else waitForLive(channel);
}

start();
