/**
 * The live player: hls.js on MSE with Low-Latency HLS, a quality menu (Auto +
 * every level, the choice remembered), a live-latency readout and a "catch up
 * to live" button.
 *
 * Renditions published as LL-HLS parts (EXT-X-PART-INF) are played in
 * hls.js's low-latency mode: blocking playlist reloads and ~200 ms parts, the
 * start position and the live sync point set by the playlist's PART-HOLD-BACK
 * (the page sets no liveSyncDuration(Count), which would override it), and up
 * to 1.5x playback to drift back to that point after falling behind.  A
 * rendition of whole segments without hold-back attributes is held two
 * segments behind its newest one, as before parts existed.
 *
 * The readout is glass-to-glass as far as the page can tell: the wall clock
 * minus the program date-time of the frame on screen (the time that frame
 * reached the ingest), so it includes the server's own delay that hls.js's
 * `latency` (measured from the playlist's edge) leaves out.  It assumes the
 * viewer's clock is right; a clock that is off shows as a latency that is off.
 *
 * A stall (the video waiting for data, or hls.js reporting the buffer stalled)
 * is recovered from by jumping to hls.js's live sync point (which hls.js moves
 * back a little after every stall): at once if the playhead is still stuck
 * after STALL_JUMP_MS, else as soon as playback goes on, when the stall left it
 * more than JUMP_MIN_S behind that point; so a viewer resumes live instead of
 * carrying the delay for the rest of the stream.  Behind by choice (paused) is
 * left alone: that is what "catch up to live" is for.
 *
 * Every playlist and segment request carries the current playback token: the
 * page may renew it while hls.js keeps URLs signed with the old one.
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

/** The hls.js configuration; `lowLatency: false` plays as a client without LL-HLS support would. */
export function hlsConfig({ lowLatency = true } = {}) {
  return {
    lowLatencyMode: lowLatency,   // parts and blocking reloads where the playlist offers them
    maxLiveSyncPlaybackRate: 1.5, // catch up to the live sync point by playing faster (hls.js's default is 1: never)
    startFragPrefetch: true,
    capLevelToPlayerSize: true,
    maxBufferLength: 10,
    backBufferLength: 30,
    // Segments are already fMP4: there is nothing to transmux, and a worker would only add its start-up
    // to the first frame.
    enableWorker: false,
  };
}

// Segments held back on a rendition whose playlist gives no HOLD-BACK or PART-HOLD-BACK, and how many
// segments behind hls.js itself seeks back to the sync point.  Both are set on hls.config after construction,
// not passed in: hls.js lets a liveSyncDurationCount *passed by the page* override the playlist's hold-backs
// (and refuses a liveMaxLatencyDurationCount passed without it), while it reads config.liveSyncDurationCount
// only when the playlist has no hold-back of its own.
const WHOLE_SEGMENT_HOLD_COUNT = 2;
const MAX_LATENCY_SEGMENTS = 5;
const CATCH_UP_SLACK_S = 1.0;      // further behind the sync point than this offers "catch up"
const MANIFEST_RETRY_MS = 2000;    // a stream that has no segments yet answers 404 for a moment
const STALL_JUMP_MS = 1000;        // a stall longer than this jumps back to the live sync point...
const JUMP_MIN_S = 0.5;            // ...if that point is this far ahead (closer gaps are hls.js's to nudge over)
const TICK_MS = 500;
const EVENTS_KEPT = 20;
const QUALITY_KEY = 'glasscast.quality';

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

/** The remembered quality choice: a rendition name, or null for Auto. */
function savedQuality() {
  try {
    return localStorage.getItem(QUALITY_KEY);
  } catch {
    return null;   // storage disabled: Auto
  }
}

function saveQuality(rendition) {
  try {
    if (rendition) localStorage.setItem(QUALITY_KEY, rendition); else localStorage.removeItem(QUALITY_KEY);
  } catch {
    // storage disabled: the choice lasts for this page only
  }
}

export class LivePlayer {
  /**
   * video: the <video>; ui: {quality, latency, catchUp, onMessage(text|null), onRefused()};
   * tokenFor(url): the URL with the current playback token;
   * options: {lowLatency (default true), rendition (play this one, not the remembered choice or Auto)}.
   */
  constructor(video, ui, tokenFor, options = {}) {
    this.video = video;
    this.ui = ui;
    this.tokenFor = tokenFor;
    this.options = { lowLatency: true, rendition: null, ...options };
    this.hls = null;
    this.src = null;
    this.timer = null;
    this.retry = null;
    this.stallTimer = null;
    this.recovering = false;
    this.started = false;
    this.stats = LivePlayer.emptyStats();
    this.listeners = new AbortController();
    const { signal } = this.listeners;
    ui.quality.addEventListener('change', () => this.chooseLevel(Number(ui.quality.value), true), { signal });
    ui.catchUp.addEventListener('click', () => this.catchUp(), { signal });
    video.addEventListener('playing', () => this.onPlaying(), { signal });
    video.addEventListener('waiting', () => this.onWaiting(), { signal });
    video.addEventListener('pause', () => { this.recovering = false; }, { signal });   // behind by choice
  }

