#!/usr/bin/env node
// Drives the Amphi demo page in headless Chromium as one participant and prints one JSON line:
//
//   node drive.mjs --url http://127.0.0.1:7880 --channel lobby --identity alice --role host \
//       --seconds 5 [--screenshot out.png]
//   node drive.mjs --url http://127.0.0.1:7880 --identity bob --answer-call --seconds 5
//
// With --answer-call the page goes online for calls instead of joining a channel, waits for a
// call, accepts it, talks for --seconds through the call's channel and hangs up.
//
// The page mints its own token through the server's `POST /dev/token` (`serve --dev`), joins,
// and plays what it hears; Chromium's fake microphone sends a beep, so a host sends real audio.
// On success it prints {"joined":true,"role","participants","outbound","inbound","errors"} and
// exits 0; otherwise it prints {"joined":false,"error","errors"} and exits 1 (2 on bad usage).
// Every wait is bounded, and a watchdog ends the run if something hangs regardless.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  "--autoplay-policy=no-user-gesture-required",
  "--allow-loopback-in-peer-connection",
];
const LAUNCH_TIMEOUT_MS = 30_000;
const STEP_TIMEOUT_MS = 15_000;
const CONNECT_TIMEOUT_MS = 20_000;
const LEAVE_TIMEOUT_MS = 5_000;
// Page states (#status[data-state]) after which waiting for audio is pointless.
const FINAL_STATES = ["connected", "error", "needs-token", "left", "closed"];

const errors = [];
let exiting = false;

function finish(code, line) {
  if (exiting) return;
  exiting = true;
  process.stdout.write(`${JSON.stringify(line)}\n`);
  // Playwright kills the browser it launched on exit; the profile is removed after that.
  process.exit(code);
}

function fail(message, code = 1) {
  finish(code, { joined: false, error: message, errors });
}

function usage(message) {
  fail(`${message}; usage: node drive.mjs --url http://127.0.0.1:PORT --channel C --identity I ` +
    "--role host|audience [--audio auto|mixed|forwarded] --seconds N [--screenshot out.png]", 2);
}

function parseOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: "string" },
        channel: { type: "string" },
        identity: { type: "string" },
        role: { type: "string", default: "host" },
        audio: { type: "string", default: "auto" },
        interrupt: { type: "boolean", default: false },
        "ready-file": { type: "string" },
        seconds: { type: "string", default: "5" },
        screenshot: { type: "string" },
        "answer-call": { type: "boolean", default: false },
        "watch-video": { type: "boolean", default: false },
      },
      strict: true,
    }));
  } catch (err) {
    return usage(err.message);
  }
  for (const name of values["answer-call"] ? ["url", "identity"] : ["url", "channel", "identity"]) {
    if (!values[name]) return usage(`--${name} is required`);
  }
  if (!["host", "audience"].includes(values.role)) return usage("--role must be host or audience");
  if (!["auto", "mixed", "forwarded"].includes(values.audio)) {
    return usage("--audio must be auto, mixed or forwarded");
  }
  const seconds = Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds < 0) return usage("--seconds must be a number ≥ 0");
  return { ...values, seconds };
}

/**
 * Runs in the page: the participants shown and the audio statistics of the peer connection of
 * the client `which` (`amphi` for the channel, `amphiCall` for calls).
 */
