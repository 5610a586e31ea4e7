/**
 * The stream part of a dashboard channel card: set up the next stream
 * (POST /v1/streams), edit it before or while live (PATCH /v1/streams/{id}),
 * end it (POST /v1/streams/{id}/end), and its live health.
 */

import { api, seg } from './api.js';
import { el, parseTags, setStatus } from './dom.js';
import { onSubmit } from './forms.js';
import { StreamHealth } from './stream_health.js';

function field(label, name, value, props = {}) {
  return el('label', {}, label, el('input', { name, value: value || '', ...props }));
}

function streamForm(submitLabel, values) {
  return el('form', { className: 'stream-form', noValidate: true },
    el('div', { className: 'columns' },
      field('Title', 'title', values.title, { maxLength: 140 }),
      field('Category', 'category', values.category, { maxLength: 64 }),
      field('Tags', 'tags', (values.tags || []).join(', '), { placeholder: 'comma separated' })),
    el('button', { type: 'submit' }, submitLabel),
    el('p', { className: 'status form-status', role: 'alert', hidden: true }));
}

/** The stream fields of a form: an empty title keeps the current one, an empty category clears it. */
function streamBody(values) {
  const body = { category: values.category, tags: parseTags(values.tags) };
  if (values.title) body.title = values.title;
  return body;
}

export class StreamControls {
  /** ctx: {token(), onAuthLost(), onChanged()}. */
  constructor(channel, ctx) {
    this.channel = channel;
    this.ctx = ctx;
    this.streamId = null;
    this.live = false;
    this.health = null;
    this.node = el('section', { className: 'stream-controls' });
    this.update(channel);
  }

  /** Re-render when the channel's live stream changed (polled from /v1/me). */
  update(channel) {
    // Channels from GET /v1/me name their configured stream; older answers only the live one.
    const knowsConfigured = 'configured_stream_id' in channel;
    const streamId = channel.live_stream_id || channel.configured_stream_id
      || (knowsConfigured || this.live ? null : this.streamId);
    const live = Boolean(channel.live_stream_id);
    this.channel = channel;
    if (streamId === this.streamId && live === this.live && this.node.childElementCount) return;
    this.streamId = streamId;
    this.live = live;
    this.render();
  }

  stop() {
    this.health?.stop();
    this.health = null;
  }

  render() {
    this.stop();
    if (!this.streamId) {
      this.node.replaceChildren(...this.setupView());
    } else {
      this.node.replaceChildren(...this.streamView());
    }
  }

  setupView() {
    const form = streamForm('Set up stream', this.channel);
    onSubmit(form, async (values) => {
      let stream;
      try {
        stream = await this.call('/v1/streams', 'POST', { channel_id: this.channel.id, ...streamBody(values) });
      } catch (err) {
        if (err.status !== 409 || !err.problem?.stream_id) throw err;
        stream = { id: err.problem.stream_id };   // already set up or live: manage that one
      }
      this.streamId = stream.id;
      this.live = stream.status === 'live';
      this.render();
      this.ctx.onChanged();
    });
    return [el('h3', {}, 'Next stream'),
      el('p', { className: 'hint' }, 'Set the title and category viewers will see, then start streaming from OBS.'),
      form];
  }

  streamView() {
    const heading = this.live
      ? el('h3', {}, el('span', { className: 'badge live' }, 'LIVE'), ' You are live')
      : el('h3', {}, 'Ready: start streaming from OBS to go live');
    const form = streamForm(this.live ? 'Update stream' : 'Save', this.channel);
    this.fill(form);
    onSubmit(form, async (values) => {
      await this.call(`/v1/streams/${seg(this.streamId)}`, 'PATCH', streamBody(values));
      setStatus(form.querySelector('.form-status'), 'Saved.', 'ok');
    });
    const endStatus = el('p', { className: 'status', role: 'alert', hidden: true });
    const end = el('button', { type: 'button', className: 'end-stream danger',
                               onclick: () => this.end(end, endStatus) }, this.live ? 'End stream' : 'Cancel stream');
    const parts = [heading, form, el('div', { className: 'actions' }, end), endStatus];
    if (this.live) {
      this.health = new StreamHealth(this.streamId, this.ctx.token, this.ctx.onAuthLost);
      parts.push(this.health.node);
    }
    return parts;
  }

  /** Put the stream's own title, category and tags into the edit form. */
  async fill(form) {
    try {
      const stream = await api(`/v1/streams/${seg(this.streamId)}`);
      form.elements.title.value = stream.title || '';
      form.elements.category.value = stream.category || '';
      form.elements.tags.value = (stream.tags || []).join(', ');
    } catch {
      // the channel's values are already there
    }
  }

  async end(button, status) {
    const sure = window.confirm(this.live ? 'End the stream now? Viewers will see it end.' : 'Cancel this stream?');
    if (!sure) return;
    button.disabled = true;
    try {
      await this.call(`/v1/streams/${seg(this.streamId)}/end`, 'POST', {});
      this.streamId = null;
      this.live = false;
      this.channel = { ...this.channel, live_stream_id: null, configured_stream_id: null };
      this.render();
      this.ctx.onChanged();
    } catch (err) {
      setStatus(status, `The stream could not be ended: ${err.message}`, 'error');
      button.disabled = false;
    }
  }

  async call(path, method, body) {
    try {
      return await api(path, { method, body, token: this.ctx.token() });
    } catch (err) {
      if (err.status === 401) this.ctx.onAuthLost(err);
      throw err;
    }
  }
}
