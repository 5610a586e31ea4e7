/**
 * The player of recorded media (a video's VOD playlist, a clip's playlist): hls.js on MSE without
 * low-latency mode, every playlist and segment request signed with the current playback token,
 * starting at a given position.  It exposes what the chat replay needs: the program date-time of
 * the frame on screen (`playingDateMs`).
 */

import { hlsConfig } from './player.js';

export class VodPlayer {
  /** tokenFor(url): the URL with the current token; onMessage(text|null): the player's status line. */
  constructor(video, tokenFor, onMessage) {
    this.video = video;
    this.tokenFor = tokenFor;
    this.onMessage = onMessage;
    this.hls = null;
  }

  /** Play the playlist at `src` from `startS` seconds (-1: hls.js's default, the playlist's EXT-X-START). */
  load(src, startS = -1) {
    this.destroy();
    const Hls = window.Hls;
    const hls = new Hls({
      ...hlsConfig({ lowLatency: false }),
      startPosition: startS,
      maxBufferLength: 30,
      xhrSetup: (xhr, url) => xhr.open('GET', this.tokenFor(url), true),
    });
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      this.onMessage(null);
      this.video.play().catch(() => this.onMessage('Press play to start watching.'));
    });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else if (data.type === Hls.ErrorTypes.NETWORK_ERROR && data.response?.code === 404) {
        this.destroy();
        this.onMessage('This video is no longer available.');
      } else if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        this.onMessage('Reconnecting…');
        hls.startLoad();
      } else {
        this.destroy();
        this.onMessage(`Playback stopped: ${data.details}. Reload the page to try again.`);
      }
    });
    hls.attachMedia(this.video);
    hls.loadSource(src);
  }

  destroy() {
    if (this.hls) this.hls.destroy();
    this.hls = null;
  }

  /** The program date-time of the frame on screen, epoch ms, or null before the playlist is known. */
  playingDateMs() {
    const date = this.hls?.playingDate;
    return date ? date.getTime() : null;
  }

  /** What a heartbeat reports about this player. */
  report() {
    const level = this.hls?.levels?.[this.hls.currentLevel];
    const video = this.video;
    let ahead = 0;
    for (let i = 0; i < video.buffered.length; i += 1) {
      if (video.buffered.start(i) <= video.currentTime && video.currentTime <= video.buffered.end(i)) {
        ahead = video.buffered.end(i) - video.currentTime;
      }
    }
    const url = Array.isArray(level?.url) ? level.url[0] : level?.url;
    const rendition = /\/([a-z0-9]+)(?:\/vod)?\.m3u8/.exec(url || '')?.[1] || 'source';
    return {
      rendition,
      buffer_health_s: Math.min(3600, Math.round(ahead * 1000) / 1000),
      bitrate_kbps: level ? Math.round(level.bitrate / 1000) : 0,
    };
  }
}
