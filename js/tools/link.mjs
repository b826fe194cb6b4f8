// js/amphi.js is a symlink to static/amphi.js, the one source of the module (the server embeds
// that file). npm leaves symlinks out of a tarball, so `copy` (prepack) puts a copy in its place
// for the tarball and `link` (postpack) puts the symlink back.

import { lstatSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL("../amphi.js", import.meta.url));
const source = fileURLToPath(new URL("../../static/amphi.js", import.meta.url));
const target = "../static/amphi.js";

function isLink() {
  try {
    return lstatSync(here).isSymbolicLink();
  } catch {
    return false;
  }
}

const action = process.argv[2];
if (action === "copy") {
  if (isLink()) {
    const text = readFileSync(source);
    rmSync(here);
    writeFileSync(here, text);
  }
} else if (action === "link") {
  if (!isLink()) {
    let copy = null;
    try {
      copy = readFileSync(here);
    } catch {
      // Missing: nothing to keep.
    }
    if (copy !== null && !copy.equals(readFileSync(source))) {
      console.error(`${here} differs from ${source}; edit static/amphi.js, then remove js/amphi.js and run this again`);
      process.exit(1);
    }
    rmSync(here, { force: true });
    symlinkSync(target, here);
  }
} else {
  console.error("usage: node tools/link.mjs copy|link");
  process.exit(2);
}