  /** Counters since load(): what the browser tests and the latency bench read (window.glasscastPlayer). */
  static emptyStats() {
    return { waiting: 0, stalls: 0, jumps: 0, parts: 0, fragments: 0, playlists: 0, lastJump: null, events: [] };
  }

  /** Start (or restart) playback of a master playlist. */
  load(src) {
    this.destroy();
    this.src = src;
    this.started = false;
    this.recovering = false;
    this.stats = LivePlayer.emptyStats();
    const Hls = window.Hls;
    const hls = new Hls({
      ...hlsConfig({ lowLatency: this.options.lowLatency }),
      xhrSetup: (xhr, url) => xhr.open('GET', this.tokenFor(url), true),
    });
    hls.config.liveSyncDurationCount = WHOLE_SEGMENT_HOLD_COUNT;
    hls.config.liveMaxLatencyDurationCount = MAX_LATENCY_SEGMENTS;
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      this.ui.onMessage(null);
      this.fillQualityMenu();
      this.video.play().catch(() => this.ui.onMessage('Press play to start watching.'));
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, () => this.markAuto());
    hls.on(Hls.Events.LEVEL_LOADED, () => { this.stats.playlists += 1; });
    hls.on(Hls.Events.FRAG_LOADED, (_event, data) => {
      if (data.part) this.stats.parts += 1; else this.stats.fragments += 1;
    });
    hls.on(Hls.Events.ERROR, (_event, data) => this.onError(data));
    hls.attachMedia(this.video);
    hls.loadSource(src);
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  /** Stop loading and release the media element (load() may start again). */
  destroy() {
    clearInterval(this.timer);
    clearTimeout(this.retry);
    clearTimeout(this.stallTimer);
    this.stallTimer = null;
    if (this.hls) this.hls.destroy();
    this.hls = null;
  }

  /** destroy() for good: the menu and button no longer drive this player. */
  dispose() {
    this.destroy();
    this.listeners.abort();
  }

  /** Keep the last few notable events (stalls, errors, jumps) for the console and the tests' reports. */
  note(kind, detail) {
    const { events } = this.stats;
    events.push({ kind, at: Date.now(), t: Math.round(this.video.currentTime * 1000) / 1000, ...detail });
    if (events.length > EVENTS_KEPT) events.shift();
  }

  onError(data) {
    const Hls = window.Hls;
    this.note('hls-error', { details: data.details, fatal: data.fatal, reason: data.reason || data.error?.message,
                             url: data.frag?.relurl || data.context?.url, code: data.response?.code });
    if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) {
      this.stats.stalls += 1;
      this.watchStall();
    }
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

  onPlaying() {
    this.started = true;
    clearTimeout(this.stallTimer);
    this.stallTimer = null;
  }

  /** The video ran out of data (not a seek, not the start): a stall. */
  onWaiting() {
    if (!this.started || this.video.seeking || this.video.paused) return;
    this.stats.waiting += 1;
    this.note('waiting', { buffered: this.bufferAhead() });
    this.watchStall();
  }

  /**
   * A stall: if the playhead is still stuck after STALL_JUMP_MS, jump to the live sync point; once playback
   * goes on (tick), jump there if the stall left it behind, rather than staying late for the rest of the stream.
   */
  watchStall() {
    if (!this.hls || this.video.paused) return;
    this.recovering = true;
    if (this.stallTimer) return;
    const at = this.video.currentTime;
    this.stallTimer = setTimeout(() => {
      this.stallTimer = null;
      const video = this.video;
      const stuck = video.currentTime - at < 0.1 || video.readyState < HTMLMediaElement.HAVE_FUTURE_DATA;
      if (stuck && !video.paused) this.jumpToLive('stall');
    }, STALL_JUMP_MS);
  }

  /**
   * Seek to hls.js's live sync point when it lies ahead of the playhead (the player fell behind): hls.js
   * then loads from there.  Nothing to do when the playhead is already there (the stream itself is late).
   */
  jumpToLive(reason) {
    const target = this.hls?.liveSyncPosition;
    if (!Number.isFinite(target) || target < this.video.currentTime + JUMP_MIN_S) return false;
    this.stats.jumps += 1;
    this.stats.lastJump = { reason, from: this.video.currentTime, to: target, at: Date.now() };
    this.note('jump', { reason, to: target });
    this.video.currentTime = target;
    this.video.play().catch(() => {});
    return true;
  }

