// Type declarations of amphi.js (static/amphi.js in the Amphi repository), the client of the
// Amphi signalling protocol (docs/protocol.md) and of its WebRTC audio (docs/media.md).
// The module's runtime exports are AmphiClient and AmphiError; everything else here is a type.

/// <reference lib="es2022" />
/// <reference lib="dom" />

// ---- Vocabulary ----------------------------------------------------------------------------

/** Stable error codes of the protocol (docs/protocol.md §7). */
export type ErrorCode =
  | "bad_request"
  | "unknown_type"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "channel_full"
  | "role_full"
  | "busy"
  | "rate_limited"
  | "too_large"
  | "unsupported"
  | "internal"
  | "session_gone";

/**
 * Codes the client gives failures of its own: no reply in time, a closed connection, a refused
 * or failed WebSocket, no microphone or camera, audio the browser would not autoplay, a failed
 * peer connection. (`not_found` and `internal` are also used by the client: audio for a channel
 * not joined, a browser exception during a renegotiation.)
 */
export type ClientErrorCode =
  | "timeout"
  | "disconnected"
  | "connect_failed"
  | "no_microphone"
  | "no_camera"
  | "autoplay_blocked"
  | "ice_failed";

export type AmphiErrorCode = ErrorCode | ClientErrorCode;

/** Roles come from the server's role table: `host` and `audience` by default, `call` in calls. */
export type Role = string;
/** How a channel's audio reaches listeners (§3.10). */
export type MixPolicy = "forward" | "mix" | "auto";
/** What one member receives (§3.12). */
export type AudioMode = "auto" | "mixed" | "forwarded";
/** Why a member is no longer in a channel (§6). */
export type LeaveReason = "left" | "kicked" | "channel_stopped" | "disconnected" | "replaced" | "server_shutdown";
/** Why a recording or a playback stopped. */
export type StreamEnd = "stopped" | "finished" | "limit" | "error" | "channel_ended";
/** A call's media (§11.2). */
export type Media = "audio" | "video";
export type CallType = "one_to_one" | "group";
/** Why a call ended, or why one member left it (§11.7). */
export type EndReason =
  | "hangup"
  | "canceled"
  | "rejected"
  | "busy"
  | "timeout"
  | "replaced"
  | "disconnected"
  | "server_restart"
  | "terminated";

// ---- Frames --------------------------------------------------------------------------------

/** The server's first frame on a connection (§1.3). */
export interface Welcome {
  type: "welcome";
  /** The protocol version spoken: 1. */
  protocol: number;
  /** This connection's session: `s-` and 16 hex digits. */
  session: string;
  /** The token's `sub`. */
  identity: string;
  /** `amphi/<version>`. */
  server: string;
  /** The secret that resumes this session from another connection; the client keeps it. */
  resume_token: string;
}

/** A request's successful reply; result fields come beside `id` and `type`. */
export interface OkFrame {
  type: "ok";
  /** The request's id (the client numbers every request). */
  id: number;
}

/** A request's failed reply, or an error that answers no request (no `id`). */
export interface ErrorFrame {
  type: "error";
  id?: number;
  code: ErrorCode;
  /** For a person; do not parse it. */
  message: string;
  /** With `busy`: how long to wait before trying again. */
  retry_after_ms?: number;
}

/** A member as the others see it. */
export interface ParticipantInfo {
  participant: string;
  identity: string;
  /** The token's `name`, when it has one. */
  name?: string;
  role: Role;
  muted: boolean;
  /** The `metadata` given at join, when given. */
  metadata?: unknown;
}

/** The `ok` reply of `join` (§3.1). */
export interface JoinReply extends OkFrame {
  /** The channel ID (`uri-…` for a join by URI): use it in every later request. */
  channel: string;
  participant: string;
  role: Role;
  /** The seq of this member's own `participant_joined`; later events have higher ones. */
  seq: number;
  /** Every member on stage (roles with `publish`), this one included if on stage. */
  hosts: ParticipantInfo[];
  /** Members whose role lacks `publish`. */
  audience_count: number;
  /** Every member; only for roles with `list_participants`. */
  participants?: ParticipantInfo[];
  mix: MixPolicy;
  mixing: boolean;
  audio: AudioMode;
  /** The file the channel's mix is being recorded to, while it is. */
  recording?: string;
}

