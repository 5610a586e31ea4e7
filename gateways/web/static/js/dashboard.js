/**
 * The creator dashboard (/dashboard): sign up or log in, create channels,
 * the OBS server and stream key of each, the stream controls and live
 * health, and how long each channel's videos are kept.  The access token
 * stays in localStorage until it expires; a 401 from any call signs the
 * creator out with a message saying why.
 */

import { api, ApiError } from './api.js';
import { byId, el, parseTags, setStatus } from './dom.js';
import { onSubmit } from './forms.js';
import { clearSession, currentSession, saveSession } from './session.js';
import { StreamControls } from './stream_controls.js';
import { StreamKeyPanel } from './stream_key.js';
import { RaidPanel } from './raid_panel.js';
import { RetentionSettings } from './vod_retention.js';
import { RevenuePanel } from './revenue_panel.js';

const ME_POLL_MS = 5000;

const cards = new Map();   // channel id -> {node, key, stream}
let session = null;
let pollTimer = null;

const ctx = {
  token: () => session?.token,
  onAuthLost: () => signOut('Your session has expired. Log in again.'),
  onChanged: () => refresh(),
};

function showAuth(message = '') {
  clearTimeout(pollTimer);
  for (const card of cards.values()) card.stream.stop();
  cards.clear();
  byId('channels').replaceChildren();
  byId('studio').hidden = true;
  byId('account').hidden = true;
  byId('auth').hidden = false;
  setStatus(byId('auth-status'), message, message ? 'error' : '');
}

function signOut(message = '') {
  clearSession();
  session = null;
  showAuth(message);
}

function showStudio() {
  byId('auth').hidden = true;
  byId('studio').hidden = false;
  byId('account').hidden = false;
  byId('whoami').textContent = session.user?.username || 'you';
  refresh();
}

function channelCard(channel, given) {
  const key = new StreamKeyPanel(channel, ctx, given);
  const stream = new StreamControls(channel, ctx);
  const retention = new RetentionSettings(channel, ctx);
  const raids = new RaidPanel(channel, ctx);
  const revenue = new RevenuePanel(channel, ctx);
  const pageLink = el('a', { href: `/c/${encodeURIComponent(channel.name)}`, className: 'channel-page-link' },
    'View channel page');
  const analyticsLink = el('a', { href: `/dashboard/analytics?channel=${encodeURIComponent(channel.id)}`,
                                  className: 'channel-analytics-link' }, 'Analytics');
  const badge = el('span', { className: 'badge' });
  const title = el('p', { className: 'channel-title' });
  const node = el('article', { className: 'panel channel-card', dataset: { channelId: channel.id, channel: channel.name } },
    el('header', { className: 'card-head' }, el('h2', {}, channel.name), badge, pageLink, analyticsLink),
    title, key.node, stream.node, raids.node, revenue.node, retention.node);
  const card = { node, key, stream, badge, title, retention, raids };
  updateCard(card, channel);
  return card;
}

function updateCard(card, channel) {
  const live = Boolean(channel.live_stream_id);
  card.badge.className = live ? 'badge live' : 'badge offline';
  card.badge.textContent = live ? 'LIVE' : 'Offline';
  card.title.textContent = [channel.title, channel.category].filter(Boolean).join(' · ');
  card.stream.update(channel);
  card.retention.update(channel);
}

function showChannels(channels, given = {}) {
  const list = byId('channels');
  for (const channel of channels) {
    let card = cards.get(channel.id);
    if (!card) {
      card = channelCard(channel, given[channel.id]);
      cards.set(channel.id, card);
      list.append(card.node);
    } else {
      updateCard(card, channel);
    }
  }
  if (!channels.length) {
    setStatus(byId('studio-status'), 'You have no channel yet: create one below to get your stream key.');
  }
}

async function refresh() {
  clearTimeout(pollTimer);
  if (!session) return;
  const status = byId('studio-status');
  try {
    const me = await api('/v1/me', { token: session.token });
    if (!session) return;
    setStatus(status, '');
    showChannels(me.channels || []);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      ctx.onAuthLost(err);
      return;
    }
    setStatus(status, `Your channels could not be loaded: ${err.message}`, 'error');
  }
  pollTimer = setTimeout(refresh, ME_POLL_MS);
}

async function logIn(username, password) {
  const answer = await api('/v1/auth/login', { method: 'POST', body: { username, password } });
  session = saveSession(answer);
  if (!session.user) session.user = { username };
  showStudio();
}

function start() {
  onSubmit(byId('login-form'), ({ username, password }) => logIn(username, password));
  onSubmit(byId('signup-form'), async ({ username, password, email }) => {
    await api('/v1/users', { method: 'POST', body: { username, password, ...(email ? { email } : {}) } });
    await logIn(username, password);
  });
  onSubmit(byId('create-channel'), async (values) => {
    const body = { name: values.name, tags: parseTags(values.tags) };
    if (values.title) body.title = values.title;
    if (values.category) body.category = values.category;
    let created;
    try {
      created = await api('/v1/channels', { method: 'POST', body, token: session.token });
    } catch (err) {
      if (err.status === 401) ctx.onAuthLost(err);
      throw err;
    }
    byId('create-channel').reset();
    setStatus(byId('studio-status'), '');
    const { stream_key: streamKey, rtmp_url: rtmpUrl, ...channel } = created;
    const answer = { stream_key: streamKey, rtmp_url: rtmpUrl };
    const existing = cards.get(created.id);
    if (existing) existing.key.show(answer);   // a poll of /v1/me got here first
    else showChannels([{ live_stream_id: null, ...channel }], { [created.id]: answer });
    cards.get(created.id)?.node.scrollIntoView({ behavior: 'smooth', block: 'start' });
  });
  byId('logout').addEventListener('click', () => signOut());
  session = currentSession();
  if (session) showStudio(); else showAuth();
}

start();
