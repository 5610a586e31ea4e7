/**
 * The live player: hls.js on MSE, a quality menu (Auto + every level), a
 * latency readout and a "catch up to live" button.
 *
 * Segments are 2 s GOPs without LL-HLS parts, so the player starts two
 * segments behind the newest one (about 4 s of latency measured from the
 * playlist's edge), drifts back toward that point by playing up to 10 % faster
 * when it falls behind, and jumps to it when it is more than five segments
 * late.  Every playlist and segment request carries the current playback
 * token: the page may renew it while hls.js keeps URLs signed with the old one.
 */

import { el, formatBitrate } from './dom.js';

/**
 * Load hls.js (the page preloads it; its URL carries the installed version).
 * Resolves either way: playerUnavailable() then says what is missing.
 */
export function loadHls() {
  const preload = document.getElementById('hls-script');
  if (window.Hls || !preload) return Promise.resolve();
  return new Promise((resolve) => {
    const script = document.createElement('script');
    script.src = preload.href;
    script.addEventListener('load', resolve, { once: true });
    script.addEventListener('error', resolve, { once: true });
    document.head.append(script);
  });
}

const HLS_CONFIG = {
  lowLatencyMode: true,          // takes LL-HLS parts and blocking reloads once the origin offers them
  liveSyncDurationCount: 2,
  liveMaxLatencyDurationCount: 5,
  maxLiveSyncPlaybackRate: 1.1,
  startFragPrefetch: true,
  capLevelToPlayerSize: true,
  maxBufferLength: 10,
  backBufferLength: 30,
  // Segments are already fMP4: there is nothing to transmux, and a worker would only add its start-up
  // to the first frame.
  enableWorker: false,
};
const CATCH_UP_SLACK_S = 1.0;      // further behind the sync point than this offers "catch up"
const MANIFEST_RETRY_MS = 2000;    // a stream that has no segments yet answers 404 for a moment

/** Why the page cannot use hls.js here, or null when it can. */
export function playerUnavailable() {
  if (typeof window.Hls === 'undefined') {
    return 'The video player (hls.js) is not installed on this server. '
      + 'Its operator needs to run `make setup` (npm ci in gateways/web).';
  }
  if (!window.Hls.isSupported()) {
    return 'This browser cannot play live video here: it lacks Media Source Extensions with H.264 and AAC.';
  }
  return null;
}

/** The rendition name in a level's playlist URL (/hls/<stream>/<rendition>/index.m3u8). */
export function renditionOf(level) {
  const url = Array.isArray(level?.url) ? level.url[0] : level?.url;
  const match = /\/hls\/[^/]+\/([a-z0-9]+)\/[^/]+\.m3u8/.exec(url || '');
  return match ? match[1] : (level?.name || 'unknown');
}

function levelLabel(level) {
  const rendition = renditionOf(level);
  const size = level.height ? `${level.height}p` : 'audio only';
  const rate = formatBitrate(level.bitrate);
  const head = rendition === 'source' ? `Source (${size})` : size;
  return rate ? `${head} · ${rate}` : head;
}

export class LivePlayer {
  /**
   * video: the <video>; ui: {quality, latency, catchUp, onMessage(text|null), onRefused()};
   * tokenFor(url): the URL with the current playback token.
   */
  constructor(video, ui, tokenFor) {
    this.video = video;
    this.ui = ui;
    this.tokenFor = tokenFor;
    this.hls = null;
    this.src = null;
    this.timer = null;
    this.retry = null;
    this.listeners = new AbortController();
    const { signal } = this.listeners;
    ui.quality.addEventListener('change', () => this.chooseLevel(Number(ui.quality.value)), { signal });
    ui.catchUp.addEventListener('click', () => this.catchUp(), { signal });
  }

