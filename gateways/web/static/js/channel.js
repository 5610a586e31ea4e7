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
import { CheerPicker, SubscribeControls } from './money_controls.js';
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
const subscribe = new SubscribeControls({
  tier: byId('sub-tier'), subscribe: byId('subscribe-button'), gift: byId('gift-button'), giftCount: byId('gift-count'),
  status: byId('subscribe-status'),
});
new CheerPicker({
  root: byId('cheer-bar'), balance: byId('bits-balance'), amount: byId('cheer-amount'), button: byId('cheer-button'),
  input: byId('chat-input'), form: byId('chat-form'),
});
const RAID_MOVE_MS = 1500;   // the "Raiding X" line is shown this long before the page moves
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

/** The channel is raiding: show it, and once the raid goes ahead, move this viewer to the target's page. */
function raided(frame) {
  const banner = byId('raid-banner');
  const target = frame.target?.name || frame.target?.id || '';
  if (frame.kind === 'countdown') {
    banner.textContent = `${channelName} is about to raid ${target}`;
    banner.hidden = false;
  } else if (frame.kind === 'cancelled') {
    banner.hidden = true;
  } else if (frame.kind === 'outgoing' && target) {
    banner.textContent = `Raiding ${target} with ${frame.viewers ?? 0} viewers…`;
    banner.hidden = false;
    setTimeout(() => location.assign(`/c/${encodeURIComponent(target)}`), RAID_MOVE_MS);
  }
}

/** Host mode: the offline channel's page plays the stream it hosts, under a banner; false when not hosting. */
async function hostOf(channel) {
  try {
    const answer = await api(`/v1/channels/${seg(channel.id)}/host`);
    return answer.hosting;
  } catch {
    return null;
  }
}

function showHost(hosting) {
  const banner = byId('host-banner');
  banner.replaceChildren();
  banner.hidden = !hosting;
  if (!hosting) return;
  banner.append(`${channelName} is hosting `,
    el('a', { href: `/c/${encodeURIComponent(hosting.channel_name)}` }, hosting.channel_name));
}

async function waitForLive(channel, message = `${channel.name} is offline.`) {
  showInfo({ title: channel.title, category: channel.category, tags: channel.tags, live: false });
  showMessage(message);
  const hosting = await hostOf(channel);
  showHost(hosting);
  if (hosting) {
    watch({ name: hosting.channel_name, live_stream_id: hosting.live_stream_id }, channel);
    return;
  }
  const check = async () => {
    const fresh = await loadChannel();
    if (fresh?.live_stream_id) watch(fresh);
    else if (await hostOf(channel)) waitForLive(channel, message);
    else setTimeout(check, OFFLINE_POLL_MS);
  };
  setTimeout(check, OFFLINE_POLL_MS);
}

async function refreshInfo(channel, home = channel) {
  const { streamId } = watching;
  try {
    const stream = await api(`/v1/streams/${seg(streamId)}`);
    if (streamId !== watching.streamId) return;
    showInfo({ ...stream, live: stream.status === 'live' });
    if (stream.status === 'ended') {
      stopWatching();
      showHost(null);
      waitForLive(home, `The stream has ended. ${home.name} is offline.`);
      return;
    }
  } catch {
    showInfo({ title: channel.title, category: channel.category, tags: channel.tags, live: true });
  }
  watching.infoTimer = setTimeout(() => refreshInfo(channel, home), INFO_POLL_MS);
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

/** Play the channel's live stream; `home` is this page's channel when it plays a hosted one. */
async function watch(channel, home = channel) {
  stopWatching();
  const streamId = channel.live_stream_id;
  watching.streamId = streamId;
  if (home === channel) showHost(null);
  refreshInfo(channel, home);
  const playback = await openPlayback(streamId);
  if (!playback || watching.streamId !== streamId) return;
  watching.playback = playback;
  const answer = playback.answer;
  if (home === channel) chat.useUrl(answer.chat_ws_url);   // a hosting page keeps its own chat
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
  subscribe.show(channel);
  channelId = channel.id;
  library.open(channel.id);
  chat.open(channel.id, chatUrlFor(channel.id));   // chat works whether or not the channel is live
  if (channel.live_stream_id) watch(channel); else waitForLive(channel);
}

byId('chat-panel').addEventListener('glasscast:raid', (event) => raided(event.detail));
start();