/** One row of a call log (§11.11). */
export interface CallLog {
  call_id: string;
  user: string;
  call_type: CallType;
  media: Media;
  direction: "incoming" | "outgoing";
  peers: string[];
  start_ms: number;
  connect_ms: number | null;
  end_ms: number | null;
  duration_ms: number | null;
  end_reason: EndReason | null;
  end_note?: string;
  ring_ms: number | null;
  answer_ms: number | null;
  first_audio_ms: number | null;
}

// ---- Events --------------------------------------------------------------------------------

/** An event of a channel: every receiver sees a rising `seq`, with gaps for others' events. */
export interface ChannelEventFrame<E extends string> {
  type: "event";
  event: E;
  channel: string;
  seq: number;
}

/** An event of this connection's own peer connection in a channel: no `seq` (§12). */
export interface MediaEventFrame<E extends string> {
  type: "event";
  event: E;
  channel: string;
}

/** An event of a call: `call_id` instead of `channel`, and the call's own `seq` (§11.2). */
export interface CallEventFrame<E extends string> {
  type: "event";
  event: E;
  call_id: string;
  seq: number;
  /** For a proxy's copy: the identities the event was addressed to. */
  observed_for?: string[];
}

/**
 * A call event that is also sent, without `seq` and with `resumed: true`, to a connection that
 * comes online while the call rings it or it is in the call (§11.1).
 */
export interface ResumableCallEventFrame<E extends string> extends Omit<CallEventFrame<E>, "seq"> {
  seq?: number;
  resumed?: true;
}

/** A call event outside the call's state: no `seq`, not copied to proxies. */
export interface CallRelayFrame<E extends string> {
  type: "event";
  event: E;
  call_id: string;
}

export interface ParticipantJoinedEvent extends ChannelEventFrame<"participant_joined">, ParticipantInfo {}
export interface ParticipantLeftEvent extends ChannelEventFrame<"participant_left"> {
  participant: string;
  identity: string;
  reason: "left" | "kicked" | "disconnected" | "replaced";
}
export interface RoleChangedEvent extends ChannelEventFrame<"role_changed"> {
  participant: string;
  identity: string;
  role: Role;
}
export interface RoleRequestedEvent extends ChannelEventFrame<"role_requested"> {
  participant: string;
  identity: string;
  role: Role;
}
export interface MuteChangedEvent extends ChannelEventFrame<"mute_changed"> {
  participant: string;
  muted: boolean;
  /** The moderator who changed someone else's state; absent for one's own change. */
  by?: string;
  /** Changed through the admin API. */
  admin?: true;
}
export interface MixChangedEvent extends ChannelEventFrame<"mix_changed"> {
  policy: MixPolicy;
  mixing: boolean;
}
export interface RecordingStartedEvent extends ChannelEventFrame<"recording_started"> {
  file: string;
}
export interface RecordingStoppedEvent extends ChannelEventFrame<"recording_stopped"> {
  file: string;
  reason: StreamEnd;
  bytes: number;
  duration_ms: number;
}
export interface PlaybackStartedEvent extends ChannelEventFrame<"playback_started"> {
  file: string;
  participant: string;
}
export interface PlaybackStoppedEvent extends ChannelEventFrame<"playback_stopped"> {
  file: string;
  participant: string;
  reason: StreamEnd;
}
/** This member is out of the channel; the client has forgotten it (and closed its audio). */
export interface LeftEvent extends ChannelEventFrame<"left"> {
  reason: "kicked" | "replaced" | "channel_stopped" | "server_shutdown";
  /** The kicker's reason, when it gave one. */
  message?: string;
}
export interface AudienceCountEvent extends ChannelEventFrame<"audience_count"> {
  count: number;
}
export interface ChannelMessageEvent extends ChannelEventFrame<"message"> {
  /** The sender's participant ID; null for a message the app sent through the admin API. */
  from: string | null;
  identity: string | null;
  kind: string;
  content: unknown;
}
export interface PublishingPausedEvent extends ChannelEventFrame<"publishing_paused"> {
  participant: string;
  identity: string;
  paused: boolean;
  call_id: string;
}
export interface ActiveSpeakerEvent extends ChannelEventFrame<"active_speaker"> {
  /** null once no audio has arrived for a while. */
  participant: string | null;
}
export interface AudioLevelsEvent extends ChannelEventFrame<"audio_levels"> {
  /** `volume` from 0 (silence) to 255 (full scale); `vad` the sender's voice-activity flag. */
  speakers: { participant: string; volume: number; vad: boolean }[];
  total_volume: number;
}