  /** Start (or restart) playback of a master playlist. */
  load(src) {
    this.destroy();
    this.src = src;
    const Hls = window.Hls;
    const hls = new Hls({
      ...HLS_CONFIG,
      xhrSetup: (xhr, url) => xhr.open('GET', this.tokenFor(url), true),
    });
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      this.ui.onMessage(null);
      this.fillQualityMenu();
      this.video.play().catch(() => this.ui.onMessage('Press play to start watching.'));
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, () => this.markAuto());
    hls.on(Hls.Events.ERROR, (_event, data) => this.onError(data));
    hls.attachMedia(this.video);
    hls.loadSource(src);
    this.timer = setInterval(() => this.tick(), 1000);
  }

  /** Stop loading and release the media element (load() may start again). */
  destroy() {
    clearInterval(this.timer);
    clearTimeout(this.retry);
    if (this.hls) this.hls.destroy();
    this.hls = null;
  }

  /** destroy() for good: the menu and button no longer drive this player. */
  dispose() {
    this.destroy();
    this.listeners.abort();
  }

  onError(data) {
    const Hls = window.Hls;
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
      const status = data.response?.code;
      if (data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR && status === 403) {
        this.ui.onMessage('Renewing access to the stream…');
        this.ui.onRefused();
      } else if (data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR) {
        this.ui.onMessage(status === 404 ? 'The stream is starting…' : 'Reconnecting to the stream…');
        this.retry = setTimeout(() => this.load(this.src), MANIFEST_RETRY_MS);
      } else {
        this.ui.onMessage('Reconnecting to the stream…');
        this.hls.startLoad();
      }
    } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
      this.hls.recoverMediaError();
    } else {
      this.destroy();
      this.ui.onMessage(`Playback stopped: ${data.details}. Reload the page to try again.`);
    }
  }

  fillQualityMenu() {
    const { quality } = this.ui;
    const options = this.hls.levels
      .map((level, index) => ({ level, index }))
      .sort((a, b) => (b.level.height - a.level.height) || (b.level.bitrate - a.level.bitrate))
      .map(({ level, index }) => el('option', { value: String(index), dataset: { rendition: renditionOf(level) } },
        levelLabel(level)));
    quality.replaceChildren(el('option', { value: '-1' }, 'Auto'), ...options);
    quality.value = '-1';
    quality.disabled = this.hls.levels.length < 2;
    this.markAuto();
  }

  markAuto() {
    const { quality } = this.ui;
    const auto = quality.querySelector('option[value="-1"]');
    const level = this.hls?.levels?.[this.hls.currentLevel];
    if (auto) auto.textContent = level && this.hls.autoLevelEnabled ? `Auto (${level.height ? `${level.height}p` : 'audio'})` : 'Auto';
  }

  chooseLevel(index) {
    if (!this.hls) return;
    this.hls.currentLevel = index;   // -1 hands the choice back to ABR
    this.markAuto();
  }

  catchUp() {
    const target = this.hls?.liveSyncPosition;
    if (!Number.isFinite(target)) return;
    this.video.currentTime = target;
    this.video.play().catch(() => {});
  }

  /** Seconds behind the live edge of the playlist, or null before playback starts. */
  latency() {
    const value = this.hls?.latency;
    return Number.isFinite(value) && value > 0 ? value : null;
  }

  tick() {
    const latency = this.latency();
    this.ui.latency.textContent = latency === null ? 'Latency –' : `Latency ${latency.toFixed(1)} s`;
    const sync = this.hls?.liveSyncPosition;
    const behind = Number.isFinite(sync) ? sync - this.video.currentTime : 0;
    this.ui.catchUp.disabled = !(behind > CATCH_UP_SLACK_S || (this.video.paused && Number.isFinite(sync)));
  }

  /** What a heartbeat reports about this player. */
  report() {
    const hls = this.hls;
    const level = hls?.levels?.[hls.currentLevel];
    const video = this.video;
    let buffered = 0;
    for (let i = 0; i < video.buffered.length; i += 1) {
      if (video.buffered.start(i) <= video.currentTime && video.currentTime <= video.buffered.end(i)) {
        buffered = video.buffered.end(i) - video.currentTime;
      }
    }
    const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const latency = this.latency();
    return {
      rendition: level ? renditionOf(level) : 'unknown',
      buffer_health_s: Math.min(3600, Math.max(0, Math.round(buffered * 1000) / 1000)),
      bitrate_kbps: level ? Math.round(level.bitrate / 1000) : 0,
      latency_ms: latency === null ? null : Math.round(latency * 1000),
      dropped_frames: quality ? quality.droppedVideoFrames : null,
    };
  }
}