async function collect(which) {
  const amphi = window[which];
  const me = document.getElementById("me");
  const result = {
    joined: Boolean(amphi),
    role: me.dataset.role || null,
    participants: [...document.querySelectorAll("#participants li[data-identity]")]
      .map((li) => li.dataset.identity),
    outbound: null,
    inbound: [],
    video: { framesDecoded: 0, framesReceived: 0, packetsReceived: 0, framesSent: 0, codec: null },
    errors: [...(window.amphiErrors ?? [])],
  };
  const pc = amphi?.pc;
  if (!pc) return result;
  const session = [...amphi.audio.values()].find((s) => s.pc === pc);
  // Older Chromium builds leave `mid` out of inbound-rtp; the receiver's track finds it.
  const midOfTrack = new Map(pc.getTransceivers()
    .filter((t) => t.receiver.track)
    .map((t) => [t.receiver.track.id, t.mid]));
  const stats = await pc.getStats();
  // The codec a stream uses ("audio/opus", or "audio/red" when RFC 2198 RED was negotiated).
  const codec = (s) => stats.get(s.codecId)?.mimeType ?? null;
  for (const s of stats.values()) {
    if (s.kind === "video" && s.type === "inbound-rtp") {
      result.video.framesDecoded += s.framesDecoded ?? 0;
      result.video.framesReceived += s.framesReceived ?? 0;
      result.video.packetsReceived += s.packetsReceived ?? 0;
      result.video.codec = codec(s) ?? result.video.codec;
    } else if (s.kind === "video" && s.type === "outbound-rtp") {
      result.video.framesSent += s.framesSent ?? 0;
    }
    if (s.kind !== "audio") continue;
    if (s.type === "outbound-rtp") {
      result.outbound = {
        packetsSent: s.packetsSent ?? 0, bytesSent: s.bytesSent ?? 0, codec: codec(s),
      };
    } else if (s.type === "inbound-rtp") {
      const mid = s.mid ?? midOfTrack.get(s.trackIdentifier) ?? null;
      result.inbound.push({
        mid,
        codec: codec(s),
        identity: session?.slots.get(mid)?.identity ?? null,
        packetsReceived: s.packetsReceived ?? 0,
        bytesReceived: s.bytesReceived ?? 0,
        totalAudioEnergy: s.totalAudioEnergy ?? 0,
        audioLevel: s.audioLevel ?? 0,
      });
    }
  }
  result.inbound.sort((a, b) => String(a.mid).localeCompare(String(b.mid), "en", { numeric: true }));
  return result;
}

/** The page answers one call and talks in it; returns the call's audio statistics. */
async function answerCall(page, opts) {
  const state = (wanted) => page.waitForFunction(
    (states) => {
      const s = document.getElementById("call-status")?.dataset.state;
      return states.includes(s) && s;
    },
    wanted,
    { timeout: CONNECT_TIMEOUT_MS, polling: 100 },
  ).then((handle) => handle.jsonValue(), () => null);
  await page.fill("#identity", opts.identity);
  await page.click("#go-online");
  const rung = await state(["incoming", "error"]);
  if (rung !== "incoming") {
    const status = await page.textContent("#call-status").catch(() => "");
    throw new Error(`no incoming call (status: ${status})`);
  }
  await page.click("#accept");
  const talking = await state(["connected", "error", "ended"]);
  if (talking !== "connected") {
    const status = await page.textContent("#call-status").catch(() => "");
    throw new Error(`the call's audio did not connect (status: ${status})`);
  }
  const watched = opts["watch-video"] ? await watchVideo(page, opts) : {};
  await page.waitForTimeout(opts.seconds * 1000);
  const result = await page.evaluate(collect, "amphiCall");
  errors.push(...result.errors.filter((e) => !errors.includes(e)));
  await page.click("#hangup", { timeout: LEAVE_TIMEOUT_MS }).catch(() => {});
  const ended = await state(["ended"]);
  const status = await page.textContent("#call-status").catch(() => "");
  return { ...result, ...watched, answered: true, ended: ended === "ended", status };
}

/**
 * In a video call: waits until the page decodes the other side's video (then writes
 * --ready-file), until the call turns to audio (the other side asks; the page agrees), and
 * samples the video counters for two seconds after, which must stand still.
 */
async function watchVideo(page, opts) {
  const until = async (what, test) => {
    const deadline = Date.now() + CONNECT_TIMEOUT_MS;
    for (;;) {
      const stats = await page.evaluate(collect, "amphiCall");
      if (await test(stats)) return stats;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await page.waitForTimeout(100);
    }
  };
  const seeing = await until("decoded video", (s) => s.video.framesDecoded >= 10 && s.video.framesSent >= 10);
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
  if (opts["ready-file"]) writeFileSync(opts["ready-file"], "video\n");
  const atChange = await until("the call to turn to audio",
    () => page.evaluate(() => document.getElementById("call-video").hidden));
  const samples = [];
  for (let i = 0; i < 8; i++) {
    await page.waitForTimeout(250);
    samples.push((await page.evaluate(collect, "amphiCall")).video);
  }
  const cameraOn = await page.evaluate(
    () => [...(window.amphiCall?.audio.values() ?? [])].some((s) => s.cameraTrack !== null));
  return { videoSeen: seeing.video, videoAtChange: atChange.video, videoAfter: samples, cameraOn };
}