/** The server renegotiates; the client answers by itself. */
export interface MediaOfferEvent extends MediaEventFrame<"media_offer"> {
  sdp: string;
}
/** Who a receive slot carries; `null`s when the slot is freed or carries the mix. */
export interface MediaTrackEvent extends MediaEventFrame<"track"> {
  mid: string;
  participant: string | null;
  identity: string | null;
}
export interface MediaStateEvent extends MediaEventFrame<"media_state"> {
  state: "connected" | "disconnected" | "closed";
}
export interface QualityEvent extends MediaEventFrame<"quality"> {
  direction: "receive" | "send";
  mid: string;
  rtt_ms: number | null;
  loss: number | null;
  jitter_ms: number | null;
}

export interface CallIncomingEvent extends ResumableCallEventFrame<"call_incoming"> {
  caller: string;
  invited_by: string;
  /** Everyone present at the invitation, the invitee included. */
  members: string[];
  call_type: CallType;
  media: Media;
  /** The caller's `extra`; null when it gave none. */
  extra: unknown;
}
export interface CallRingingEvent extends ResumableCallEventFrame<"call_ringing"> {
  callees: string[];
  /** Callees no device of theirs hears ringing yet (offline, or blocking the caller). */
  offline: string[];
}
export interface CallConnectedEvent extends ResumableCallEventFrame<"call_connected"> {
  /** Unix ms when the call first connected: the same for every member. */
  start_time: number;
  media: Media;
  /** The call's private channel, `call:<call ID>`: join it for audio. */
  channel: string;
}
export interface ParticipantStateEvent extends CallEventFrame<"participant_state"> {
  user: string;
  state: "ringing" | "connected" | "left";
  /** With `left`. */
  reason?: EndReason;
  /** With `left`, when the member left with one. */
  note?: string;
  /** The member's connection dropped and its reconnect grace runs. */
  reconnecting: boolean;
}
export interface CallMissedEvent extends CallEventFrame<"call_missed"> {
  user: string;
  /** Only for a busy invitee, with `reason`. */
  caller?: string;
  reason?: "busy";
}
export interface CallEndedEvent extends CallEventFrame<"call_ended"> {
  reason: EndReason;
  note?: string;
}
export interface CallTypeChangedEvent extends CallEventFrame<"call_type_changed"> {
  call_type: CallType;
}
export interface MediaChangeRequestedEvent extends CallEventFrame<"media_change_requested"> {
  transaction: string;
  media: Media;
  by: string;
}
export interface MediaChangeResultEvent extends CallEventFrame<"media_change_result"> {
  transaction: string;
  result: "accepted" | "rejected" | "canceled" | "timeout";
  /** The call's media after the handshake. */
  media: Media;
}
export interface CallMessageEvent extends CallRelayFrame<"call_message"> {
  /** The sender's identity. */
  from: string;
  kind: string;
  content: unknown;
}
export interface RemoteMediaStateEvent extends CallRelayFrame<"remote_media_state"> {
  user: string;
  microphone: boolean | null;
  camera: boolean | null;
}
/** A ringing callee that had no device online now has one: it rings there. */
export interface CalleeOnlineEvent extends CallRelayFrame<"callee_online"> {
  user: string;
}
export interface CallLogEvent extends CallRelayFrame<"call_log"> {
  log: CallLog;
}

/** Every protocol event, by name: each is dispatched under its name and again as "event". */
export interface ServerEvents {
  participant_joined: ParticipantJoinedEvent;
  participant_left: ParticipantLeftEvent;
  role_changed: RoleChangedEvent;
  role_requested: RoleRequestedEvent;
  mute_changed: MuteChangedEvent;
  mix_changed: MixChangedEvent;
  recording_started: RecordingStartedEvent;
  recording_stopped: RecordingStoppedEvent;
  playback_started: PlaybackStartedEvent;
  playback_stopped: PlaybackStoppedEvent;
  left: LeftEvent;
  audience_count: AudienceCountEvent;
  message: ChannelMessageEvent;
  publishing_paused: PublishingPausedEvent;
  active_speaker: ActiveSpeakerEvent;
  audio_levels: AudioLevelsEvent;
  media_offer: MediaOfferEvent;
  track: MediaTrackEvent;
  media_state: MediaStateEvent;
  quality: QualityEvent;
  call_incoming: CallIncomingEvent;
  call_ringing: CallRingingEvent;
  call_connected: CallConnectedEvent;
  participant_state: ParticipantStateEvent;
  call_missed: CallMissedEvent;
  call_ended: CallEndedEvent;
  call_type_changed: CallTypeChangedEvent;
  media_change_requested: MediaChangeRequestedEvent;
  media_change_result: MediaChangeResultEvent;
  call_message: CallMessageEvent;
  remote_media_state: RemoteMediaStateEvent;
  callee_online: CalleeOnlineEvent;
  call_log: CallLogEvent;
}

