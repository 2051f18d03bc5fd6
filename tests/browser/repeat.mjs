#!/usr/bin/env node
// Runs a driver N times against the same server and prints the median of each
// timing (one JSON line), for reports such as "median of 10".
//
//   node repeat.mjs N official_client.mjs|builtin_page.mjs URL [driver args]
//
// Run it where the driver would run (in the server's loopback-only network
// namespace). Exit status 0 when every run passed.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { HERE, median } from "./lib/common.mjs";

const [n, driver, ...rest] = process.argv.slice(2);
if (!n || !driver || !rest.length) {
  process.stderr.write("usage: node repeat.mjs N DRIVER URL [driver args]\n");
  process.exit(2);
}
const runs = [];
for (let i = 0; i < Number(n); i++) {
  const r = spawnSync(process.execPath, [join(HERE, driver), ...rest], { encoding: "utf8", timeout: 150000 });
  const line = (r.stdout ?? "").trim().split("\n").filter((l) => l.startsWith("{")).pop();
  let v = null;
  try {
    v = JSON.parse(line);
  } catch {}
  runs.push(v);
  process.stderr.write(`run ${i + 1}: ${v ? `ok=${v.ok} ${JSON.stringify(v.timings)}` : `no result (exit ${r.status})`}\n`);
  if (v && !v.ok) process.stderr.write(`  problems: ${JSON.stringify(v.problems)} ${v.error ?? ""}\n`);
}
const ok = runs.filter((v) => v?.ok);
const keys = [...new Set(ok.flatMap((v) => Object.keys(v.timings)))];
const medians = Object.fromEntries(keys.map((k) => {
  const xs = ok.map((v) => v.timings[k]).filter((x) => typeof x === "number");
  return [k, xs.length ? Math.round(median(xs) * 10) / 10 : null];
}));
const rtt = ok.map((v) => v.stats?.rttMs).filter((x) => typeof x === "number");
process.stdout.write(JSON.stringify({ ok: ok.length === runs.length, runs: runs.length, passed: ok.length, driver, medians, iceRttMsMedian: median(rtt) }) + "\n");
process.exit(ok.length === runs.length ? 0 : 1);
