// Packs the package as npm would publish it and checks the tarball: amphi.js must be
// static/amphi.js byte for byte (js/amphi.js is a symlink, which npm would leave out), with
// its declarations and README beside it, and the symlink must be back afterwards.

import { execFileSync } from "node:child_process";
import { lstatSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const js = fileURLToPath(new URL("..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "amphi-pack-"));
try {
  const [{ filename, files }] = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--pack-destination", dir], { cwd: js, encoding: "utf8" }),
  );
  const paths = files.map((f) => f.path).sort();
  const wanted = ["README.md", "amphi.d.ts", "amphi.js", "package.json"];
  if (JSON.stringify(paths) !== JSON.stringify(wanted)) {
    throw new Error(`the tarball holds ${paths.join(", ")}; expected ${wanted.join(", ")}`);
  }
  execFileSync("tar", ["-xzf", join(dir, filename), "-C", dir]);
  const packed = readFileSync(join(dir, "package", "amphi.js"));
  if (!packed.equals(readFileSync(join(js, "..", "static", "amphi.js")))) {
    throw new Error("the tarball's amphi.js differs from static/amphi.js");
  }
  if (!lstatSync(join(js, "amphi.js")).isSymbolicLink()) {
    throw new Error("js/amphi.js is no longer a symlink to ../static/amphi.js after packing");
  }
  console.log(`${filename}: ${paths.join(", ")}; amphi.js is static/amphi.js`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