/** Any protocol event (a newer server may send names not listed here). */
export type ServerEvent = ServerEvents[keyof ServerEvents];

/** `detail` of "video_track": a playing `<video>` of another member's camera, to be placed. */
export interface VideoTrackDetail {
  channel: string;
  mid: string;
  element: HTMLVideoElement;
  /** Who the slot carries, when a `track` event has said so already. */
  participant?: string;
  identity?: string;
}

/** The client's events, all CustomEvents, by name. */
export type AmphiEventMap = { [K in keyof ServerEvents]: CustomEvent<ServerEvents[K]> } & {
  /** Every protocol event again, under one name. */
  event: CustomEvent<ServerEvent>;
  /** A channel's peer connection changed its connectionState. */
  audio_state: CustomEvent<{ channel: string; state: RTCPeerConnectionState }>;
  video_track: CustomEvent<VideoTrackDetail>;
  /** A failure that rejected no promise: an error frame answering no request, a failed renegotiation, autoplay refused, ICE failed. */
  error: CustomEvent<AmphiError>;
  /** The WebSocket has closed for good (after a failed resume: code 1006). */
  close: CustomEvent<{ code: number; reason: string }>;
  /** The connection dropped while in a channel; the client is resuming the session. */
  reconnecting: CustomEvent<Record<string, never>>;
  /** The session is back; `resync`: channels whose missed events were not all kept (join them again). */
  reconnected: CustomEvent<{ resync: string[] }>;
  /** The server would not resume the session; "close" follows. */
  session_gone: CustomEvent<{ message: string }>;
};

// ---- Requests ------------------------------------------------------------------------------

export interface RequestOptions {
  /** How long to wait for the reply before rejecting with "timeout" (default 15000). */
  timeoutMs?: number;
}

export interface ConnectOptions {
  /** How long to wait for the server's welcome (default 10000). */
  timeoutMs?: number;
}

/** A proxy (`proxy` grant) acting for another identity (§11.12). */
interface ActingAs {
  as?: string;
}

/** Each request type's params (without `id` and `type`) and its `ok` reply. */
export interface Requests {
  join: {
    params: { channel: string; uri?: boolean; role?: Role; metadata?: unknown; audio?: AudioMode };
    result: JoinReply;
  };
  leave: { params: { channel: string }; result: OkFrame };
  stop: { params: { channel: string }; result: OkFrame };
  set_role: { params: { channel: string; role: Role; participant?: string }; result: OkFrame };
  request_role: { params: { channel: string; role: Role }; result: OkFrame };
  mute: { params: { channel: string; muted: boolean; participant?: string }; result: OkFrame };
  set_mix: { params: { channel: string; policy: MixPolicy }; result: OkFrame };
  set_volume: { params: { channel: string; participant: string; gain: number }; result: OkFrame };
  set_audio: { params: { channel: string; audio: AudioMode }; result: OkFrame };
  kick: { params: { channel: string; participant: string; reason?: string }; result: OkFrame };
  unban: { params: { channel: string; identity: string }; result: OkFrame };
  send: {
    params:
      | { channel: string; kind: string; content: unknown; to?: string[] }
      | { call_id: string; kind: string; content: unknown };
    result: OkFrame;
  };
  ping: { params: {}; result: OkFrame & { time_ms: number } };
  resume: {
    params: { session: string; resume_token: string; last_seq?: Record<string, number> };
    result: OkFrame & { session: string; channels: string[]; resume_token: string; resync: string[] };
  };
  media_offer: { params: { channel: string; sdp: string }; result: OkFrame & { sdp: string } };
  media_answer: { params: { channel: string; sdp: string }; result: OkFrame };
  media_candidate: { params: { channel: string; candidate: string }; result: OkFrame };
  call: {
    params: ActingAs & {
      callees: string[];
      media: Media;
      extra?: unknown;
      push?: unknown;
      live_channel?: string;
    };
    result: OkFrame & { call_id: string; busy: string[]; channel: string; glare?: true };
  };
  accept: { params: ActingAs & { call_id: string; media?: Media }; result: OkFrame };
  reject: {
    params: ActingAs & { call_id: string; reason?: "rejected" | "busy"; note?: string };
    result: OkFrame;
  };
  hangup: {
    params: ActingAs & { call_id?: string; reason?: "hangup" | "disconnected"; note?: string };
    result: OkFrame;
  };
  invite: {
    params: ActingAs & { call_id: string; callees: string[] };
    result: OkFrame & { busy: string[]; invited: string[] };
  };
  join_call: { params: ActingAs & { call_id: string }; result: OkFrame };
  media_change: {
    params: ActingAs & { call_id: string; media: Media };
    result: OkFrame & { transaction: string };
  };
  media_change_cancel: { params: ActingAs & { transaction: string }; result: OkFrame };
  media_change_reply: { params: ActingAs & { transaction: string; agree: boolean }; result: OkFrame };
  call_media_state: {
    params: ActingAs & { call_id: string; microphone?: boolean; camera?: boolean };
    result: OkFrame;
  };
  call_logs: {
    params: { start_time?: number; count?: number; order?: "asc" | "desc"; after?: string };
    result: OkFrame & {
      logs: CallLog[];
      has_more: boolean;
      sync_time: number;
      next: { start_ms: number; after: string } | null;
    };
  };
  ongoing_calls: { params: {}; result: OkFrame & { logs: CallLog[] } };
  delete_call_logs: { params: { call_ids: string[] }; result: OkFrame & { deleted: number } };
  delete_all_call_logs: { params: {}; result: OkFrame & { deleted: number } };
  block: { params: ActingAs & { user: string }; result: OkFrame & { blocked: string[] } };
  unblock: { params: ActingAs & { user: string }; result: OkFrame & { blocked: string[] } };
  blocked_users: { params: ActingAs; result: OkFrame & { blocked: string[] } };
  /** Which of `users` a call would ring now (1-100 identities). */
  presence: { params: { users: string[] }; result: OkFrame & { online: string[] } };
}

