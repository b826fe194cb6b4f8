/**
 * amphi.js — the browser client of Amphi: signalling over one WebSocket (docs/protocol.md) and,
 * per joined channel, one RTCPeerConnection carrying its audio (docs/media.md).
 * An ES module with no dependencies and no build step.
 *
 * @example
 * import {AmphiClient} from "./amphi.js";
 *
 * const amphi = await AmphiClient.connect("https://audio.example.test", token);
 * amphi.addEventListener("participant_joined", (e) => console.log("joined:", e.detail.identity));
 * amphi.addEventListener("active_speaker", (e) => highlight(e.detail.participant));
 * amphi.addEventListener("error", (e) => console.error(e.detail));
 *
 * const me = await amphi.join("lobby", "host");      // the join reply: participant, hosts, …
 * await amphi.startAudio("lobby", {publish: true});  // microphone out, other hosts in
 * await amphi.setMuted("lobby", true);
 * const stats = await amphi.pc.getStats();
 * await amphi.leave("lobby");
 * amphi.close();
 *
 * Audio: `startAudio` offers the microphone (when publishing) and `slots` receive-only m-lines,
 * waits for ICE gathering, and applies the server's answer; server `media_offer` events (more
 * slots) are answered by themselves. Each received track plays through a hidden <audio>
 * element; `track` events keep `audio.get(channel).slots` (mid → participant) current.
 *
 * Events, all CustomEvents:
 * - each protocol event under its own name ("participant_joined", "track", "active_speaker", …)
 *   and again as "event"; `detail` is the frame as received. Bookkeeping (slot map, mute of the
 *   local track, answering a server renegotiation) starts before listeners run.
 * - "audio_state": `detail` = {channel, state}, the peer connection's connectionState.
 * - "error": `detail` is an {@link AmphiError} — a renegotiation that failed, an error frame
 *   that answers no request, audio the browser refused to play, …
 * - "close": `detail` = {code, reason}, once the WebSocket has closed.
 *
 * Failures are {@link AmphiError}s (rejections, or "error" events) whose `code` is the protocol's
 * error code or one of the client's own: "timeout", "disconnected", "connect_failed",
 * "no_microphone", "autoplay_blocked", "ice_failed".
 */

const WELCOME_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 15_000;
/** How long a client keeps trying to resume its session: the server's default window. */
const RESUME_FOR_MS = 20_000;
// The server is ICE-lite and learns the client's address from its connectivity checks, so the
// offer needs no candidate that takes long to find; the cap only bounds a slow interface scan.
const ICE_GATHERING_CAP_MS = 2_000;
const DEFAULT_SLOTS = 3;

/** An error with a stable `code`; `frame` is the server's error frame when there is one. */
export class AmphiError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [frame]
   */
  constructor(code, message, frame) {
    super(message);
    this.name = "AmphiError";
    this.code = code;
    this.frame = frame;
  }
}

export class AmphiClient extends EventTarget {
  /** The server's `welcome` frame: `session`, `identity`, `server`, `protocol`. */
  welcome = null;
  /**
   * The channels this client is in, by channel ID: `{channel, participant, role, muted, reply}`
   * where `reply` is the join reply (`hosts`, `audience_count`, `participants`?).
   * @type {Map<string, {channel: string, participant: string, role: string, muted: boolean, reply: object}>}
   */
  channels = new Map();
  /** Audio sessions by channel ID. @type {Map<string, AudioSession>} */
  audio = new Map();

  /** @type {WebSocket} */
  #ws;
  #nextId = 1;
  /** @type {Map<number, {type: string, resolve: Function, reject: Function, timer: number}>} */
  #pending = new Map();
  /** @type {AudioSession | null} */
  #lastAudio = null;
  #url = "";
  /** Per channel, the last event `seq` seen: what a resume asks to be replayed after. */
  #lastSeq = new Map();
  #resumeToken = null;
  #closing = false;

