#!/usr/bin/env node
// Drives the Amphi demo page in headless Chromium as one participant and prints one JSON line:
//
//   node drive.mjs --url http://127.0.0.1:7880 --channel lobby --identity alice --role host \
//       --seconds 5 [--screenshot out.png]
//   node drive.mjs --url http://127.0.0.1:7880 --identity bob --answer-call --seconds 5
//   node drive.mjs --url http://127.0.0.1:7880 --identity alice --call bob --seconds 5
//
// With --answer-call the page goes online for calls instead of joining a channel, waits for a
// call, accepts it, talks for --seconds through the call's channel and hangs up. With
// --call IDENTITY it goes online, calls IDENTITY, talks for --seconds once answered and hangs
// up. Either side stops early when the other hangs up first.
//
// The page mints its own token through the server's `POST /dev/token` (`serve --dev`), joins,
// and plays what it hears; Chromium's fake microphone sends a beep, so a host sends real audio.
// On success it prints {"joined":true,"role","participants","outbound","inbound","errors"} and
// exits 0; otherwise it prints {"joined":false,"error","errors"} and exits 1 (2 on bad usage).
// Every wait is bounded, and a watchdog ends the run if something hangs regardless.
//
// Options for looking at the page itself:
//   --viewport WxH          the browser window, e.g. 360x740 (default 1280x720); scrollbars
//                           are hidden, as on phones
//   --screenshot-steps DIR  a full-page screenshot per step, DIR/<identity>-<n>-<step>.png
//   --mic-check             before joining: pick the first named microphone, run the page's
//                           level check until the meter moves (reported as "micCheck")
//   --token JWT             act as against a server without /dev/token: the page is refused
//                           a development token, asks for one, and JWT is pasted
//   --until-file PATH       (channel) stay after connecting until PATH exists, at most --seconds
//   --static-dir DIR        serve / and /amphi.js from DIR instead of the server (try a page
//                           without rebuilding the server)
// Every step also measures horizontal overflow: "overflowX" is true when, at any step, the
// document scrolls sideways, an element reaches past the viewport or an element's content
// spills out of its box ("overflow" lists them).
// In a call the report has "ringingPeer" and "peerName" (who the call panel names while it
// rings and once connected), "timer" (two readings of the call timer at least 1 s apart) and
// "callRx" (the page's receive indicator).

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
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
// How long a caller waits for an answer: the callee's browser may still be starting.
const RING_TIMEOUT_MS = 40_000;
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
    "--role host|audience [--audio auto|mixed|forwarded] --seconds N [--screenshot out.png] " +
    "[--viewport WxH] [--screenshot-steps DIR] [--mic-check] [--token JWT] [--until-file PATH] " +
    "[--static-dir DIR] | --answer-call | --call IDENTITY", 2);
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
        // For a server with a self-signed certificate (`serve --dev --lan`).
        "ignore-https-errors": { type: "boolean", default: false },
        call: { type: "string" },
        viewport: { type: "string" },
        "screenshot-steps": { type: "string" },
        "mic-check": { type: "boolean", default: false },
        token: { type: "string" },
        "until-file": { type: "string" },
        "static-dir": { type: "string" },
      },
      strict: true,
    }));
  } catch (err) {
    return usage(err.message);
  }
  const calling = values["answer-call"] || values.call !== undefined;
  if (values["answer-call"] && values.call !== undefined) return usage("--answer-call and --call exclude each other");
  for (const name of calling ? ["url", "identity"] : ["url", "channel", "identity"]) {
    if (!values[name]) return usage(`--${name} is required`);
  }
  if (!["host", "audience"].includes(values.role)) return usage("--role must be host or audience");
  if (!["auto", "mixed", "forwarded"].includes(values.audio)) {
    return usage("--audio must be auto, mixed or forwarded");
  }
  const seconds = Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds < 0) return usage("--seconds must be a number ≥ 0");
  let viewport = null;
  if (values.viewport !== undefined) {
    const m = /^(\d+)x(\d+)$/.exec(values.viewport);
    if (!m) return usage("--viewport must be WIDTHxHEIGHT, e.g. 360x740");
    viewport = { width: Number(m[1]), height: Number(m[2]) };
  }
  if (values["screenshot-steps"]) mkdirSync(values["screenshot-steps"], { recursive: true });
  return { ...values, seconds, viewport };
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
  const rx = document.getElementById(which === "amphiCall" ? "call-rx" : "rx");
  if (rx) {
    result.rx = {
      state: rx.dataset.state,
      packets: Number(rx.dataset.packets ?? 0),
      // Watched on the channel's indicator only (from "connected" on).
      ...(which === "amphi" ? { seen: Boolean(window.amphiRxSeen) } : {}),
    };
  }
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

