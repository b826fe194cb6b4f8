// Channel signalling through AmphiClient against a real server: connect, join, the events
// the others see, roles, mutes, messages, errors and leaving. No audio (Node has no WebRTC).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AmphiClient, AmphiError } from "amphi-client";
import { nextEvent, record, sockets, startServer, unique } from "./support.mjs";

let server;
const clients = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const client of clients) client.close();
  await server?.stop();
});

/** A connected client for a fresh identity; `role` is the one role its token allows. */
async function connect(prefix, options = {}) {
  const identity = unique(prefix);
  const client = await AmphiClient.connect(server.url, await server.token(identity, options));
  clients.push(client);
  return client;
}

/** Rejects with what `promise` rejected with, or fails when it resolved. */
async function rejection(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail("expected a rejection");
}

describe("connecting", () => {
  test("connect resolves once the server's welcome arrived", async () => {
    const identity = unique("welcome");
    const client = await AmphiClient.connect(server.url, await server.token(identity));
    clients.push(client);
    assert.ok(client instanceof EventTarget);
    assert.equal(client.welcome.type, "welcome");
    assert.equal(client.welcome.protocol, 1);
    assert.equal(client.welcome.identity, identity);
    assert.match(client.welcome.session, /^s-[0-9a-f]{16}$/);
    assert.match(client.welcome.server, /^amphi\//);
    assert.equal(typeof client.welcome.resume_token, "string");
    assert.equal(client.channels.size, 0);
    assert.equal(client.pc, null);
    const pong = await client.request("ping");
    assert.equal(pong.type, "ok");
    assert.ok(Math.abs(pong.time_ms - Date.now()) < 60_000, `server clock ${pong.time_ms}`);
  });

  test("a ws:// base URL with a trailing slash works like http://", async () => {
    const client = await AmphiClient.connect(server.url.replace("http:", "ws:") + "/",
      await server.token(unique("wsurl")));
    clients.push(client);
    assert.equal(client.welcome.type, "welcome");
  });

  test("a token the server refuses fails with connect_failed", async () => {
    const err = await rejection(AmphiClient.connect(server.url, "not-a-jwt"));
    assert.ok(err instanceof AmphiError);
    assert.equal(err.name, "AmphiError");
    assert.equal(err.code, "connect_failed");
  });
});

describe("joining", () => {
  test("a host's join reply puts it on stage and lists the participants", async () => {
    const channel = unique("stage");
    const host = await connect("host", { role: "host" });
    const reply = await host.join(channel, "host", { metadata: { seat: 1 } });
    assert.equal(reply.type, "ok");
    assert.equal(reply.channel, channel);
    assert.equal(reply.role, "host");
    assert.match(reply.participant, /^p-[0-9a-f]{16}$/);
    assert.equal(reply.seq, 1);
    assert.equal(reply.audience_count, 0);
    assert.equal(reply.mix, "forward");
    assert.equal(reply.mixing, false);
    assert.equal(reply.audio, "auto");
    assert.deepEqual(reply.hosts, [{
      participant: reply.participant, identity: host.welcome.identity, role: "host",
      muted: false, metadata: { seat: 1 },
    }]);
    assert.deepEqual(reply.participants, reply.hosts);
    assert.deepEqual(host.channels.get(channel), {
      channel, participant: reply.participant, role: "host", muted: false, reply,
    });
  });

  test("audience joins reach the host as participant_joined, seq rising with each", async () => {
    const channel = unique("joins");
    const host = await connect("host", { role: "host" });
    const hostReply = await host.join(channel, "host");
    const joined = record(host, "participant_joined");
    const counted = nextEvent(host, "audience_count", (e) => e.channel === channel);

    const first = await connect("fan");
    const firstSeen = nextEvent(host, "participant_joined", (e) => e.identity === first.welcome.identity);
    const firstReply = await first.join(channel);
    const firstEvent = await firstSeen;

    const second = await connect("fan");
    const secondSeen = nextEvent(host, "participant_joined", (e) => e.identity === second.welcome.identity);
    const secondReply = await second.join(channel, "audience");
    const secondEvent = await secondSeen;

    // An audience join's reply shows the stage, not the whole room.
    assert.equal(firstReply.role, "audience");
    assert.equal(firstReply.participants, undefined);
    assert.deepEqual(firstReply.hosts.map((p) => p.participant), [hostReply.participant]);
    assert.equal(first.channels.get(channel).role, "audience");

    for (const [event, reply] of [[firstEvent, firstReply], [secondEvent, secondReply]]) {
      assert.equal(event.type, "event");
      assert.equal(event.event, "participant_joined");
      assert.equal(event.channel, channel);
      assert.equal(event.participant, reply.participant);
      assert.equal(event.role, "audience");
      assert.equal(event.muted, false);
      // The joiner's reply carries the seq of the participant_joined the others see.
      assert.equal(event.seq, reply.seq);
    }
    assert.ok(firstEvent.seq > hostReply.seq, `${firstEvent.seq} > ${hostReply.seq}`);
    assert.ok(secondEvent.seq > firstEvent.seq, `${secondEvent.seq} > ${firstEvent.seq}`);
    assert.deepEqual(joined.map((e) => e.identity),
      [first.welcome.identity, second.welcome.identity]);
    assert.ok((await counted).count >= 1);
  });

  test("each protocol event also arrives as 'event'", async () => {
    const channel = unique("generic");
    const host = await connect("host", { role: "host" });
    await host.join(channel, "host");
    const guest = await connect("guest", { role: "host" });
    const generic = nextEvent(host, "event", (e) => e.event === "participant_joined");
    const specific = nextEvent(host, "participant_joined");
    await guest.join(channel, "host");
    assert.deepEqual(await generic, await specific);
  });
});

describe("roles and mutes", () => {
  test("a moderator's set_role reaches both, and the promoted client's state follows", async () => {
    const channel = unique("promote");
    const host = await connect("host", { role: "host" });
    await host.join(channel, "host");
    const fan = await connect("fan");
    const fanReply = await fan.join(channel);

    // Taking host alone is refused: host is not self-assignable, and the token lacks it.
    const refused = await rejection(fan.setRole(channel, "host"));
    assert.equal(refused.code, "forbidden");

    const raised = nextEvent(host, "role_requested", (e) => e.channel === channel);
    await fan.requestRole(channel, "host");
    const request = await raised;
    assert.equal(request.participant, fanReply.participant);
    assert.equal(request.role, "host");

    const atHost = nextEvent(host, "role_changed", (e) => e.participant === fanReply.participant);
    const atFan = nextEvent(fan, "role_changed", (e) => e.participant === fanReply.participant);
    const ok = await host.setRole(channel, "host", fanReply.participant);
    assert.equal(ok.type, "ok");
    const [hostView, fanView] = await Promise.all([atHost, atFan]);
    assert.equal(hostView.role, "host");
    assert.equal(hostView.identity, fan.welcome.identity);
    assert.deepEqual(fanView, hostView);
    assert.ok(hostView.seq > request.seq);
    assert.equal(fan.channels.get(channel).role, "host");
  });

  test("a self-mute is announced without 'by' and kept in the client's state", async () => {
    const channel = unique("selfmute");
    const host = await connect("host", { role: "host" });
    const hostReply = await host.join(channel, "host");
    const other = await connect("cohost", { role: "host" });
    await other.join(channel, "host");

    const seen = nextEvent(other, "mute_changed", (e) => e.participant === hostReply.participant);
    await host.setMuted(channel, true);
    const event = await seen;
    assert.equal(event.muted, true);
    assert.equal(event.by, undefined);
    assert.equal(host.channels.get(channel).muted, true);

    const unmuted = nextEvent(other, "mute_changed", (e) => e.participant === hostReply.participant);
    await host.setMuted(channel, false);
    assert.equal((await unmuted).muted, false);
    assert.equal(host.channels.get(channel).muted, false);
  });

  test("a moderator's mute locks the member, whose own unmute is forbidden", async () => {
    const channel = unique("lock");
    const host = await connect("host", { role: "host" });
    const hostReply = await host.join(channel, "host");
    const fan = await connect("fan");
    const fanReply = await fan.join(channel);

    const atFan = nextEvent(fan, "mute_changed", (e) => e.participant === fanReply.participant);
    await host.request("mute", { channel, muted: true, participant: fanReply.participant });
    const event = await atFan;
    assert.equal(event.muted, true);
    assert.equal(event.by, hostReply.participant);
    assert.equal(fan.channels.get(channel).muted, true);

    const err = await rejection(fan.setMuted(channel, false));
    assert.ok(err instanceof AmphiError);
    assert.equal(err.code, "forbidden");
    assert.equal(err.frame.type, "error");
    assert.equal(err.frame.code, "forbidden");
    assert.equal(fan.channels.get(channel).muted, true);
  });
});

describe("messages", () => {
  test("a message reaches the channel, and one with 'to' only its recipient", async () => {
    const channel = unique("chat");
    const host = await connect("host", { role: "host" });
    const hostReply = await host.join(channel, "host");
    const fan = await connect("fan");
    const fanReply = await fan.join(channel);
    const bystander = await connect("bystander");
    await bystander.join(channel);
    const heard = record(bystander, "message");

    const atFan = nextEvent(fan, "message", (e) => e.kind === "chat");
    await host.send(channel, "chat", { text: "hello", n: 1 });
    const chat = await atFan;
    assert.equal(chat.channel, channel);
    assert.equal(chat.from, hostReply.participant);
    assert.equal(chat.identity, host.welcome.identity);
    assert.deepEqual(chat.content, { text: "hello", n: 1 });

    const atHost = nextEvent(host, "message", (e) => e.kind === "dm");
    await fan.send(channel, "dm", "psst", [hostReply.participant]);
    const dm = await atHost;
    assert.equal(dm.from, fanReply.participant);
    assert.equal(dm.content, "psst");

    // The channel keeps its order, so once this broadcast arrives the direct message would
    // have arrived before it, had it been sent to the bystander.
    const last = nextEvent(bystander, "message", (e) => e.kind === "last");
    await fan.send(channel, "last", null);
    await last;
    assert.deepEqual(heard.map((e) => e.kind), ["chat", "last"]);
  });
});

describe("errors", () => {
  test("joining with a role the token does not allow is forbidden", async () => {
    const channel = unique("forbidden");
    const fan = await connect("fan");
    const err = await rejection(fan.join(channel, "host"));
    assert.ok(err instanceof AmphiError);
    assert.ok(err instanceof Error);
    assert.equal(err.code, "forbidden");
    assert.match(err.message, /^'join': /);
    assert.equal(err.frame.type, "error");
    assert.equal(err.frame.code, "forbidden");
    assert.equal(typeof err.frame.message, "string");
    assert.equal(fan.channels.has(channel), false);
    // The connection stays usable.
    const reply = await fan.join(channel);
    assert.equal(reply.role, "audience");
  });

  test("bad requests get their protocol codes", async () => {
    const fan = await connect("fan");
    const channel = unique("codes");
    assert.equal((await rejection(fan.join(channel, "no-such-role"))).code, "bad_request");
    assert.equal((await rejection(fan.request("teleport", { channel }))).code, "unknown_type");
    assert.equal((await rejection(fan.setMix(channel, "mix"))).code, "not_found");
    await fan.join(channel);
    assert.equal((await rejection(fan.join(channel))).code, "conflict");
    assert.equal((await rejection(fan.setMix(channel, "mix"))).code, "forbidden");
    assert.equal((await rejection(fan.request("join", { channel: "bad id!" }))).code, "bad_request");
  });

  test("requests after close fail with disconnected", async () => {
    const fan = await connect("fan");
    const closed = nextEvent(fan, "close");
    fan.close();
    assert.equal((await closed).code, 1000);
    const err = await rejection(fan.request("ping"));
    assert.equal(err.code, "disconnected");
  });
});

describe("leaving", () => {
  test("leave: the others see participant_left, the leaver forgets the channel", async () => {
    const channel = unique("leave");
    const host = await connect("host", { role: "host" });
    const hostReply = await host.join(channel, "host");
    const cohost = await connect("cohost", { role: "host" });
    const cohostReply = await cohost.join(channel, "host");

    const seen = nextEvent(host, "participant_left", (e) => e.participant === cohostReply.participant);
    await cohost.leave(channel);
    const event = await seen;
    assert.equal(event.reason, "left");
    assert.equal(event.identity, cohost.welcome.identity);
    assert.ok(event.seq > cohostReply.seq);
    assert.equal(cohost.channels.has(channel), false);
    assert.equal((await rejection(cohost.setMuted(channel, true))).code, "not_found");
    assert.equal(host.channels.get(channel).participant, hostReply.participant);
  });

  test("a closed connection leaves as disconnected", async () => {
    const channel = unique("drop");
    const host = await connect("host", { role: "host" });
    await host.join(channel, "host");
    const cohost = await connect("cohost", { role: "host" });
    const cohostReply = await cohost.join(channel, "host");
    const seen = nextEvent(host, "participant_left", (e) => e.participant === cohostReply.participant);
    cohost.close();
    assert.equal((await seen).reason, "disconnected");
  });

  test("stop: the members get left, and their clients forget the channel", async () => {
    const channel = unique("stop");
    const host = await connect("host", { role: "host" });
    await host.join(channel, "host");
    const fan = await connect("fan");
    await fan.join(channel);
    const left = nextEvent(fan, "left", (e) => e.channel === channel);
    await host.request("stop", { channel });
    const event = await left;
    assert.equal(event.reason, "channel_stopped");
    assert.equal(fan.channels.has(channel), false);
  });
});

describe("resuming", () => {
  test("a connection that drops without a close frame resumes the session", async () => {
    const channel = unique("resume");
    const host = await connect("host", { role: "host" });
    const hostReply = await host.join(channel, "host");
    const fan = await connect("fan");
    const socket = sockets.at(-1);
    const fanReply = await fan.join(channel);

    const reconnecting = nextEvent(fan, "reconnecting");
    const reconnected = nextEvent(fan, "reconnected");
    const session = fan.welcome.session;
    // terminate() drops the TCP connection without a close frame, as a network failure does.
    socket.terminate();
    await reconnecting;
    assert.deepEqual((await reconnected).resync, []);
    assert.equal(fan.welcome.session, session);
    assert.equal(fan.channels.get(channel).participant, fanReply.participant);

    const heard = nextEvent(fan, "message", (e) => e.kind === "after");
    await host.send(channel, "after", 1);
    const message = await heard;
    assert.equal(message.from, hostReply.participant);
    // The session is the same one: its participant is still in the channel.
    await fan.requestRole(channel, "host");
  });
});