  fillQualityMenu() {
    const { quality } = this.ui;
    const options = this.hls.levels
      .map((level, index) => ({ level, index }))
      .sort((a, b) => (b.level.height - a.level.height) || (b.level.bitrate - a.level.bitrate))
      .map(({ level, index }) => el('option', { value: String(index), dataset: { rendition: renditionOf(level) } },
        levelLabel(level)));
    quality.replaceChildren(el('option', { value: '-1' }, 'Auto'), ...options);
    quality.disabled = this.hls.levels.length < 2;
    // The remembered choice (or the one asked for) is loaded from the start: nothing of Auto's to flush.
    const wanted = this.options.rendition || savedQuality();
    const index = wanted ? this.hls.levels.findIndex((level) => renditionOf(level) === wanted) : -1;
    if (index >= 0) this.hls.loadLevel = index;
    quality.value = String(index);
    this.markAuto();
  }

  markAuto() {
    const { quality } = this.ui;
    const auto = quality.querySelector('option[value="-1"]');
    const level = this.hls?.levels?.[this.hls.currentLevel];
    if (auto) auto.textContent = level && this.hls.autoLevelEnabled ? `Auto (${level.height ? `${level.height}p` : 'audio'})` : 'Auto';
  }

  /** Play level ``index`` (-1: Auto); ``remember`` keeps the choice for the next stream. */
  chooseLevel(index, remember = false) {
    if (!this.hls) return;
    this.hls.currentLevel = index;   // -1 hands the choice back to ABR
    if (remember) saveQuality(index >= 0 ? renditionOf(this.hls.levels[index]) : null);
    this.markAuto();
  }

  catchUp() {
    const target = this.hls?.liveSyncPosition;
    if (!Number.isFinite(target)) return;
    this.video.currentTime = target;
    this.video.play().catch(() => {});
  }

  /** Whether the level being played is LL-HLS (its playlist lists parts) and hls.js loads them. */
  lowLatency() {
    const details = this.hls?.latestLevelDetails;
    return Boolean(this.hls?.config.lowLatencyMode && details?.partTarget);
  }

  /**
   * Seconds from the frame on screen reaching the server to now (wall clock minus its program date-time),
   * or null before playback starts.
   */
  glassToGlass() {
    const shown = this.hls?.playingDate;
    if (!shown || !this.started) return null;
    return Math.max(0, (Date.now() - shown.getTime()) / 1000);
  }

  /** Seconds behind the live edge: glass-to-glass where the playlist dates its segments, else hls.js's figure. */
  latency() {
    const glass = this.glassToGlass();
    if (glass !== null) return glass;
    const value = this.hls?.latency;
    return Number.isFinite(value) && value > 0 ? value : null;
  }

  tick() {
    const video = this.video;
    if (this.recovering && !video.paused && !video.seeking && video.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA) {
      this.recovering = false;
      this.jumpToLive('behind after a stall');
    }
    const latency = this.latency();
    const { latency: readout } = this.ui;
    readout.textContent = latency === null ? 'Latency –' : `Latency ${latency.toFixed(1)} s`;
    readout.dataset.mode = this.lowLatency() ? 'll' : 'segments';
    const sync = this.hls?.liveSyncPosition;
    const behind = Number.isFinite(sync) ? sync - this.video.currentTime : 0;
    this.ui.catchUp.disabled = !(behind > CATCH_UP_SLACK_S || (this.video.paused && Number.isFinite(sync)));
  }

  /** Seconds buffered ahead of the playhead. */
  bufferAhead() {
    const video = this.video;
    let buffered = 0;
    for (let i = 0; i < video.buffered.length; i += 1) {
      if (video.buffered.start(i) <= video.currentTime && video.currentTime <= video.buffered.end(i)) {
        buffered = video.buffered.end(i) - video.currentTime;
      }
    }
    return buffered;
  }

  /** What a heartbeat reports about this player. */
  report() {
    const hls = this.hls;
    const level = hls?.levels?.[hls.currentLevel];
    const video = this.video;
    const buffered = this.bufferAhead();
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

  /** One sample for the latency tests and bench: where playback is and how far behind. */
  sample() {
    const hls = this.hls;
    const level = hls?.levels?.[hls.currentLevel];
    const shown = hls?.playingDate;
    const now = Date.now();
    return {
      now_ms: now,
      playing_date_ms: shown ? shown.getTime() : null,
      // Not clamped at 0 as the readout is: a frame shown before its own date says something is off.
      glass_to_glass_ms: shown && this.started ? now - shown.getTime() : null,
      hls_latency_s: Number.isFinite(hls?.latency) ? hls.latency : null,
      target_latency_s: Number.isFinite(hls?.targetLatency) ? hls.targetLatency : null,
      rendition: level ? renditionOf(level) : null,
      low_latency: this.lowLatency(),
      current_time: this.video.currentTime,
      buffer_ahead_s: this.bufferAhead(),
      playback_rate: this.video.playbackRate,
      paused: this.video.paused,
      ready_state: this.video.readyState,
    };
  }
}
