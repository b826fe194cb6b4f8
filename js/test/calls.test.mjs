// Call signalling through AmphiClient.request and its events against a real server: ringing,
// answering, declining, hanging up, and the call's private channel. No audio.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { AmphiClient, AmphiError } from "amphi-client";
import { nextEvent, record, startServer, unique } from "./support.mjs";

let server;
const clients = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const client of clients) client.close();
  await server?.stop();
});

/** A client whose token carries the `call` grant: online for calls as long as it is open. */
async function callable(prefix) {
  const identity = unique(prefix);
  const token = await server.token(identity, { grants: ["call"] });
  const client = await AmphiClient.connect(server.url, token);
  clients.push(client);
  return client;
}

/** The event `name` of call `callId` at `client`. */
function callEvent(client, name, callId, accept = () => true) {
  return nextEvent(client, name, (e) => e.call_id === callId && accept(e));
}

test("a call rings, is accepted, joined for audio and hung up", async () => {
  const alice = await callable("alice");
  const bob = await callable("bob");
  const [aliceId, bobId] = [alice.welcome.identity, bob.welcome.identity];
  const aliceEvents = record(alice, "event");
  const bobEvents = record(bob, "event");

  // call_ringing may come in the same read as the reply: listen before placing the call.
  const ringingSeen = nextEvent(alice, "call_ringing", (e) => e.callees.includes(bobId));
  const incoming = nextEvent(bob, "call_incoming");
  const placed = await alice.request("call", { callees: [bobId], media: "audio", extra: { topic: "tea" } });
  assert.equal(placed.type, "ok");
  assert.match(placed.call_id, /^c-[0-9a-f]{16}$/);
  assert.deepEqual(placed.busy, []);
  assert.equal(placed.channel, `call:${placed.call_id}`);
  const callId = placed.call_id;

  const ringing = await ringingSeen;
  assert.equal(ringing.call_id, callId);
  assert.deepEqual(ringing.callees, [bobId]);
  const invitation = await incoming;
  assert.equal(invitation.call_id, callId);
  assert.equal(invitation.caller, aliceId);
  assert.equal(invitation.invited_by, aliceId);
  assert.deepEqual([...invitation.members].sort(), [aliceId, bobId].sort());
  assert.equal(invitation.call_type, "one_to_one");
  assert.equal(invitation.media, "audio");
  assert.deepEqual(invitation.extra, { topic: "tea" });

  const connectedAtAlice = callEvent(alice, "call_connected", callId);
  const connectedAtBob = callEvent(bob, "call_connected", callId);
  const bobState = callEvent(alice, "participant_state", callId, (e) => e.user === bobId);
  assert.equal((await bob.request("accept", { call_id: callId })).type, "ok");
  const state = await bobState;
  assert.equal(state.state, "connected");
  assert.equal(state.reconnecting, false);
  const [atAlice, atBob] = await Promise.all([connectedAtAlice, connectedAtBob]);
  assert.equal(atAlice.channel, placed.channel);
  assert.equal(atAlice.media, "audio");
  assert.equal(atAlice.start_time, atBob.start_time);
  assert.equal(atAlice.seq, atBob.seq);

  // A second answer from the same identity is refused.
  await assert.rejects(bob.request("accept", { call_id: callId }),
    (err) => err instanceof AmphiError && err.code === "conflict");

  // Audio would go through the call's channel: joining it is what a client does first.
  const joined = await alice.join(placed.channel, "call");
  assert.equal(joined.role, "call");
  assert.ok(alice.channels.has(placed.channel));

  const message = callEvent(bob, "call_message", callId);
  await alice.request("send", { call_id: callId, kind: "chat", content: "hi" });
  const relayed = await message;
  assert.equal(relayed.from, aliceId);
  assert.equal(relayed.content, "hi");
  assert.equal(relayed.seq, undefined);

  const endedAtAlice = callEvent(alice, "call_ended", callId);
  const endedAtBob = callEvent(bob, "call_ended", callId);
  const channelGone = nextEvent(alice, "left", (e) => e.channel === placed.channel);
  const logAtAlice = callEvent(alice, "call_log", callId);
  assert.equal((await bob.request("hangup", { call_id: callId })).type, "ok");
  const [endA, endB] = await Promise.all([endedAtAlice, endedAtBob]);
  assert.equal(endA.reason, "hangup");
  assert.equal(endB.reason, "hangup");
  assert.equal((await channelGone).reason, "channel_stopped");
  assert.equal(alice.channels.has(placed.channel), false);
  const { log } = await logAtAlice;
  assert.equal(log.call_id, callId);
  assert.equal(log.user, aliceId);
  assert.equal(log.direction, "outgoing");
  assert.equal(log.end_reason, "hangup");
  assert.deepEqual(log.peers, [bobId]);
  assert.equal(typeof log.connect_ms, "number");

  // Each side sees the call's events in rising seq, with gaps for the others' events.
  for (const events of [aliceEvents, bobEvents]) {
    const seqs = events.filter((e) => e.call_id === callId && e.seq !== undefined).map((e) => e.seq);
    assert.ok(seqs.length >= 3, JSON.stringify(seqs));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    assert.equal(new Set(seqs).size, seqs.length);
  }

  const page = await alice.request("call_logs", { count: 5 });
  assert.deepEqual(page.logs.map((row) => row.call_id), [callId]);
  assert.equal(page.has_more, false);
  assert.equal(page.next, null);
});

test("a rejected call ends for the caller with the reason and the note", async () => {
  const alice = await callable("alice");
  const bob = await callable("bob");
  const incoming = nextEvent(bob, "call_incoming");
  const { call_id: callId } = await alice.request("call", { callees: [bob.welcome.identity], media: "video" });
  assert.equal((await incoming).media, "video");

  const ended = callEvent(alice, "call_ended", callId);
  const endedAtBob = callEvent(bob, "call_ended", callId);
  await bob.request("reject", { call_id: callId, note: "in a meeting" });
  const event = await ended;
  assert.equal(event.reason, "rejected");
  assert.equal(event.note, "in a meeting");
  assert.equal((await endedAtBob).reason, "rejected");

  // The call is over: answering it now finds nothing.
  const err = await bob.request("accept", { call_id: callId }).catch((e) => e);
  assert.ok(err instanceof AmphiError);
  assert.ok(["not_found", "conflict"].includes(err.code), err.code);
});

test("the caller's hangup before an answer cancels the call", async () => {
  const alice = await callable("alice");
  const bob = await callable("bob");
  const incoming = nextEvent(bob, "call_incoming");
  const { call_id: callId } = await alice.request("call", { callees: [bob.welcome.identity], media: "audio" });
  await incoming;
  const ended = callEvent(bob, "call_ended", callId);
  await alice.request("hangup", { call_id: callId });
  assert.equal((await ended).reason, "canceled");
});

test("call requests need the call grant", async () => {
  const identity = unique("nogrant");
  const client = await AmphiClient.connect(server.url, await server.token(identity));
  clients.push(client);
  await assert.rejects(client.request("call", { callees: ["someone"], media: "audio" }), (err) => {
    assert.ok(err instanceof AmphiError);
    assert.equal(err.code, "forbidden");
    assert.equal(err.frame.code, "forbidden");
    return true;
  });
});
