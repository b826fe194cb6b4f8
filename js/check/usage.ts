// Compiled, never run (`npm run check`): the declarations accept what amphi.js accepts and
// refuse what the server would refuse. Each @ts-expect-error fails the check if it compiles.

import { AmphiClient, AmphiError } from "amphi-client";
import type { AudioSession, CallLog, JoinReply, ServerEvent } from "amphi-client";

export async function usage(token: string): Promise<void> {
  const amphi = await AmphiClient.connect("https://audio.example.test", token, { timeoutMs: 5000 });
  const me: string | undefined = amphi.welcome?.identity;

  amphi.addEventListener("participant_joined", (e) => {
    const who: string = e.detail.identity;
    const seq: number = e.detail.seq;
    void [who, seq, me];
  });
  amphi.addEventListener("mute_changed", (e) => {
    const by: string | undefined = e.detail.by;
    void by;
  });
  amphi.addEventListener("call_incoming", (e) => {
    const resumed: true | undefined = e.detail.resumed;
    const seq: number | undefined = e.detail.seq;
    void [resumed, seq, e.detail.caller];
  });
  amphi.addEventListener("error", (e) => {
    if (e.detail.code === "busy") console.log(e.detail.frame);
  });
  amphi.addEventListener("close", (e) => console.log(e.detail.code, e.detail.reason));
  amphi.addEventListener("event", (e) => {
    const frame: ServerEvent = e.detail;
    if (frame.event === "left") console.log(frame.channel, frame.reason);
    if (frame.event === "call_ended") console.log(frame.call_id, frame.reason);
  });
  amphi.addEventListener("some_future_event", (e) => console.log(e.type));

  const reply: JoinReply = await amphi.join("lobby", "host", { metadata: { seat: 1 }, audio: "mixed" });
  const hosts: string[] = reply.hosts.map((p) => p.identity);
  void hosts;
  await amphi.join("https://example.test/room", undefined, { uri: true });
  await amphi.setMuted("lobby", true);
  await amphi.send("lobby", "chat", { text: "hi" }, [reply.participant]);
  await amphi.setRole("lobby", "audience");
  const session: AudioSession = await amphi.startAudio("lobby", { publish: true, slots: 4 });
  session.setMicEnabled(false);
  const stats = await amphi.pc?.getStats();
  void stats;

  const time: number = (await amphi.request("ping")).time_ms;
  void time;
  const call = await amphi.request("call", { callees: ["bob"], media: "audio" });
  const channel: string = call.channel;
  await amphi.request("hangup");
  await amphi.request("send", { call_id: call.call_id, kind: "chat", content: null });
  const logs: CallLog[] = (await amphi.request("call_logs", { count: 10 })).logs;
  const other = await amphi.request("future_request", { anything: 1 });
  void [channel, logs, other];

  try {
    await amphi.leave("lobby");
  } catch (err) {
    if (err instanceof AmphiError && err.code === "not_found") console.log(err.message);
  }
  amphi.close();

  // @ts-expect-error a call needs its media
  await amphi.request("call", { callees: ["bob"] });
  // @ts-expect-error join needs a channel
  await amphi.request("join");
  // @ts-expect-error not a mix policy
  await amphi.setMix("lobby", "mixed");
  // @ts-expect-error a known request with a misspelt param
  await amphi.request("leave", { chanel: "lobby" });
  // @ts-expect-error the detail of "participant_left" has no `role`
  amphi.addEventListener("participant_left", (e) => console.log(e.detail.role));
  // @ts-expect-error hangup reasons are hangup or disconnected
  await amphi.request("hangup", { reason: "busy" });
}