async function run(opts) {
  const profile = mkdtempSync(join(tmpdir(), "amphi-chromium-"));
  let browser;
  try {
    // ignoreDefaultArgs: the browser gets our flags and nothing of Playwright's defaults
    // (which would add --mute-audio among others); the pipe is how Playwright drives it.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      ignoreDefaultArgs: true,
      args: [...FLAGS, `--user-data-dir=${profile}`, "--remote-debugging-pipe"],
      timeout: LAUNCH_TIMEOUT_MS,
    });
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw new Error(`could not launch ${CHROMIUM}: ${err.message.split("\n")[0]}`);
  }
  process.on("exit", () => rmSync(profile, { recursive: true, force: true }));

  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("pageerror", (err) => errors.push(`page: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
    });

    await page.goto(opts.url, { waitUntil: "load", timeout: STEP_TIMEOUT_MS });
    if (opts["answer-call"]) return { ...(await answerCall(page, opts)), errors };
    await page.fill("#channel", opts.channel);
    await page.fill("#identity", opts.identity);
    await page.selectOption("#role", opts.role);
    await page.selectOption("#audio", opts.audio);
    await page.click("#join");

    const state = await page.waitForFunction(
      (finals) => {
        const s = document.getElementById("status")?.dataset.state;
        return finals.includes(s) && s;
      },
      FINAL_STATES,
      { timeout: CONNECT_TIMEOUT_MS, polling: 100 },
    ).then((handle) => handle.jsonValue(), () => null);
    if (state !== "connected") {
      const status = await page.textContent("#status").catch(() => "");
      const pageErrors = await page.evaluate(() => window.amphiErrors ?? []).catch(() => []);
      errors.push(...pageErrors.filter((e) => !errors.includes(e)));
      if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true }).catch(() => {});
      throw new Error(state === null
        ? `audio did not connect within ${CONNECT_TIMEOUT_MS / 1000} s (status: ${status})`
        : `the page did not connect audio (status: ${status})`);
    }

    let resumed = null;
    if (opts["ready-file"]) writeFileSync(opts["ready-file"], "connected\n");
    if (opts.interrupt) {
      // The caller cuts the page's connection (a proxy in between drops it, no close frame):
      // the page resumes its session by itself.
      await page.waitForFunction(() => (window.amphiResumed ?? 0) >= 1, null,
        { timeout: CONNECT_TIMEOUT_MS + 10_000, polling: 50 });
      resumed = await page.textContent("#status");
    }
    await page.waitForTimeout(opts.seconds * 1000);
    const result = await page.evaluate(collect, "amphi");
    if (resumed !== null) result.resumed = resumed;
    errors.push(...result.errors.filter((e) => !errors.includes(e)));
    if (!result.joined) {
      const now = await page.textContent("#status").catch(() => "");
      throw new Error(`the page dropped out of the channel during the run (status: ${now})`);
    }
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });

    // Leaving lets the others see `participant_left` with reason `left`, not `disconnected`.
    await page.click("#leave", { timeout: LEAVE_TIMEOUT_MS })
      .then(() => page.waitForFunction(
        () => document.getElementById("status")?.dataset.state === "left",
        null, { timeout: LEAVE_TIMEOUT_MS }))
      .catch(() => {});
    return { ...result, errors };
  } finally {
    await browser.close().catch(() => {});
  }
}

const opts = parseOptions();
if (opts) {
  const watchdogMs = LAUNCH_TIMEOUT_MS + 3 * STEP_TIMEOUT_MS + CONNECT_TIMEOUT_MS +
    2 * LEAVE_TIMEOUT_MS + opts.seconds * 1000;
  setTimeout(() => fail(`gave up after ${Math.round(watchdogMs / 1000)} s`), watchdogMs);
  run(opts).then(
    (result) => finish(0, result),
    (err) => fail(err.message.split("\n")[0]),
  );
}