/** Runs in the page: how far the document and its elements reach past the viewport. */
function measureOverflow() {
  const root = document.scrollingElement;
  const width = root.clientWidth;
  const elements = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const left = r.left + window.scrollX;
    const right = r.right + window.scrollX;
    // Content wider than its own box is cut off or scrolls sideways, even inside the viewport;
    // form controls scroll their text by design.
    const spills = !["INPUT", "SELECT", "TEXTAREA", "OPTION"].includes(el.tagName) &&
      el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1;
    if (left < -0.5 || right > width + 0.5 || spills) {
      const cls = typeof el.className === "string" ? el.className.trim().split(/\s+/).filter(Boolean) : [];
      const name = el.tagName.toLowerCase() + (el.id ? `#${el.id}` : "") + cls.map((c) => `.${c}`).join("");
      elements.push(spills
        ? `${name} holds ${el.scrollWidth} px in ${el.clientWidth} px`
        : `${name} [${Math.round(left)}, ${Math.round(right)}]`);
    }
  }
  return { scrollWidth: root.scrollWidth, clientWidth: width, elements: elements.slice(0, 20) };
}

const steps = [];
const screenshots = [];
const overflow = [];  // the steps at which something reached past the viewport

/** Marks a step of the run: measures overflow and, with --screenshot-steps, takes a screenshot. */
async function step(page, opts, name) {
  steps.push(name);
  const measured = await page.evaluate(measureOverflow);
  if (measured.scrollWidth > measured.clientWidth || measured.elements.length > 0) {
    overflow.push({ step: name, ...measured });
  }
  const dir = opts["screenshot-steps"];
  if (dir) {
    const path = join(dir, `${opts.identity}-${String(steps.length).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path, fullPage: true });
    screenshots.push(path);
  }
}

function pageReport() {
  return { overflowX: overflow.length > 0, overflow, steps, screenshots };
}

/** Waits until #`id`[data-state] is one of `wanted`; that state, or null after `timeout`. */
function stateOf(page, id, wanted, timeout = CONNECT_TIMEOUT_MS) {
  return page.waitForFunction(
    ([el, states]) => {
      const s = document.getElementById(el)?.dataset.state;
      return states.includes(s) && s;
    },
    [id, wanted],
    { timeout, polling: 100 },
  ).then((handle) => handle.jsonValue(), () => null);
}

/**
 * The page's microphone check: the page lists the microphones once it may use one, the first
 * named one is picked, and the check runs until its meter moves.
 */
async function checkMic(page, opts) {
  await page.click("#mic-test");
  await page.waitForFunction(() => document.getElementById("mic").options.length > 1, null,
    { timeout: STEP_TIMEOUT_MS, polling: 100 });
  const devices = await page.$$eval("#mic option", (options) => options.map((o) => o.textContent));
  await page.selectOption("#mic", { index: 1 });
  // The check starts again on the picked device, which the page names once it listens to it.
  const moved = await page.waitForFunction(
    (picked) => {
      const button = document.getElementById("mic-test");
      return button.getAttribute("aria-pressed") === "true" && !button.disabled &&
        document.getElementById("mic-note").textContent.includes(picked) &&
        Number(document.getElementById("mic-level").dataset.level) > 0.01;
    },
    devices[1], { timeout: STEP_TIMEOUT_MS, polling: 50 },
  ).then(() => true, () => false);
  const level = await page.evaluate(() => Number(document.getElementById("mic-level").dataset.level));
  await step(page, opts, "mic-check");
  await page.click("#mic-test");
  return { devices, picked: devices[1], moved, level };
}

/** With --token: the page finds no /dev/token, asks for a token, and gets this one pasted. */
async function pasteToken(page, opts, { status, field, button }) {
  const asked = await stateOf(page, status, ["needs-token", "error", "connected", "online"], STEP_TIMEOUT_MS);
  if (asked !== "needs-token") {
    const text = await page.textContent(`#${status}`).catch(() => "");
    throw new Error(`the page did not ask for a token (status: ${text})`);
  }
  await step(page, opts, "needs-token");
  await page.fill(`#${field}`, opts.token);
  await page.click(`#${button}`);
}

/** Goes online for calls, with a pasted token if told to. */
async function goOnline(page, opts) {
  await page.fill("#identity", opts.identity);
  const micCheck = opts["mic-check"] ? await checkMic(page, opts) : undefined;
  await page.click("#go-online");
  if (opts.token) await pasteToken(page, opts, { status: "call-status", field: "call-token", button: "go-online" });
  return micCheck;
}

/** The page answers one call and talks in it; returns the call's audio statistics. */
async function answerCall(page, opts) {
  const micCheck = await goOnline(page, opts);
  const rung = await stateOf(page, "call-status", ["incoming", "error"]);
  if (rung !== "incoming") {
    const status = await page.textContent("#call-status").catch(() => "");
    throw new Error(`no incoming call (status: ${status})`);
  }
  const ringingPeer = await page.textContent("#call-peer");
  await step(page, opts, "incoming");
  await page.click("#accept");
  const talking = await stateOf(page, "call-status", ["connected", "error", "ended"]);
  if (talking !== "connected") {
    const status = await page.textContent("#call-status").catch(() => "");
    throw new Error(`the call's audio did not connect (status: ${status})`);
  }
  return { ...(await talk(page, opts)), answered: true, ringingPeer, micCheck };
}

/** The page calls --call, and talks once answered. */
async function placeCall(page, opts) {
  const micCheck = await goOnline(page, opts);
  const online = await stateOf(page, "call-status", ["online", "error"]);
  if (online !== "online") {
    const status = await page.textContent("#call-status").catch(() => "");
    throw new Error(`the page did not go online (status: ${status})`);
  }
  await page.fill("#callee", opts.call);
  // The hint under the field says whether a call would ring now; the callee's page may still
  // be going online, so it is read once it says online (or the wait runs out).
  await page.waitForFunction(
    () => document.getElementById("callee-presence")?.dataset.state === "online",
    null, { timeout: RING_TIMEOUT_MS, polling: 100 },
  ).catch(() => {});
  const presence = await page.textContent("#callee-presence");
  await page.click("#call");
  const placed = await stateOf(page, "call-status", ["ringing", "joining", "connected", "ended", "error"]);
  let ringingPeer = null;
  if (placed === "ringing") {
    ringingPeer = await page.textContent("#call-peer");
    await step(page, opts, "ringing");
  }
  const talking = await stateOf(page, "call-status", ["connected", "error", "ended"], RING_TIMEOUT_MS);
  if (talking !== "connected") {
    const status = await page.textContent("#call-status").catch(() => "");
    throw new Error(`the call did not connect (status: ${status})`);
  }
  return { ...(await talk(page, opts)), placed: true, ringingPeer, micCheck, presence };
}

/**
 * In a connected call: reads the call timer twice at least a second apart, waits for the
 * page's receive indicator to show audio coming in, then talks for --seconds (less if the
 * other side hangs up first) and hangs up.
 */
async function talk(page, opts) {
  await step(page, opts, "connected");
  const readTimer = () => page.evaluate(() => {
    const el = document.getElementById("call-timer");
    return { text: el.textContent, shown: !el.hidden, at: Date.now() };
  });
  const first = await readTimer();
  await page.waitForFunction(
    ({ text, at }) => Date.now() - at >= 1000 && document.getElementById("call-timer").textContent !== text,
    first, { timeout: 5_000, polling: 100 },
  ).catch(() => {});
  const second = await readTimer();
  await page.waitForFunction(
    () => document.getElementById("call-rx")?.dataset.state === "receiving" ||
      document.getElementById("call-status")?.dataset.state === "ended",
    null, { timeout: CONNECT_TIMEOUT_MS, polling: 100 },
  ).catch(() => {});
  const callRx = await page.evaluate(() => {
    const rx = document.getElementById("call-rx");
    return { state: rx.dataset.state, packets: Number(rx.dataset.packets), text: rx.textContent.trim() };
  });
  // Read once audio flows: the other side has joined the call's channel, which gives its name.
  const peerName = await page.textContent("#call-peer");
  await step(page, opts, "in-call");
  const watched = opts["watch-video"] ? await watchVideo(page, opts) : {};
  await stateOf(page, "call-status", ["ended"], Math.max(1, opts.seconds * 1000));
  const result = await page.evaluate(collect, "amphiCall");
  errors.push(...result.errors.filter((e) => !errors.includes(e)));
  if (await page.$eval("#hangup", (b) => !b.disabled)) {
    await page.click("#hangup", { timeout: LEAVE_TIMEOUT_MS }).catch(() => {});
  }
  const ended = await stateOf(page, "call-status", ["ended"], LEAVE_TIMEOUT_MS);
  const status = await page.textContent("#call-status").catch(() => "");
  await step(page, opts, "ended");
  return {
    ...result, ...watched, peerName, callRx, timer: [first, second], ended: ended === "ended", status,
  };
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

/** With --static-dir: the page and its client come from that directory, the rest from --url. */
async function routeStatic(context, opts) {
  const dir = opts["static-dir"];
  if (dir) {
    const origin = new URL(opts.url).origin;
    const files = { "/": "index.html", "/amphi.js": "amphi.js" };
    await context.route(
      (url) => url.origin === origin && url.pathname in files,
      (route) => route.fulfill({ path: join(dir, files[new URL(route.request().url()).pathname]) }),
    );
  }
  if (opts.token) {
    await context.route(
      (url) => url.pathname === "/dev/token",
      (route) => route.fulfill({
        status: 404,
        contentType: "application/json",
        body: JSON.stringify({ code: "not_found", message: "no route for POST /dev/token (only with --dev)" }),
      }),
    );
  }
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
      args: [
        ...FLAGS,
        ...(opts["ignore-https-errors"] ? ["--ignore-certificate-errors"] : []),
        // A page fulfilled by the driver has no address, so Chromium would count it as public
        // and refuse its WebSocket to the loopback server.
        ...(opts["static-dir"] ? ["--disable-features=LocalNetworkAccessChecks"] : []),
        // As on phones, scrollbars take no width: the page is laid out (and measured, and
        // captured whole) at the width asked for.
        ...(opts.viewport ? ["--hide-scrollbars"] : []),
        `--user-data-dir=${profile}`,
        "--remote-debugging-pipe",
      ],
      timeout: LAUNCH_TIMEOUT_MS,
    });
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw new Error(`could not launch ${CHROMIUM}: ${err.message.split("\n")[0]}`);
  }
  process.on("exit", () => rmSync(profile, { recursive: true, force: true }));

  try {
    const context = await browser.newContext({
      ignoreHTTPSErrors: opts["ignore-https-errors"],
      ...(opts.viewport ? { viewport: opts.viewport } : {}),
    });
    await routeStatic(context, opts);
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("pageerror", (err) => errors.push(`page: ${err.message}`));
    page.on("console", (msg) => {
      // With --token the refused /dev/token is the point, not an error.
      if (opts.token && msg.location().url.endsWith("/dev/token")) return;
      if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
    });

    await load(page, opts.url);
    await step(page, opts, "loaded");
    if (opts["answer-call"]) return { ...(await answerCall(page, opts)), ...pageReport(), errors };
    if (opts.call !== undefined) return { ...(await placeCall(page, opts)), ...pageReport(), errors };
    await page.fill("#channel", opts.channel);
    await page.fill("#identity", opts.identity);
    await page.selectOption("#role", opts.role);
    await page.selectOption("#audio", opts.audio);
    const micCheck = opts["mic-check"] ? await checkMic(page, opts) : undefined;
    await page.click("#join");
    if (opts.token) await pasteToken(page, opts, { status: "status", field: "token", button: "join" });

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
      await step(page, opts, "not-connected").catch(() => {});
      throw new Error(state === null
        ? `audio did not connect within ${CONNECT_TIMEOUT_MS / 1000} s (status: ${status})`
        : `the page did not connect audio (status: ${status})`);
    }

    await step(page, opts, "connected");
    // Whether the receive indicator ever said audio was coming in: a host's browser on a
    // loaded machine can pause sending for seconds, so the state at the end alone may be
    // "quiet" although the indicator worked all along.
    await page.evaluate(() => {
      const rx = document.getElementById("rx");
      if (!rx) return;
      const note = () => {
        if (rx.dataset.state === "receiving") window.amphiRxSeen = true;
      };
      note();
      new MutationObserver(note).observe(rx, { attributes: true, attributeFilter: ["data-state"] });
    });
    let resumed = null;
    if (opts["ready-file"]) writeFileSync(opts["ready-file"], "connected\n");
    if (opts.interrupt) {
      // The caller cuts the page's connection (a proxy in between drops it, no close frame):
      // the page resumes its session by itself.
      await page.waitForFunction(() => (window.amphiResumed ?? 0) >= 1, null,
        { timeout: CONNECT_TIMEOUT_MS + 10_000, polling: 50 });
      resumed = await page.textContent("#status");
    }
    if (opts["until-file"]) {
      // Another participant's run decides when this one may go; --seconds bounds the wait.
      const deadline = Date.now() + opts.seconds * 1000;
      while (!existsSync(opts["until-file"]) && Date.now() < deadline) await page.waitForTimeout(100);
    } else {
      await page.waitForTimeout(opts.seconds * 1000);
    }
    // The indicator compares readings 250 ms apart. On a loaded machine (the whole test suite
    // beside two browsers on two cores) Chromium's receive side was seen to stall for seconds
    // and then take the queued packets in a burst, the indicator saying "quiet" meanwhile; so
    // the reading waits, bounded, for audio to be seen flowing again.
    await page.waitForFunction(
      () => document.getElementById("rx")?.dataset.state !== "quiet",
      null, { timeout: STEP_TIMEOUT_MS, polling: 100 },
    ).catch(() => {});
    const result = await page.evaluate(collect, "amphi");
    if (resumed !== null) result.resumed = resumed;
    if (micCheck) result.micCheck = micCheck;
    errors.push(...result.errors.filter((e) => !errors.includes(e)));
    if (!result.joined) {
      const now = await page.textContent("#status").catch(() => "");
      throw new Error(`the page dropped out of the channel during the run (status: ${now})`);
    }
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot, fullPage: true });
    await step(page, opts, "in-channel");

    // Leaving lets the others see `participant_left` with reason `left`, not `disconnected`.
    await page.click("#leave", { timeout: LEAVE_TIMEOUT_MS })
      .then(() => page.waitForFunction(
        () => document.getElementById("status")?.dataset.state === "left",
        null, { timeout: LEAVE_TIMEOUT_MS }))
      .catch(() => {});
    await step(page, opts, "left");
    return { ...result, ...pageReport(), errors };
  } finally {
    await browser.close().catch(() => {});
  }
}