export type RequestType = keyof Requests;

/** `request`'s arguments after the type: params may be left out when none is required. */
type RequestArgs<T extends RequestType> = {} extends Requests[T]["params"]
  ? [params?: Requests[T]["params"], options?: RequestOptions]
  : [params: Requests[T]["params"], options?: RequestOptions];

// ---- The client ----------------------------------------------------------------------------

/** What the client keeps about a channel it is in. */
export interface ChannelState {
  channel: string;
  participant: string;
  /** Follows `role_changed` events about this member. */
  role: Role;
  /** Follows `mute_changed` events about this member and `setMuted`. */
  muted: boolean;
  reply: JoinReply;
}

export interface JoinOptions {
  /** Shown to the others in this member's description; any JSON, at most 4096 bytes. */
  metadata?: unknown;
  /** `channel` is a URI, mapped by the server to a `uri-…` channel ID. */
  uri?: boolean;
  /** What this member receives: the mix, each speaker's track, or what the channel does. */
  audio?: AudioMode;
}

export interface StartAudioOptions {
  /** Send a microphone: `micStream`'s first audio track, else one from getUserMedia. */
  publish?: boolean;
  micStream?: MediaStream;
  /** Receive slots to offer, one per expected speaker (default 3; the server adds more). */
  slots?: number;
  /** Call channels only: send a camera and receive `slots` others' cameras (default 1). */
  video?: boolean | { stream?: MediaStream; slots?: number };
}

/**
 * One channel's peer connection (not exported as a value: obtained from `startAudio` and
 * `client.audio`).
 */
export interface AudioSession {
  readonly channel: string;
  readonly pc: RTCPeerConnection;
  /** Who each receive slot carries, by mid, from `track` events. */
  readonly slots: Map<string, { participant: string; identity: string }>;
  /** The server's view of the media path, from `media_state` events; null before the first. */
  state: "connected" | "disconnected" | "closed" | null;
  /** The microphone track being sent, if any. */
  micTrack: MediaStreamTrack | null;
  /** The camera track being sent, if any (a video call). */
  cameraTrack: MediaStreamTrack | null;
  /** Players of the others' cameras, by mid. */
  readonly videos: Map<string, HTMLVideoElement>;
  /** Applies the wanted publishing state and (re)negotiates; `startAudio` calls it. */
  start(options: {
    publish?: boolean;
    micStream?: MediaStream;
    slots: number;
    muted: boolean;
    video?: StartAudioOptions["video"];
  }): Promise<void>;
  /** Answers a server offer; failures become "error" events. The client calls it itself. */
  answer(sdp: string): void;
  setSlot(mid: string, participant: string | null, identity: string | null): void;
  /** Enables or disables the microphone track (nothing is sent while disabled). */
  setMicEnabled(enabled: boolean): void;
  /** Camera off (nothing is sent) or on again. */
  setCameraEnabled(enabled: boolean): Promise<void>;
  /** Stops the camera for good (the call turned to audio). */
  stopVideo(): Promise<void>;
  /** Closes the peer connection and its players; stops a microphone or camera it opened. */
  close(): void;
}