  /**
   * Opens the signalling connection and resolves once the server has sent `welcome`.
   * @param {string} url the server's base URL, http(s):// or ws(s)://
   * @param {string} token an access token (JWT)
   * @param {{timeoutMs?: number}} [options]
   * @returns {Promise<AmphiClient>}
   */
  static async connect(url, token, { timeoutMs = WELCOME_TIMEOUT_MS } = {}) {
    const client = new AmphiClient();
    client.#url = socketUrl(url, token);
    await client.#open(client.#url, timeoutMs);
    client.#resumeToken = client.welcome.resume_token ?? null;
    return client;
  }

  /** The peer connection of the most recently started audio session, for getStats(). */
  get pc() {
    return this.#lastAudio?.pc ?? null;
  }

  #open(url, timeoutMs) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      this.#ws = ws;
      const timer = setTimeout(() => {
        reject(new AmphiError("timeout", `no welcome from the server within ${timeoutMs} ms`));
        ws.close();
      }, timeoutMs);
      ws.onmessage = (message) => {
        const frame = parseFrame(message.data);
        if (this.welcome) {
          if (frame) this.#onFrame(frame);
          return;
        }
        clearTimeout(timer);
        if (frame?.type === "welcome") {
          this.welcome = frame;
          resolve();
        } else {
          reject(new AmphiError("connect_failed", "the server's first frame was not a welcome", frame));
          ws.close();
        }
      };
      ws.onclose = (event) => {
        clearTimeout(timer);
        if (this.welcome && !this.#closing && event.code === 1006 && this.channels.size > 0) {
          // The network failed (no close frame): the server keeps the session for a while.
          this.#resume();
          return;
        }
        if (!this.welcome) {
          // Browsers hide the HTTP status of a refused upgrade, so say what it usually means.
          reject(new AmphiError("connect_failed",
            `could not connect (close code ${event.code}): the server is unreachable or refused ` +
            "the token (a refused token is an HTTP 401 that browsers do not show)"));
        }
        this.#onClose(event);
      };
    });
  }

  /**
   * Sends a request and resolves with its `ok` frame; rejects with an {@link AmphiError} carrying
   * the error frame's `code`, or "timeout" / "disconnected".
   * @param {string} type
   * @param {object} [params]
   * @param {{timeoutMs?: number}} [options]
   * @returns {Promise<object>}
   */
  request(type, params = {}, { timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
    if (this.#ws?.readyState !== WebSocket.OPEN) {
      return Promise.reject(new AmphiError("disconnected", `'${type}': the connection is closed`));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new AmphiError("timeout", `'${type}': no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { type, resolve, reject, timer });
      this.#ws.send(JSON.stringify({ ...params, id, type }));
    });
  }

  /**
   * Joins a channel. Resolves with the join reply.
   * @param {string} channel a channel ID, or a URI with `{uri: true}`
   * @param {string} [role] the server's default role when omitted
   * @param {{metadata?: any, uri?: boolean, audio?: "auto"|"mixed"|"forwarded"}} [options]
   *   `audio`: what this member receives — the server's mix on one track, each speaker's own
   *   track, or what the channel does (the default)
   */
  async join(channel, role, { metadata, uri = false, audio } = {}) {
    const params = { channel };
    if (role) params.role = role;
    if (uri) params.uri = true;
    if (metadata !== undefined) params.metadata = metadata;
    if (audio && audio !== "auto") params.audio = audio;
    const reply = await this.request("join", params);
    const self = [...reply.hosts, ...(reply.participants ?? [])]
      .find((p) => p.participant === reply.participant);
    this.channels.set(reply.channel, {
      channel: reply.channel,
      participant: reply.participant,
      role: reply.role,
      muted: self?.muted ?? false,
      reply,
    });
    return reply;
  }

  /** Leaves a channel, closing its audio first. */
  async leave(channel) {
    this.stopAudio(channel);
    try {
      await this.request("leave", { channel });
    } finally {
      this.channels.delete(channel);
    }
  }

  /**
   * Mutes or unmutes yourself: the server stops forwarding you, and the microphone track is
   * disabled so nothing leaves the browser either. Muting disables the track before asking the
   * server and unmuting enables it only once the server agreed, so a refusal (a moderator's
   * lock) never leaves the microphone live.
   */
  async setMuted(channel, muted) {
    const audio = this.audio.get(channel);
    if (muted) audio?.setMicEnabled(false);
    await this.request("mute", { channel, muted });
    const state = this.channels.get(channel);
    if (state) state.muted = muted;
    if (!muted) audio?.setMicEnabled(true);
  }

  /**
   * What you receive from now on: "mixed" (one track, the server's mix), "forwarded" (a track
   * per speaker) or "auto" (what the channel does). The server rebinds your tracks by itself.
   */
  setAudio(channel, audio) {
    return this.request("set_audio", { channel, audio });
  }

  /** How the channel's audio reaches listeners: "forward", "mix" or "auto" (moderators). */
  setMix(channel, policy) {
    return this.request("set_mix", { channel, policy });
  }

  /** A speaker's level in the mix, 0.0 (silent) to 2.0; 1.0 unchanged (moderators). */
  setVolume(channel, participant, gain) {
    return this.request("set_volume", { channel, participant, gain });
  }

  /** Asks the channel's moderators for a role ("raise hand"). */
  requestRole(channel, role) {
    return this.request("request_role", { channel, role });
  }

  /** Changes your role, or another participant's (needs the moderate permission). */
  setRole(channel, role, participant) {
    return this.request("set_role", participant ? { channel, role, participant } : { channel, role });
  }

  /** Sends an application message to the channel, or to the participant IDs in `to`. */
  send(channel, kind, content, to) {
    return this.request("send", to?.length ? { channel, kind, content, to } : { channel, kind, content });
  }

  /**
   * Starts the channel's audio, or renegotiates it when it is already running (e.g. with
   * `publish: true` after being made a host).
   * @param {string} channel a channel this client has joined
   * @param {{publish?: boolean, micStream?: MediaStream, slots?: number,
   *   video?: boolean | {stream?: MediaStream, slots?: number}}} [options]
   *   `publish`: send a microphone (from `micStream`, else getUserMedia); `slots`: receive
   *   slots to offer, one per expected speaker (the server adds more when needed); `video`
   *   (call channels only): send a camera (from `video.stream`, else getUserMedia) and
   *   receive `video.slots` others' cameras (default 1), each as a `video_track` event with
   *   a playing `<video>` element for the page to place.
   * @returns {Promise<AudioSession>}
   */
  async startAudio(channel, { publish = false, micStream, slots = DEFAULT_SLOTS, video } = {}) {
    const state = this.channels.get(channel);
    if (!state) throw new AmphiError("not_found", `join '${channel}' before starting its audio`);
    let session = this.audio.get(channel);
    const fresh = !session;
    if (fresh) {
      // Registered before the offer goes out: `track` events may arrive ahead of the answer.
      session = new AudioSession(channel, {
        request: (type, params) => this.request(type, params),
        emit: (name, detail) => this.#emit(name, detail),
        fail: (err) => this.#fail(err),
      });
      this.audio.set(channel, session);
    }
    this.#lastAudio = session;
    try {
      await session.start({ publish, micStream, slots, muted: state.muted, video });
    } catch (err) {
      if (fresh) this.stopAudio(channel);
      throw err;
    }
    return session;
  }

  /** Closes the channel's peer connection and its players, and stops a microphone it opened. */
  stopAudio(channel) {
    const session = this.audio.get(channel);
    if (!session) return;
    this.audio.delete(channel);
    session.close();
    if (this.#lastAudio === session) this.#lastAudio = [...this.audio.values()].pop() ?? null;
  }

  /** Closes the connection; the server treats the channels as left with reason `disconnected`. */
  close() {
    this.#closing = true;
    this.#shutdown();
    this.#ws?.close(1000);
  }

  #emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  #fail(err) {
    // Browser exceptions (DOMException from setRemoteDescription, …) get a code like the rest.
    this.#emit("error", err instanceof AmphiError ? err : new AmphiError("internal", String(err?.message ?? err)));
  }

  #onFrame(frame) {
    if ((frame.type === "ok" || frame.type === "error") && this.#pending.has(frame.id)) {
      const { type, resolve, reject, timer } = this.#pending.get(frame.id);
      this.#pending.delete(frame.id);
      clearTimeout(timer);
      if (frame.type === "ok") resolve(frame);
      else reject(new AmphiError(frame.code, `'${type}': ${frame.message}`, frame));
    } else if (frame.type === "error") {
      this.#fail(new AmphiError(frame.code, frame.message, frame));
    } else if (frame.type === "event" && typeof frame.event === "string") {
      if (typeof frame.channel === "string" && Number.isInteger(frame.seq)) {
        this.#lastSeq.set(frame.channel, Math.max(this.#lastSeq.get(frame.channel) ?? 0, frame.seq));
      }
      this.#track(frame);
      this.#emit(frame.event, frame);
      this.#emit("event", frame);
    }
    // Replies to requests that timed out, and frame types newer than this client, are dropped.
  }

  /** Keeps the client's own state in step with the events that concern it. */
  #track(frame) {
    const state = this.channels.get(frame.channel);
    const session = this.audio.get(frame.channel);
    switch (frame.event) {
      case "media_offer":
        if (session) session.answer(frame.sdp);
        else this.#fail(new AmphiError("not_found", `a media_offer for '${frame.channel}', which has no audio here`));
        break;
      case "track":
        session?.setSlot(frame.mid, frame.participant, frame.identity);
        break;
      case "media_state":
        if (session) session.state = frame.state;
        break;
      case "mute_changed":
        if (state && frame.participant === state.participant) {
          state.muted = frame.muted;
          session?.setMicEnabled(!frame.muted);
        }
        break;
      case "role_changed":
        if (state && frame.participant === state.participant) state.role = frame.role;
        break;
      case "left":
        this.stopAudio(frame.channel);
        this.channels.delete(frame.channel);
        break;
    }
  }

  /**
   * Connects again and resumes the session after the network failed (docs/protocol.md §8.8):
   * channels and audio carry on, missed events arrive in order. Emits `reconnecting`, then
   * `reconnected` ({resync}: channels to join again) or `session_gone` and `close`.
   */
  async #resume() {
    for (const { reject, timer, type } of this.#pending.values()) {
      clearTimeout(timer);
      reject(new AmphiError("disconnected", `'${type}': the connection dropped before the reply`));
    }
    this.#pending.clear();
    this.#emit("reconnecting", {});
    const deadline = Date.now() + RESUME_FOR_MS;
    let backoff = 100;
    while (!this.#closing) {
      const outcome = await this.#tryResume().catch(() => null);
      if (outcome?.type === "ok") {
        this.#resumeToken = outcome.resume_token ?? this.#resumeToken;
        this.#emit("reconnected", { resync: outcome.resync ?? [] });
        return;
      }
      if (outcome?.type === "error") {
        this.#shutdown();
        this.#emit("session_gone", { message: outcome.message });
        this.#emit("close", { code: 1006, reason: "the session could not be resumed" });
        return;
      }
      if (Date.now() + backoff > deadline) break;
      // Jitter, so that a server's clients do not all come back in the same instant.
      await new Promise((r) => setTimeout(r, backoff * (1 + Math.random() / 2)));
      backoff = Math.min(backoff * 2, 2000);
    }
    this.#shutdown();
    this.#emit("close", { code: 1006, reason: "the connection was lost" });
  }

  /** One attempt: a new socket, its welcome, then `resume`; the reply frame, or null. */
  #tryResume() {
    return new Promise((resolve) => {
      const ws = new WebSocket(this.#url);
      const id = this.#nextId++;
      let welcomed = false;
      const timer = setTimeout(() => { ws.close(); resolve(null); }, WELCOME_TIMEOUT_MS);
      ws.onmessage = (message) => {
        const frame = parseFrame(message.data);
        if (!frame) return;
        if (!welcomed) {
          welcomed = frame.type === "welcome";
          ws.send(JSON.stringify({
            id, type: "resume", session: this.welcome.session,
            resume_token: this.#resumeToken, last_seq: Object.fromEntries(this.#lastSeq),
          }));
          return;
        }
        if (frame.id !== id) {
          this.#onFrame(frame);
          return;
        }
        clearTimeout(timer);
        if (frame.type === "ok") {
          this.#ws = ws;
          ws.onmessage = (m) => { const f = parseFrame(m.data); if (f) this.#onFrame(f); };
          ws.onclose = (event) => {
            if (!this.#closing && event.code === 1006 && this.channels.size > 0) this.#resume();
            else this.#onClose(event);
          };
        } else {
          ws.close(1000);
        }
        resolve(frame);
      };
      ws.onclose = () => { clearTimeout(timer); resolve(null); };
    });
  }

  #onClose(event) {
    this.#shutdown();
    this.#emit("close", { code: event.code, reason: event.reason });
  }

  #shutdown() {
    for (const { reject, timer, type } of this.#pending.values()) {
      clearTimeout(timer);
      reject(new AmphiError("disconnected", `'${type}': the connection closed before the reply`));
    }
    this.#pending.clear();
    for (const channel of [...this.audio.keys()]) this.stopAudio(channel);
    this.channels.clear();
  }
}

/**
 * One channel's peer connection. Offers come from the client; the server may renegotiate with
 * its own offers (to add receive slots). Negotiations run one at a time.
 */
class AudioSession {
  /** The channel ID. */
  channel;
  /** @type {RTCPeerConnection} */
  pc = new RTCPeerConnection({ iceServers: [] });
  /** Who each receive slot carries, from `track` events. @type {Map<string, {participant: string, identity: string}>} */
  slots = new Map();
  /** The server's view of the media path (`media_state`): "connected", "disconnected" or null. */
  state = null;
  /** The microphone track being sent, if any. @type {MediaStreamTrack | null} */
  micTrack = null;
  /** The camera track being sent, if any (a video call). @type {MediaStreamTrack | null} */
  cameraTrack = null;
  /** Players of the others' cameras, by mid (also given with `video_track` events). @type {Map<string, HTMLVideoElement>} */
  videos = new Map();

  /** @type {{request: Function, emit: Function, fail: Function}} */
  #client;
  /** @type {RTCRtpTransceiver | null} */
  #mic = null;
  #ownsMic = false;
  #offeredSlots = false;
  /** @type {RTCRtpTransceiver | null} */
  #camera = null;
  #ownsCamera = false;
  /** Hidden players of the received tracks, by mid. @type {Map<string, HTMLAudioElement>} */
  #players = new Map();
  #queue = Promise.resolve();

  /**
   * @param {string} channel
   * @param {{request: Function, emit: Function, fail: Function}} client the owning client's hooks
   */
  constructor(channel, client) {
    this.#client = client;
    this.channel = channel;
    this.pc.ontrack = (event) => this.#play(event);
    this.pc.onconnectionstatechange = () => {
      const state = this.pc.connectionState;
      client.emit("audio_state", { channel, state });
      if (state === "failed") {
        client.fail(new AmphiError("ice_failed", `the audio connection of '${channel}' failed`));
      }
    };
  }

  /** Applies the wanted publishing state and (re)negotiates. */
  async start({ publish, micStream, slots, muted, video }) {
    if (publish && !this.micTrack) {
      await this.#openMic(micStream);
      this.micTrack.enabled = !muted;
    }
    if (video && !this.cameraTrack) await this.#openCamera(video === true ? {} : video);
    // Transceivers change inside the queue so that a server renegotiation in progress is
    // answered against the m-lines it offered, not against half-applied changes.
    const negotiate = () => this.#serial(async () => {
      await this.#applyDirections({ publish, slots });
      await this.#offer();
    });
    try {
      await negotiate();
    } catch (err) {
      // The server refuses an offer that crosses its own renegotiation; that offer is queued
      // behind ours, so offering again after it settles the glare.
      if (err.code !== "conflict") throw err;
      await negotiate();
    }
  }

  /** Answers a server offer (a `media_offer` event). Failures are reported as "error" events. */
  answer(sdp) {
    this.#serial(async () => {
      await this.pc.setRemoteDescription({ type: "offer", sdp });
      await this.pc.setLocalDescription();
      await this.#client.request("media_answer", { channel: this.channel, sdp: this.pc.localDescription.sdp });
    }).catch((err) => this.#client.fail(err));
  }

  setSlot(mid, participant, identity) {
    if (participant) this.slots.set(mid, { participant, identity });
    else this.slots.delete(mid);
  }

  setMicEnabled(enabled) {
    if (this.micTrack) this.micTrack.enabled = enabled;
  }

  /** Camera off (nothing is sent; the others' players stop at the last frame) or on again. */
  async setCameraEnabled(enabled) {
    if (!this.#camera || !this.cameraTrack) return;
    await this.#camera.sender.replaceTrack(enabled ? this.cameraTrack : null);
  }

  /** Stops the camera for good (the call turned to audio): its light goes off. */
  async stopVideo() {
    if (this.#camera) await this.#camera.sender.replaceTrack(null).catch(() => {});
    this.#closeCamera();
  }

  close() {
    this.pc.close();
    for (const player of this.#players.values()) {
      player.srcObject = null;
      player.remove();
    }
    this.#players.clear();
    for (const video of this.videos.values()) video.srcObject = null;
    this.videos.clear();
    this.#closeMic();
    this.#closeCamera();
  }

  async #applyDirections({ publish, slots }) {
    if (publish) {
      if (this.#mic) {
        this.#mic.direction = "sendonly";
        await this.#mic.sender.replaceTrack(this.micTrack);
      } else {
        this.#mic = this.pc.addTransceiver(this.micTrack, { direction: "sendonly" });
        preferRed(this.#mic);
      }
    } else if (this.#mic) {
      // An m-line cannot be removed; an inactive one asks for nothing the role may not have.
      this.#mic.direction = "inactive";
      await this.#mic.sender.replaceTrack(null);
      this.#closeMic();
    }
    if (!this.#offeredSlots) {
      for (let i = 0; i < slots; i++) this.pc.addTransceiver("audio", { direction: "recvonly" });
      this.#offeredSlots = true;
    }
  }

  async #offer() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await iceGathered(this.pc, ICE_GATHERING_CAP_MS);
    let reply;
    try {
      reply = await this.#client.request("media_offer", { channel: this.channel, sdp: this.pc.localDescription.sdp });
    } catch (err) {
      if (this.pc.signalingState === "have-local-offer") await this.pc.setLocalDescription({ type: "rollback" });
      throw err;
    }
    await this.pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
  }

  async #openMic(micStream) {
    let stream = micStream;
    if (!stream) {
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (err) {
        throw new AmphiError("no_microphone", `the microphone is not available: ${err.message}`);
      }
    }
    const track = stream.getAudioTracks()[0];
    if (!track) throw new AmphiError("no_microphone", "the microphone stream has no audio track");
    this.micTrack = track;
    this.#ownsMic = !micStream;
  }

  /** Opens the camera; the first time, adds its m-line and the video receive slots. */
  async #openCamera({ stream, slots = 1 }) {
    let source = stream;
    if (!source) {
      try {
        source = await navigator.mediaDevices.getUserMedia({ video: true });
      } catch (err) {
        throw new AmphiError("no_camera", `the camera is not available: ${err.message}`);
      }
    }
    const track = source.getVideoTracks()[0];
    if (!track) throw new AmphiError("no_camera", "the camera stream has no video track");
    this.cameraTrack = track;
    this.#ownsCamera = !stream;
    if (this.#camera) {
      // Back from audio: the m-lines are there, only the track was stopped.
      await this.#camera.sender.replaceTrack(track);
      return;
    }
    this.#camera = this.pc.addTransceiver(track, { direction: "sendonly" });
    for (let i = 0; i < slots; i++) this.pc.addTransceiver("video", { direction: "recvonly" });
  }

  #closeCamera() {
    if (this.#ownsCamera) this.cameraTrack?.stop();
    this.cameraTrack = null;
    this.#ownsCamera = false;
  }

  #closeMic() {
    if (this.#ownsMic) this.micTrack?.stop();
    this.micTrack = null;
    this.#ownsMic = false;
  }

  #play({ track, transceiver, streams }) {
    const mid = transceiver.mid;
    if (track.kind === "video") {
      let video = this.videos.get(mid);
      if (!video) {
        video = document.createElement("video");
        video.autoplay = true;
        video.playsInline = true;
        video.muted = true; // the sound comes through the audio slots
        video.dataset.channel = this.channel;
        video.dataset.mid = mid;
        this.videos.set(mid, video);
      }
      video.srcObject = new MediaStream([track]);
      video.play().catch(() => {});
      const who = this.slots.get(mid);
      this.#client.emit("video_track", { channel: this.channel, mid, element: video, ...who });
      return;
    }
    let player = this.#players.get(mid);
    if (!player) {
      player = document.createElement("audio");
      player.autoplay = true;
      player.hidden = true;
      player.dataset.channel = this.channel;
      player.dataset.mid = mid;
      document.body.append(player);
      this.#players.set(mid, player);
    }
    // The server's SDP need not carry msid, in which case the track comes without a stream.
    player.srcObject = streams[0] ?? new MediaStream([track]);
    player.play().catch((err) => {
      if (err.name !== "AbortError") {
        this.#client.fail(new AmphiError("autoplay_blocked",
          `the browser would not play '${this.channel}' audio without a click: ${err.message}`));
      }
    });
  }

  #serial(task) {
    const run = this.#queue.then(task);
    this.#queue = run.catch(() => {});
    return run;
  }
}

/** Resolves when ICE gathering completes, or after `capMs`, whichever comes first. */
/**
 * Sends RED (RFC 2198: every packet also carries the frame before it) where the browser has
 * it: a lost packet then costs nothing audible. The server passes RED on to listeners that
 * negotiated it and gives the others plain Opus. Browsers send RED only when it comes first.
 */
function preferRed(transceiver) {
  const caps = globalThis.RTCRtpReceiver?.getCapabilities?.("audio");
  if (!caps || typeof transceiver.setCodecPreferences !== "function") return;
  const isRed = (c) => c.mimeType.toLowerCase() === "audio/red";
  const red = caps.codecs.filter(isRed);
  if (red.length === 0) return;
  try {
    transceiver.setCodecPreferences([...red, ...caps.codecs.filter((c) => !isRed(c))]);
  } catch {
    // The browser keeps its own order: Opus without redundancy.
  }
}

function iceGathered(pc, capMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, capMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function socketUrl(url, token) {
  const u = new URL(url, globalThis.location?.href);
  u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
  u.pathname = `${u.pathname.replace(/\/+$/, "")}/ws`;
  u.search = "";
  u.hash = "";
  u.searchParams.set("token", token);
  return u.href;
}

function parseFrame(data) {
  if (typeof data !== "string") return null;
  try {
    const frame = JSON.parse(data);
    return frame && typeof frame === "object" ? frame : null;
  } catch {
    return null;
  }
}
