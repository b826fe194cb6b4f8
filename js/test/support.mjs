// Shared by the tests: a real `amphi serve --dev` on free loopback ports, tokens from its
// `POST /dev/token`, and bounded waits for the client's events.

import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

/** Every WebSocket the client opened, newest last: the resume test cuts one off. */
export const sockets = [];

// amphi.js is written for browsers, whose WebSocket reports a failed connection only through
// its close event. ws also emits "error", which would end the process when nobody listens.
class NodeWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on("error", () => {});
    sockets.push(this);
  }
}
// Always ws, even where Node has a WebSocket of its own, so every Node version runs the same.
globalThis.WebSocket = NodeWebSocket;

const JS_DIR = fileURLToPath(new URL("..", import.meta.url));
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
export const EVENT_TIMEOUT_MS = 5_000;

/** The binary: AMPHI_BIN (relative to where npm was started), else the debug build. */
function binaryPath() {
  const given = process.env.AMPHI_BIN;
  if (!given) return resolve(JS_DIR, "../target/debug/amphi");
  return resolve(process.env.INIT_CWD ?? process.cwd(), given);
}

async function freeTcpPort() {
  const server = createServer();
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", ok);
  });
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

async function freeUdpPort() {
  const socket = createSocket("udp4");
  await new Promise((ok, fail) => {
    socket.once("error", fail);
    socket.bind(0, "127.0.0.1", ok);
  });
  const { port } = socket.address();
  await new Promise((ok) => socket.close(ok));
  return port;
}

/**
 * Starts `amphi serve --dev` and resolves once `/healthz` answers.
 * @returns {Promise<{url: string, token: Function, stop: Function}>}
 */
export async function startServer() {
  const bin = binaryPath();
  if (!existsSync(bin)) {
    throw new Error(`no amphi binary at ${bin}: build it (cargo build) or set AMPHI_BIN`);
  }
  const [httpPort, udpPort] = [await freeTcpPort(), await freeUdpPort()];
  const dataHome = await mkdtemp(join(tmpdir(), "amphi-js-test-"));
  // The server reads every AMPHI_* variable as a configuration key and refuses unknown ones
  // (AMPHI_BIN among them); the call log and bans go to a directory of this run's own.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("AMPHI_") || k === "AMPHI_LOG"),
  );
  env.XDG_DATA_HOME = dataHome;
  const child = spawn(
    bin,
    ["serve", "--dev", "--bind", `127.0.0.1:${httpPort}`, "--udp-port", String(udpPort)],
    { env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  const keep = (chunk) => {
    // The tail is enough to say why a start failed; a long run's log would only grow.
    output = (output + chunk).slice(-20_000);
  };
  child.stdout.setEncoding("utf8").on("data", keep);
  child.stderr.setEncoding("utf8").on("data", keep);
  const exited = new Promise((ok) => child.once("exit", (code, signal) => ok({ code, signal })));
  let running = true;
  exited.then(() => { running = false; });
  // A test process that dies without reaching stop() must not leave the server behind.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  const url = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (!running) {
      throw new Error(`amphi exited before answering on ${url}:\n${output}`);
    }
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) });
      if (res.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`amphi did not answer on ${url} within ${START_TIMEOUT_MS} ms:\n${output}`);
    }
    await new Promise((ok) => setTimeout(ok, 50));
  }

  async function stop() {
    process.removeListener("exit", killOnExit);
    if (running) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    await rm(dataHome, { recursive: true, force: true });
  }

  /**
   * A development token for `identity`; `role` is the one role it allows (none: the
   * default role only), `grants` at most ["call"].
   */
  async function token(identity, { role, channel, grants } = {}) {
    const res = await fetch(`${url}/dev/token`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ identity, role, channel, grants }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(`POST /dev/token ${res.status}: ${JSON.stringify(body)}`);
    return body.token;
  }

  return { url, token, stop };
}

let counter = 0;
/** A name no other test of this run uses, so tests sharing a server stay apart. */
export function unique(prefix) {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

/**
 * Resolves with the `detail` of the first `name` event of `target` that `accept` takes;
 * rejects after `timeoutMs`. Listen before acting: events already past are not seen.
 */
export function nextEvent(target, name, accept = () => true, timeoutMs = EVENT_TIMEOUT_MS) {
  return new Promise((ok, fail) => {
    const seen = [];
    const onEvent = (event) => {
      seen.push(event.detail);
      if (!accept(event.detail)) return;
      clearTimeout(timer);
      target.removeEventListener(name, onEvent);
      ok(event.detail);
    };
    const timer = setTimeout(() => {
      target.removeEventListener(name, onEvent);
      fail(new Error(`no matching '${name}' event within ${timeoutMs} ms; saw ${JSON.stringify(seen)}`));
    }, timeoutMs);
    target.addEventListener(name, onEvent);
  });
}

/** Records every `name` event of `target` from now on. */
export function record(target, name) {
  const events = [];
  target.addEventListener(name, (event) => events.push(event.detail));
  return events;
}