/** An error with a stable `code`; `frame` is the server's error frame when there is one. */
export class AmphiError extends Error {
  constructor(code: AmphiErrorCode | (string & {}), message: string, frame?: AmphiError["frame"]);
  name: "AmphiError";
  code: AmphiErrorCode | (string & {});
  /**
   * The server's error frame for a protocol code; with `connect_failed`, the first frame the
   * server sent if it was not a welcome (any JSON object, or null when it was not JSON);
   * otherwise undefined.
   */
  frame: ErrorFrame | Readonly<Record<string, unknown>> | null | undefined;
}

/**
 * The client: one WebSocket to the server, and per joined channel an optional peer connection
 * for its audio. Create it with {@link AmphiClient.connect}.
 */
export class AmphiClient extends EventTarget {
  /**
   * Opens the signalling connection and resolves once the server has sent `welcome`.
   * @param url the server's base URL, http(s):// or ws(s):// (relative URLs resolve against
   *   the page's location in a browser)
   * @param token an access token (JWT)
   */
  static connect(url: string | URL, token: string, options?: ConnectOptions): Promise<AmphiClient>;

  /** The server's `welcome` frame; set once `connect` has resolved. */
  welcome: Welcome | null;
  /** The channels this client is in, by channel ID. */
  channels: Map<string, ChannelState>;
  /** Audio sessions by channel ID. */
  audio: Map<string, AudioSession>;
  /** The peer connection of the most recently started audio session, for getStats(). */
  get pc(): RTCPeerConnection | null;

  /**
   * Sends a request and resolves with its `ok` frame; rejects with an {@link AmphiError}
   * carrying the error frame's `code`, or "timeout" / "disconnected".
   */
  request<T extends RequestType>(type: T, ...args: RequestArgs<T>): Promise<Requests[T]["result"]>;
  /** A request type these declarations do not know (a newer server's). */
  request<T extends string>(
    type: T extends RequestType ? never : T,
    params?: object,
    options?: RequestOptions,
  ): Promise<OkFrame & Record<string, unknown>>;

  /** Joins a channel (the server's default role when `role` is left out). */
  join(channel: string, role?: Role, options?: JoinOptions): Promise<JoinReply>;
  /** Leaves a channel, closing its audio first; the channel is forgotten even if it fails. */
  leave(channel: string): Promise<void>;
  /**
   * Mutes or unmutes yourself; the microphone track is disabled before a mute and enabled
   * only after the server agreed to an unmute.
   */
  setMuted(channel: string, muted: boolean): Promise<void>;
  /** What you receive from now on. */
  setAudio(channel: string, audio: AudioMode): Promise<OkFrame>;
  /** How the channel's audio reaches listeners (roles with `stop` or `moderate`). */
  setMix(channel: string, policy: MixPolicy): Promise<OkFrame>;
  /** A speaker's level in the mix, 0.0 (silent) to 2.0; 1.0 unchanged (moderators). */
  setVolume(channel: string, participant: string, gain: number): Promise<OkFrame>;
  /** Asks the channel's moderators for a role ("raise hand"). */
  requestRole(channel: string, role: Role): Promise<OkFrame>;
  /** Changes your role, or another participant's (needs `moderate`). */
  setRole(channel: string, role: Role, participant?: string): Promise<OkFrame>;
  /**
   * Sends an application message to the channel, or to the participant IDs in `to`.
   * `content` is any JSON value, null included (undefined is refused by the server).
   */
  send(channel: string, kind: string, content: unknown, to?: string[]): Promise<OkFrame>;
  /** Starts the channel's audio, or renegotiates it when it is already running. */
  startAudio(channel: string, options?: StartAudioOptions): Promise<AudioSession>;
  /** Closes the channel's peer connection and its players, and stops a microphone it opened. */
  stopAudio(channel: string): void;
  /** Closes the connection; the server treats the channels as left with reason `disconnected`. */
  close(): void;

  addEventListener<K extends keyof AmphiEventMap>(
    type: K,
    listener: (this: AmphiClient, event: AmphiEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof AmphiEventMap>(
    type: K,
    listener: (this: AmphiClient, event: AmphiEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
