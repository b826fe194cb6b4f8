// The package against its sources: the entry point is static/amphi.js, and amphi.d.ts keeps up
// with what the module exports and emits and with the requests the server parses.

import assert from "node:assert/strict";
import { readFileSync, realpathSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const js = (path) => fileURLToPath(new URL(`../${path}`, import.meta.url));
const declarations = readFileSync(js("amphi.d.ts"), "utf8");
const source = readFileSync(js("../static/amphi.js"), "utf8");

test("the package's entry point is static/amphi.js, the module the server embeds", () => {
  const entry = fileURLToPath(import.meta.resolve("amphi-client"));
  assert.equal(realpathSync(entry), realpathSync(js("../static/amphi.js")));
  const manifest = JSON.parse(readFileSync(js("package.json"), "utf8"));
  assert.equal(manifest.exports["."].types, "./amphi.d.ts");
  assert.equal(manifest.types, "./amphi.d.ts");
});

test("amphi.d.ts declares exactly the module's runtime exports", async () => {
  const runtime = Object.keys(await import("amphi-client")).sort();
  const declared = [...declarations.matchAll(/^export (?:declare )?(?:class|function|const|let|var) (\w+)/gm)]
    .map((m) => m[1])
    .sort();
  assert.deepEqual(declared, runtime);
});

test("amphi.d.ts names every event the client dispatches by a fixed name", () => {
  const emitted = new Set(
    [...source.matchAll(/(?:#emit|\.emit)\("([a-z_]+)"/g)].map((m) => m[1]),
  );
  assert.ok(emitted.size >= 5, [...emitted].join(", "));
  const eventMap = declarations.slice(
    declarations.indexOf("export interface ServerEvents"),
    declarations.indexOf("export interface RequestOptions"),
  );
  for (const name of emitted) {
    assert.match(eventMap, new RegExp(`^\\s+${name}: `, "m"), `"${name}" is not in AmphiEventMap`);
  }
});

test("amphi.d.ts types every request type the server parses", () => {
  const proto = readFileSync(js("../crates/proto/src/protocol.rs"), "utf8");
  const list = proto.slice(proto.indexOf("const REQUEST_TYPES"), proto.indexOf("];", proto.indexOf("const REQUEST_TYPES")));
  const types = [...list.matchAll(/"([a-z_]+)"/g)].map((m) => m[1]);
  assert.ok(types.length > 20, types.join(", "));
  const requests = declarations.slice(declarations.indexOf("export interface Requests"));
  for (const type of types) {
    assert.match(requests, new RegExp(`^  ${type}: \\{`, "m"), `request "${type}" is not in Requests`);
  }
});
