/**
 * The OBS settings of one channel on the dashboard: the RTMP server URL and
 * the stream key, masked until the owner asks to see it, with copy buttons
 * and key rotation.  The key comes from the creation answer or from
 * GET /v1/channels/{id}/stream-key; POST .../stream-key/regenerate replaces it.
 */

import { api, seg } from './api.js';
import { copyText, el, setStatus } from './dom.js';

const MASK = '•'.repeat(24);

export class StreamKeyPanel {
  /** ctx: {token(), onAuthLost()}; given: an answer with {stream_key, rtmp_url}, when just created. */
  constructor(channel, ctx, given = null) {
    this.channel = channel;
    this.ctx = ctx;
    this.key = null;
    this.rtmpUrl = null;
    this.revealed = false;
    this.server = el('code', { className: 'server-url' }, this.rtmpUrl || '…');
    this.keyText = el('code', { className: 'stream-key' });
    this.showButton = el('button', { type: 'button', className: 'show-key', onclick: () => this.toggle() });
    this.status = el('p', { className: 'status key-status', role: 'status', hidden: true });
    this.node = el('section', { className: 'obs' },
      el('h3', {}, 'Stream from OBS'),
      el('dl', { className: 'obs-settings' },
        el('dt', {}, 'Server'),
        el('dd', {}, this.server,
          el('button', { type: 'button', className: 'copy-server', onclick: () => this.copyServer() }, 'Copy')),
        el('dt', {}, 'Stream key'),
        el('dd', {}, this.keyText, this.showButton,
          el('button', { type: 'button', className: 'copy-key', onclick: () => this.copyKey() }, 'Copy'),
          el('button', { type: 'button', className: 'rotate-key danger', onclick: () => this.rotate() }, 'Reset key'))),
      this.status,
      el('p', { className: 'hint' },
        'In OBS: Settings → Stream → Service “Custom…”, paste the server and the stream key. ',
        'Keep the key secret: anyone who has it can stream to your channel.'));
    if (given) this.show(given); else this.load(false);
    this.render();
  }

  /** Show a key the API just handed out (at creation). */
  show(answer) {
    this.key = answer.stream_key;
    this.rtmpUrl = answer.rtmp_url || this.rtmpUrl;
    this.revealed = true;
    this.render();
    setStatus(this.status, 'Your channel is ready. Copy the server and stream key into OBS.', 'ok');
  }

  render() {
    this.keyText.textContent = this.revealed && this.key ? this.key : MASK;
    this.keyText.dataset.masked = String(!(this.revealed && this.key));
    this.showButton.textContent = this.revealed ? 'Hide' : 'Show';
    this.server.textContent = this.rtmpUrl || '…';
  }

  /** Fetch the key and server URL; `loud` reports a failure to the owner. */
  async load(loud = true) {
    try {
      const answer = await api(`/v1/channels/${seg(this.channel.id)}/stream-key`, { token: this.ctx.token() });
      this.key = answer.stream_key;
      this.rtmpUrl = answer.rtmp_url;
      this.render();
      return true;
    } catch (err) {
      if (err.status === 401) this.ctx.onAuthLost(err);
      if (loud) setStatus(this.status, `The stream key could not be loaded: ${err.message}`, 'error');
      return false;
    }
  }

  async toggle() {
    if (!this.revealed && !this.key && !(await this.load())) return;
    this.revealed = !this.revealed;
    this.render();
  }

  async copyServer() {
    if (!this.rtmpUrl && !(await this.load())) return;
    const ok = await copyText(this.rtmpUrl);
    setStatus(this.status, ok ? 'Server URL copied.' : 'Copy failed: select the server URL and copy it.', ok ? 'ok' : 'error');
  }

  async copyKey() {
    if (!this.key && !(await this.load())) return;
    const ok = await copyText(this.key);
    setStatus(this.status, ok ? 'Stream key copied.' : 'Copy failed: show the key and copy it by hand.', ok ? 'ok' : 'error');
  }

  async rotate() {
    const sure = window.confirm('Reset the stream key? OBS will need the new key; the old one stops working at once.');
    if (!sure) return;
    try {
      const answer = await api(`/v1/channels/${seg(this.channel.id)}/stream-key/regenerate`,
        { method: 'POST', token: this.ctx.token() });
      this.key = answer.stream_key;
      this.rtmpUrl = answer.rtmp_url || this.rtmpUrl;
      this.revealed = true;
      this.render();
      setStatus(this.status, 'New stream key created. Paste it into OBS before you go live again.', 'ok');
    } catch (err) {
      if (err.status === 401) this.ctx.onAuthLost(err);
      setStatus(this.status, `The key could not be reset: ${err.message}`, 'error');
    }
  }
}
