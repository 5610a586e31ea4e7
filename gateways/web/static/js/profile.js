/**
 * A profile page (/u/{name}): display name, bio, avatar and channels (GET /v1/users/{name}); the
 * signed-in user on their own page also gets a form for display name and bio (PATCH /v1/me) and
 * an avatar upload (PUT /v1/me/avatar with the file itself as the body).
 */

import { api, ApiError, seg } from './api.js';
import { byId, el, setStatus } from './dom.js';
import { currentSession } from './session.js';

const MAX_AVATAR_BYTES = 2 * 1024 * 1024;

const userName = decodeURIComponent(location.pathname.split('/')[2] || '');

/** Same-origin avatar paths only (img-src 'self' would refuse others anyway). */
function localUrl(url) {
  return typeof url === 'string' && url.startsWith('/') && !url.startsWith('//') ? url : null;
}

function show(profile) {
  const name = profile.display_name || profile.username;
  document.title = `${name} · Glasscast`;
  byId('profile-name').textContent = name;
  byId('profile-username').textContent = profile.username;
  byId('profile-since').textContent = Number.isFinite(profile.created_at_ms)
    ? `joined ${new Date(profile.created_at_ms).toLocaleDateString('en', { year: 'numeric', month: 'long' })}` : '';
  byId('profile-bio').textContent = profile.bio || '';
  const avatar = byId('profile-avatar');
  const url = localUrl(profile.avatar_url);
  avatar.alt = `${name}'s avatar`;
  if (url) avatar.src = url;
  avatar.hidden = !url;
  byId('profile-initial').textContent = (profile.username || '?').slice(0, 1);
  byId('profile-initial').hidden = Boolean(url);
  byId('profile-card').hidden = false;
  byId('profile-card').dataset.userId = profile.id;
  const channels = profile.channels || [];
  byId('profile-channels').replaceChildren(...channels.map((c) => el('li', { className: 'result' },
    el('a', { href: `/c/${encodeURIComponent(c.name)}`, className: 'result-link', dataset: { channel: c.name } },
      el('span', { className: c.live_stream_id ? 'badge live' : 'badge offline' }, c.live_stream_id ? 'LIVE' : 'Offline'),
      el('strong', { className: 'result-channel' }, c.name),
      el('span', { className: 'result-title' }, c.title || ''),
      Number.isFinite(c.followers) ? el('span', { className: 'result-category' },
        `${c.followers.toLocaleString('en')} ${c.followers === 1 ? 'follower' : 'followers'}`) : null))));
  byId('profile-channels-section').hidden = !channels.length;
}

async function load() {
  try {
    return await api(`/v1/users/${seg(userName)}`);
  } catch (err) {
    const missing = err instanceof ApiError && err.status === 404;
    setStatus(byId('profile-status'), missing ? `There is no user called ${userName}.` : err.message, 'error');
    return null;
  }
}

/** PUT the file as the body: api() sends JSON, so this one request is made here. */
async function uploadAvatar(file, token) {
  let response;
  try {
    response = await fetch('/v1/me/avatar', {
      method: 'PUT', body: file, credentials: 'same-origin',
      headers: { Accept: 'application/json', Authorization: `Bearer ${token}`,
                 'Content-Type': file.type || 'application/octet-stream' },
    });
  } catch {
    throw new ApiError(0, 'Cannot reach Glasscast: check your connection and try again.');
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, (data && typeof data.detail === 'string' && data.detail)
      || `${response.status} ${response.statusText || 'error'}`, data);
  }
  return data;
}

function explain(err) {
  return err instanceof ApiError && err.status === 401 ? 'Your session has expired: log in again on the dashboard.'
    : err.message;
}

function setUpEditing(profile) {
  const edit = byId('profile-edit');
  const form = byId('profile-form');
  const avatarForm = byId('avatar-form');
  form.elements.display_name.value = profile.display_name || '';
  form.elements.bio.value = profile.bio || '';
  edit.hidden = false;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const status = form.querySelector('.form-status');
    const session = currentSession();
    if (!session) { setStatus(status, 'Log in again on the dashboard to edit your profile.', 'error'); return; }
    const button = form.querySelector('button');
    button.disabled = true;
    setStatus(status, 'Saving…', 'busy');
    try {
      const saved = await api('/v1/me', { method: 'PATCH', token: session.token, body: {
        display_name: form.elements.display_name.value.trim(), bio: form.elements.bio.value.trim() } });
      show({ ...profile, ...saved });
      Object.assign(profile, saved);
      setStatus(status, 'Saved.', 'ok');
    } catch (err) {
      setStatus(status, explain(err), 'error');
    } finally {
      button.disabled = false;
    }
  });
  avatarForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const status = avatarForm.querySelector('.form-status');
    const file = avatarForm.elements.avatar.files[0];
    const session = currentSession();
    if (!file) { setStatus(status, 'Choose an image first.', 'error'); return; }
    if (file.size > MAX_AVATAR_BYTES) { setStatus(status, 'That image is bigger than 2 MiB.', 'error'); return; }
    if (!session) { setStatus(status, 'Log in again on the dashboard to change your avatar.', 'error'); return; }
    const button = avatarForm.querySelector('button');
    button.disabled = true;
    setStatus(status, 'Uploading…', 'busy');
    try {
      const answer = await uploadAvatar(file, session.token);
      profile.avatar_url = answer.avatar_url;
      show(profile);
      avatarForm.reset();
      setStatus(status, 'Avatar updated.', 'ok');
    } catch (err) {
      setStatus(status, explain(err), 'error');
    } finally {
      button.disabled = false;
    }
  });
}

async function start() {
  setStatus(byId('profile-status'), 'Loading…', 'busy');
  const profile = await load();
  if (!profile) return;
  setStatus(byId('profile-status'), '');
  show(profile);
  const session = currentSession();
  if (session?.user?.id && String(session.user.id) === String(profile.id)) setUpEditing(profile);
}

start();