/**
 * Opens the page. Chromium aborts a navigation with ERR_NETWORK_CHANGED when an interface of
 * the machine changes meanwhile (a test's network namespace and its veth pair coming up, with
 * their addresses settling a moment later); a person would press reload, and so does this,
 * a few times, bounded.
 */
async function load(page, url) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await page.goto(url, { waitUntil: "load", timeout: STEP_TIMEOUT_MS });
    } catch (err) {
      if (attempt >= 3 || !String(err.message).includes("ERR_NETWORK_CHANGED")) throw err;
      await page.waitForTimeout(500 * attempt);
    }
  }
}

const opts = parseOptions();
if (opts) {
  // A call adds the ring, the timer readings and the wait for incoming audio; the optional
  // steps (microphone check, pasted token, screenshots) a step each.
  const callMs = opts["answer-call"] || opts.call !== undefined
    ? RING_TIMEOUT_MS + 2 * CONNECT_TIMEOUT_MS + 5_000 : 0;
  const extraMs = (opts["mic-check"] ? 2 * STEP_TIMEOUT_MS : 0) + (opts.token ? STEP_TIMEOUT_MS : 0) +
    (opts["screenshot-steps"] ? 8 * STEP_TIMEOUT_MS : 0);
  const watchdogMs = LAUNCH_TIMEOUT_MS + 4 * STEP_TIMEOUT_MS + CONNECT_TIMEOUT_MS +
    2 * LEAVE_TIMEOUT_MS + opts.seconds * 1000 + callMs + extraMs;
  setTimeout(() => fail(`gave up after ${Math.round(watchdogMs / 1000)} s`), watchdogMs);
  run(opts).then(
    (result) => finish(0, result),
    (err) => fail(err.message.split("\n")[0]),
  );
}
