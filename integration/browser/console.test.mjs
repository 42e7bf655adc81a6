// Browser end-to-end test of the cloudlet web console.
//
// Starts the real daemon (`cloudlet serve --http 127.0.0.1:0` on a fresh data
// dir), drives Debian's Chromium through playwright-core and checks the main
// console flows: login, overview with the live node and events, token
// creation, the audit log, networking (VPC, subnet, security group, load
// balancer, port forward), containers (an uploaded image, a container with
// live logs, stop, start, delete), storage (a volume, a snapshot, a clone,
// growth), object storage (a bucket, an object uploaded into a folder and
// downloaded again, an access key), functions (deploy, a refused component,
// test requests, log, metrics, environment, a second version, rollback),
// instances (instances.step.mjs: a VM image, a refused memory size, status,
// the serial console over a websocket and its log, stop, delete), project
// settings (projects.step.mjs: quotas and their use, a function domain, a
// refused domain at its field) and the language switch.
//
//   cd integration/browser && npm ci && npm test
//
// Environment: CLOUDLET_BIN (default ../../target/release/cloudlet),
// CHROMIUM_PATH (default /usr/bin/chromium), E2E_HEADFUL=1 to watch.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { instancesStep, killInstanceWorkers } from "./instances.step.mjs";
import { projectsStep } from "./projects.step.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.CLOUDLET_BIN ?? path.resolve(HERE, "../../target/release/cloudlet");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = path.join(HERE, "artifacts");

const START_TIMEOUT = 60_000;
const NODE_READY_TIMEOUT = 30_000;
const UI_TIMEOUT = 15_000;
// Stopping a container may wait out its stop timeout (10 s) before SIGKILL.
const CONTAINER_TIMEOUT = 60_000;
// Making, copying and growing a volume file is quick; this covers a slow disk.
const STORAGE_TIMEOUT = 30_000;
const TEST_IMAGES = path.resolve(HERE, "../../target/release/test-images");
// The example function components (`bash images/functions/build.sh`).
const FUNCTIONS = path.resolve(HERE, "../../target/functions");

/** Shared state of the run, filled by before() and the steps. */
const run = {
  dataDir: "",
  daemon: /** @type {import("node:child_process").ChildProcess | null} */ (null),
  daemonExited: /** @type {Promise<void> | null} */ (null),
  base: "",
  password: "",
  browser: /** @type {import("playwright-core").Browser | null} */ (null),
  page: /** @type {import("playwright-core").Page | null} */ (null),
  pageErrors: /** @type {string[]} */ ([]),
  foreignRequests: /** @type {string[]} */ ([]),
  cspViolations: /** @type {string[]} */ ([]),
  consoleLog: /** @type {string[]} */ ([]),
};

// ---------------------------------------------------------------- helpers

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
async function waitFor(what, check, timeoutMs, intervalMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError.message}` : ""}`);
    }
    await delay(intervalMs);
  }
}

function page() {
  assert.ok(run.page, "the browser page is not open (an earlier step failed)");
  return run.page;
}

function byTestId(id) {
  return `[data-testid="${id}"]`;
}

/** Runs a step; on failure saves a screenshot named after it. */
async function step(name, fn) {
  try {
    await fn();
  } catch (err) {
    if (run.page) {
      const file = path.join(ARTIFACTS, `failure-${name}.png`);
      await run.page.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.error(`step ${name} failed; screenshot: ${file}; url: ${run.page.url()}`);
    }
    throw err;
  }
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

async function startDaemon() {
  assert.ok(
    fs.existsSync(BIN),
    `daemon binary not found at ${BIN}: build it with \`cargo build --release\` or set CLOUDLET_BIN`,
  );
  run.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "cloudlet-e2e-"));
  const logFile = path.join(ARTIFACTS, "daemon.log");
  const log = fs.openSync(logFile, "w");
  const child = spawn(BIN, ["serve", "--data-dir", run.dataDir, "--http", "127.0.0.1:0", "--s3", "127.0.0.1:0", "--gateway", "127.0.0.1:0"], {
    stdio: ["ignore", log, log],
    env: { ...process.env, RUST_BACKTRACE: "1" },
  });
  fs.closeSync(log);
  run.daemon = child;
  let exitInfo = null;
  run.daemonExited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exitInfo = { code, signal };
      resolve();
    });
  });
  child.once("error", (err) => {
    exitInfo = { code: null, signal: null, error: err.message };
  });

  const addrFile = path.join(run.dataDir, "http.addr");
  const addr = await waitFor(
    `${addrFile}`,
    () => {
      if (exitInfo) throw new Error(`daemon exited early (${JSON.stringify(exitInfo)}):\n${tail(logFile)}`);
      if (!fs.existsSync(addrFile)) return null;
      const text = fs.readFileSync(addrFile, "utf8").trim();
      return /:\d+$/.test(text) ? text : null;
    },
    START_TIMEOUT,
    100,
  ).catch((err) => {
    if (exitInfo) throw err;
    throw new Error(`${err.message}\n--- daemon log ---\n${tail(logFile)}`);
  });
  run.base = `http://${addr.replace(/^0\.0\.0\.0:/, "127.0.0.1:")}`;

  await waitFor(
    `${run.base}/readyz to answer 200`,
    async () => {
      if (exitInfo) throw new Error(`daemon exited early (${JSON.stringify(exitInfo)}):\n${tail(logFile)}`);
      const res = await fetch(`${run.base}/readyz`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      return res.status === 200;
    },
    START_TIMEOUT,
    250,
  );

  const pwFile = path.join(run.dataDir, "admin.password");
  run.password = await waitFor(
    pwFile,
    () => (fs.existsSync(pwFile) ? fs.readFileSync(pwFile, "utf8").trim() : null),
    10_000,
    100,
  );
}

// Lazily unmount everything mounted under `dir` (the projects' pinned user namespaces, and
// container mounts if any are left), deepest first, so the directory can be removed.
function unmountUnder(dir) {
  let info = "";
  try {
    info = fs.readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return;
  }
  const points = info
    .split("\n")
    .map((l) => l.split(" ")[4])
    .filter((m) => m && m.startsWith(dir + "/"))
    .sort((a, b) => b.length - a.length);
  for (const m of points) spawnSync("umount", ["-l", m]);
}

async function stopDaemon() {
  const child = run.daemon;
  run.daemon = null;
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill("SIGTERM");
    const exited = await Promise.race([run.daemonExited.then(() => true), delay(10_000).then(() => false)]);
    if (!exited) {
      child.kill("SIGKILL");
      await Promise.race([run.daemonExited, delay(5_000)]);
    }
  }
  if (run.dataDir) {
    // The daemon leaves live VMM workers for its next start to adopt: end ours.
    killInstanceWorkers(run.dataDir);
    unmountUnder(run.dataDir);
    fs.rmSync(run.dataDir, { recursive: true, force: true });
    run.dataDir = "";
  }
}

// Last resort if the runner is torn down without after() (e.g. an uncaught error).
process.on("exit", () => {
  if (run.daemon && run.daemon.exitCode === null) run.daemon.kill("SIGKILL");
  if (run.dataDir) {
    unmountUnder(run.dataDir);
    fs.rmSync(run.dataDir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------- lifecycle

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of fs.readdirSync(ARTIFACTS)) {
    if (f.startsWith("failure-")) fs.rmSync(path.join(ARTIFACTS, f));
  }
  await startDaemon();

  run.browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: process.env.E2E_HEADFUL !== "1",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const context = await run.browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US" });
  context.setDefaultTimeout(UI_TIMEOUT);
  const p = await context.newPage();
  p.on("pageerror", (err) => run.pageErrors.push(String(err?.stack ?? err)));
  p.on("console", (msg) => {
    run.consoleLog.push(`[${msg.type()}] ${msg.text()}`);
    if (/Content Security Policy/i.test(msg.text())) run.cspViolations.push(msg.text());
  });
  p.on("request", (req) => {
    const url = req.url();
    if (url.startsWith("data:") || url.startsWith("blob:")) return;
    if (!url.startsWith(run.base + "/")) run.foreignRequests.push(url);
  });
  run.page = p;
}, { timeout: START_TIMEOUT + 30_000 });

after(async () => {
  try {
    if (run.consoleLog.length) fs.writeFileSync(path.join(ARTIFACTS, "browser-console.log"), run.consoleLog.join("\n") + "\n");
    await run.browser?.close();
  } finally {
    run.browser = null;
    run.page = null;
    await stopDaemon();
  }
}, { timeout: 30_000 });

// ---------------------------------------------------------------- tests

test("an anonymous visitor is sent to the login page", { timeout: 60_000 }, async () => {
  await step("anonymous", async () => {
    const p = page();
    await p.goto(`${run.base}/`);
    await p.waitForURL((url) => url.pathname === "/login");
    await p.locator(byTestId("login-form")).waitFor();
  });
});

test("a wrong password shows the API error", { timeout: 60_000 }, async () => {
  await step("bad-login", async () => {
    const p = page();
    await p.fill(byTestId("login-username"), "admin");
    await p.fill(byTestId("login-password"), "definitely-not-the-password");
    await p.click(byTestId("login-submit"));
    const banner = p.locator(byTestId("error-banner"));
    await banner.waitFor();
    const message = (await banner.locator(byTestId("error-message")).textContent())?.trim() ?? "";
    assert.ok(message.length > 0, "the error banner shows the error message");
    assert.equal(new URL(p.url()).pathname, "/login");
  });
});

test("admin logs in and lands on the overview", { timeout: 60_000 }, async () => {
  await step("login", async () => {
    const p = page();
    await p.fill(byTestId("login-username"), "admin");
    await p.fill(byTestId("login-password"), run.password);
    await p.click(byTestId("login-submit"));
    await p.waitForURL((url) => url.pathname === "/");
    const actor = await p.locator(byTestId("whoami-actor")).textContent();
    assert.match(actor ?? "", /admin/, "the header shows the signed-in user");
  });
});

test("the overview shows the live node as Ready", { timeout: NODE_READY_TIMEOUT + 30_000 }, async () => {
  await step("node-ready", async () => {
    const p = page();
    await p.locator(byTestId("node-card")).first().waitFor({ timeout: NODE_READY_TIMEOUT });
    await p
      .locator(`${byTestId("node-card")} ${byTestId("node-phase")}`, { hasText: /^\s*Ready\s*$/ })
      .first()
      .waitFor({ timeout: NODE_READY_TIMEOUT });
    await p.locator(`${byTestId("counts-card")} .stat`).first().waitFor();
  });
});

test("live events arrive in the events panel", { timeout: 60_000 }, async () => {
  await step("events", async () => {
    const p = page();
    await p.locator(`${byTestId("events-state")}[data-state="open"]`).waitFor({ timeout: 30_000 });
    // Cause a change the stream must report: create a project through the
    // API with the console's own session (same origin, cookie auth).
    const status = await p.evaluate(async () => {
      const res = await fetch("/v1/projects", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ name: "e2e-live", spec: { description: "made by the browser test" } }),
      });
      return res.status;
    });
    assert.equal(status, 201, "POST /v1/projects answers 201");
    await p.locator(byTestId("event-row"), { hasText: "e2e-live" }).first().waitFor({ timeout: 30_000 });
  });
});

test("creating a token shows its secret once", { timeout: 60_000 }, async () => {
  await step("token", async () => {
    const p = page();
    await p.click(byTestId("nav-tokens"));
    await p.waitForURL((url) => url.pathname === "/tokens");
    await p.locator(byTestId("token-form")).waitFor();
    await p.fill(byTestId("token-name"), "e2e-token");
    await p.selectOption(byTestId("token-role"), "member");
    await p.click(byTestId("token-create"));
    const box = p.locator(byTestId("token-secret"));
    await box.waitFor();
    const secret = (await p.locator(byTestId("token-secret-value")).textContent())?.trim() ?? "";
    assert.ok(secret.length >= 16, `a token secret is shown (got ${secret.length} characters)`);
    const row = p.locator(`${byTestId("token-row")}[data-name="e2e-token"]`);
    await row.waitFor();
    assert.match((await row.textContent()) ?? "", /member/);
  });
});

test("the audit log records the token creation", { timeout: 60_000 }, async () => {
  await step("audit", async () => {
    const p = page();
    await p.click(byTestId("nav-audit"));
    await p.waitForURL((url) => url.pathname === "/audit");
    await p.locator(byTestId("audit-table")).waitFor();
    const findRow = () =>
      p.evaluate(() =>
        Array.from(document.querySelectorAll('[data-testid="audit-row"]')).some((row) => {
          const method = row.querySelector('[data-testid="audit-method"]')?.textContent?.trim();
          const path = row.querySelector('[data-testid="audit-path"]')?.textContent?.trim() ?? "";
          return method === "POST" && path.split("?")[0] === "/v1/tokens";
        }),
      );
    await waitFor(
      "an audit row POST /v1/tokens",
      async () => {
        if (await findRow()) return true;
        await p.click(byTestId("audit-refresh"));
        await p.locator(byTestId("audit-row")).first().waitFor();
        return findRow();
      },
      20_000,
      500,
    );
  });
});

test("networking: a VPC, a subnet and a security group are created, checked and deleted", { timeout: 120_000 }, async () => {
  await step("network", async () => {
    const p = page();
    await p.click(byTestId("nav-network"));
    await p.waitForURL((url) => url.pathname === "/network");
    await p.locator(byTestId("vpc-form")).waitFor();

    // A site admin picks the project; the choice is kept in ?project= across a reload.
    await p.selectOption(byTestId("network-project"), "default");
    await p.waitForURL((url) => url.searchParams.get("project") === "default");

    const row = (kind, name) => p.locator(`${byTestId(`${kind}-row`)}[data-name="${name}"]`);

    // VPC
    await p.fill(byTestId("vpc-name"), "e2e-vpc");
    await p.fill(byTestId("vpc-cidr"), "10.20.0.0/16");
    await p.click(byTestId("vpc-create"));
    await row("vpc", "e2e-vpc").waitFor();
    assert.match((await row("vpc", "e2e-vpc").textContent()) ?? "", /10\.20\.0\.0\/16/);

    // Subnet in it (the VPC select shows names)
    await p.fill(byTestId("subnet-name"), "e2e-subnet");
    await p.selectOption(byTestId("subnet-vpc"), { label: "e2e-vpc" });
    await p.fill(byTestId("subnet-cidr"), "10.20.1.0/24");
    await p.click(byTestId("subnet-create"));
    await row("subnet", "e2e-subnet").waitFor();
    const subnetText = (await row("subnet", "e2e-subnet").textContent()) ?? "";
    assert.match(subnetText, /e2e-vpc/, "the subnet row names its VPC");
    assert.match(subnetText, /10\.20\.1\.0\/24/);

    // Security group with one rule: tcp 80 from anywhere
    await p.fill(byTestId("sg-name"), "e2e-sg");
    await p.selectOption(byTestId("sg-vpc"), { label: "e2e-vpc" });
    await p.click(byTestId("sg-create"));
    const sg = row("sg", "e2e-sg");
    await sg.waitFor();
    assert.equal((await sg.locator(byTestId("sg-rule-count")).textContent())?.trim(), "0");
    await sg.locator(byTestId("sg-rules-toggle")).click();
    const editor = p.locator(`${byTestId("sg-rules")}[data-group="e2e-sg"]`);
    await editor.waitFor();
    await editor.locator(byTestId("sg-rule-protocol")).selectOption("tcp");
    await editor.locator(byTestId("sg-rule-ports")).fill("80");
    await editor.locator(byTestId("sg-rule-source-kind")).selectOption("cidr");
    await editor.locator(byTestId("sg-rule-source-cidr")).fill("0.0.0.0/0");
    await editor.locator(byTestId("sg-rule-add")).click();
    await editor.locator(byTestId("sg-rule")).first().waitFor();
    await editor.locator(byTestId("sg-rules-save")).click();
    await sg.locator(byTestId("sg-rule-count"), { hasText: /^\s*1\s*$/ }).waitFor();

    // After a reload the stored rule is still there (and the project choice too).
    await p.reload();
    await p.locator(byTestId("vpc-form")).waitFor();
    assert.equal(await p.locator(byTestId("network-project")).inputValue(), "default");
    await row("sg", "e2e-sg").locator(byTestId("sg-rule-count"), { hasText: /^\s*1\s*$/ }).waitFor();
    await row("sg", "e2e-sg").locator(byTestId("sg-rules-toggle")).click();
    const rule = p.locator(`${byTestId("sg-rules")}[data-group="e2e-sg"] ${byTestId("sg-rule")}`);
    await rule.first().waitFor();
    assert.equal(await rule.count(), 1);
    const ruleText = (await rule.first().textContent()) ?? "";
    assert.match(ruleText, /TCP/);
    assert.match(ruleText, /80/);
    assert.match(ruleText, /0\.0\.0\.0\/0/);

    // An overlapping subnet is refused: the banner shows the API's 409.
    await p.fill(byTestId("subnet-name"), "e2e-subnet-2");
    await p.selectOption(byTestId("subnet-vpc"), { label: "e2e-vpc" });
    await p.fill(byTestId("subnet-cidr"), "10.20.1.128/25");
    await p.click(byTestId("subnet-create"));
    const banner = p.locator(`${byTestId("subnet-card")} ${byTestId("error-banner")}`);
    await banner.waitFor();
    const bannerText = (await banner.textContent()) ?? "";
    assert.match(bannerText, /409/, `the banner shows HTTP 409 (got ${JSON.stringify(bannerText)})`);
    assert.match(bannerText, /overlap/i, "the banner shows the API's message");
    assert.equal(await row("subnet", "e2e-subnet-2").count(), 0, "no row for the refused subnet");
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await p.screenshot({ path: path.join(ARTIFACTS, "network.png"), fullPage: true });

    // Delete the group, the subnet and the VPC, in that order.
    for (const [kind, name] of [["sg", "e2e-sg"], ["subnet", "e2e-subnet"], ["vpc", "e2e-vpc"]]) {
      const r = row(kind, name);
      await r.locator(byTestId(`delete-${kind}-${name}`)).click();
      await r.locator(byTestId(`delete-${kind}-${name}-confirm`)).click();
      await r.waitFor({ state: "detached" });
    }
    assert.equal(await p.locator(byTestId("vpc-row")).count(), 0, "no VPC is left");
  });
});

test("networking: a load balancer spreads to backends, a port forward needs an uplink", { timeout: 120_000 }, async () => {
  await step("load-balancer", async () => {
    const p = page();
    await p.locator(byTestId("vpc-form")).waitFor();
    const row = (kind, name) => p.locator(`${byTestId(`${kind}-row`)}[data-name="${name}"]`);

    await p.fill(byTestId("vpc-name"), "lb-vpc");
    await p.fill(byTestId("vpc-cidr"), "10.30.0.0/16");
    await p.click(byTestId("vpc-create"));
    await row("vpc", "lb-vpc").waitFor();
    await p.fill(byTestId("subnet-name"), "lb-subnet");
    await p.selectOption(byTestId("subnet-vpc"), { label: "lb-vpc" });
    await p.fill(byTestId("subnet-cidr"), "10.30.1.0/24");
    await p.click(byTestId("subnet-create"));
    await row("subnet", "lb-subnet").waitFor();

    // A malformed backend is caught in the form and named; nothing is created.
    await p.fill(byTestId("lb-name"), "web-lb");
    await p.selectOption(byTestId("lb-vpc"), { label: "lb-vpc" });
    await p.selectOption(byTestId("lb-listen"), { label: "Internal VIP in subnet lb-subnet" });
    await p.fill(byTestId("lb-vip"), "10.30.1.200");
    await p.fill(byTestId("lb-port"), "80");
    await p.fill(byTestId("lb-backends"), "10.30.1.10:8080, 10.30.1.11:notaport");
    await p.click(byTestId("lb-create"));
    const lbBanner = p.locator(`${byTestId("lb-card")} ${byTestId("error-banner")}`);
    await lbBanner.waitFor();
    assert.match((await lbBanner.textContent()) ?? "", /10\.30\.1\.11:notaport/);
    // A backend outside the VPC: the API's 422 names the field.
    await p.fill(byTestId("lb-backends"), "10.99.0.1:8080");
    await p.click(byTestId("lb-create"));
    await p.locator(`${byTestId("lb-card")} ${byTestId("error-field")}`, { hasText: "spec.backends[0].ip" }).waitFor();
    assert.match((await lbBanner.textContent()) ?? "", /422/, "the banner shows HTTP 422");
    assert.equal(await row("lb", "web-lb").count(), 0, "no row for the refused load balancer");

    // An internal VIP with two backends, one weighted.
    await p.fill(byTestId("lb-backends"), "10.30.1.10:8080, 10.30.1.11:8080*2");
    await p.click(byTestId("lb-create"));
    const lb = row("lb", "web-lb");
    await lb.waitFor();
    await lbBanner.waitFor({ state: "detached" });
    const listener = (await lb.locator(byTestId("lb-listener")).textContent()) ?? "";
    assert.equal(listener.trim(), "10.30.1.200:80/tcp", "the row shows the VIP listener");
    const backends = lb.locator(byTestId("lb-backend"));
    await backends.nth(1).waitFor();
    assert.equal(await backends.count(), 2, "both backends are listed");
    assert.match((await backends.nth(0).textContent()) ?? "", /^10\.30\.1\.10:8080 /);
    assert.match((await backends.nth(1).textContent()) ?? "", /^10\.30\.1\.11:8080\*2 /);
    for (let i = 0; i < 2; i++) {
      assert.match((await backends.nth(i).textContent()) ?? "", /(healthy|down|not checked yet)$/, "each backend shows its health");
    }

    // A port forward on the uplink address: this site has no uplink, and the banner says so.
    await p.fill(byTestId("eni-name"), "lb-eni");
    await p.selectOption(byTestId("eni-subnet"), { label: "lb-subnet (10.30.1.0/24)" });
    await p.click(byTestId("eni-create"));
    await row("eni", "lb-eni").waitFor();
    await p.fill(byTestId("pf-name"), "ssh");
    await p.fill(byTestId("pf-public-port"), "12222");
    await p.fill(byTestId("pf-private-port"), "22");
    await p.click(byTestId("pf-create"));
    const pfBanner = p.locator(`${byTestId("pf-card")} ${byTestId("error-banner")}`);
    await pfBanner.waitFor();
    const pfText = (await pfBanner.textContent()) ?? "";
    assert.match(pfText, /422/, `the banner shows HTTP 422 (got ${JSON.stringify(pfText)})`);
    assert.match(pfText, /uplink/, "the banner shows the API's message");
    assert.match((await pfBanner.locator(byTestId("error-field")).textContent()) ?? "", /:\s*spec\s*$/, "the banner names the field spec");
    assert.equal(await row("pf", "ssh").count(), 0, "no row for the refused port forward");
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await p.screenshot({ path: path.join(ARTIFACTS, "load-balancer.png"), fullPage: true });

    for (const [kind, name] of [["lb", "web-lb"], ["eni", "lb-eni"], ["subnet", "lb-subnet"], ["vpc", "lb-vpc"]]) {
      const r = row(kind, name);
      await r.locator(byTestId(`delete-${kind}-${name}`)).click();
      await r.locator(byTestId(`delete-${kind}-${name}-confirm`)).click();
      await r.waitFor({ state: "detached" });
    }
  });
});

test("containers: an uploaded image runs a container with live logs, stop, start and delete", { timeout: 300_000 }, async () => {
  await step("containers", async () => {
    const p = page();

    // The test cannot pull from a registry: upload the busybox-httpd archive through the API
    // (with the admin token), into project default.
    const archive = path.join(TEST_IMAGES, "busybox-httpd.oci.tar");
    if (!fs.existsSync(archive)) {
      const built = spawnSync("bash", [path.resolve(HERE, "../../images/busybox-httpd/build.sh"), TEST_IMAGES], {
        stdio: ["ignore", "inherit", "inherit"],
        timeout: 180_000,
      });
      assert.equal(built.status, 0, "images/busybox-httpd/build.sh builds the test image");
    }
    const token = fs.readFileSync(path.join(run.dataDir, "admin.token"), "utf8").trim();
    const res = await fetch(`${run.base}/v1/images/import?name=httpd&project=default`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/x-tar" },
      body: fs.readFileSync(archive),
    });
    const answer = await res.text();
    assert.equal(res.status, 201, `POST /v1/images/import answers 201 (got ${res.status}: ${answer.slice(0, 300)})`);

    await p.click(byTestId("nav-containers"));
    await p.waitForURL((url) => url.pathname === "/containers");
    await p.locator(byTestId("container-form")).waitFor();
    await p.selectOption(byTestId("containers-project"), "default");
    await p.waitForURL((url) => url.searchParams.get("project") === "default");

    const row = (kind, name) => p.locator(`${byTestId(`${kind}-row`)}[data-name="${name}"]`);
    const phase = (kind, name, text) =>
      row(kind, name).locator(byTestId(`${kind}-phase`), { hasText: new RegExp(`^\\s*${text}\\s*$`) });

    // The uploaded image is Ready and offered by the run form.
    await phase("image", "httpd", "Ready").waitFor();
    assert.match((await row("image", "httpd").textContent()) ?? "", /sha256:[0-9a-f]{12}/, "the image row shows its digest");

    // Run: args alone would replace only the cmd of the image's /bin/httpd entrypoint, so the
    // command replaces the entrypoint; the JSON array keeps the script in one argument.
    await p.fill(byTestId("container-name"), "hello");
    await p.selectOption(byTestId("container-image"), { label: "httpd" });
    await p.selectOption(byTestId("container-interface"), "");
    await p.selectOption(byTestId("container-restart-policy"), "never");
    await p.fill(byTestId("container-memory"), "64");
    await p.fill(byTestId("container-command"), "/bin/sh");
    await p.fill(byTestId("container-args"), JSON.stringify(["-c", "echo hello-from-console; sleep 1000"]));
    await p.fill(byTestId("container-env"), "GREETING=hello\nMODE=e2e");
    await p.click(byTestId("container-create"));
    const ctr = row("container", "hello");
    await ctr.waitFor();
    await phase("container", "hello", "Running").waitFor({ timeout: CONTAINER_TIMEOUT });
    assert.match((await ctr.textContent()) ?? "", /loopback only/, "without an interface the container has only loopback");

    // Live logs: the line the container wrote arrives in the panel.
    await ctr.locator(byTestId("container-logs-toggle")).click();
    const logs = p.locator(`${byTestId("container-logs")}[data-container="hello"]`);
    await logs.waitFor();
    await logs.locator(byTestId("container-logs-output"), { hasText: "hello-from-console" }).waitFor({ timeout: 30_000 });
    await p.locator(`${byTestId("container-logs")}[data-container="hello"][data-state="following"]`).waitFor();

    // An image in use cannot be deleted: the banner shows the API's 409.
    await row("image", "httpd").locator(byTestId("delete-image-httpd")).click();
    await row("image", "httpd").locator(byTestId("delete-image-httpd-confirm")).click();
    const imageBanner = p.locator(`${byTestId("image-card")} ${byTestId("error-banner")}`);
    await imageBanner.waitFor();
    assert.match((await imageBanner.textContent()) ?? "", /409/, "the banner shows HTTP 409");
    assert.equal(await row("image", "httpd").count(), 1, "the image is still there");

    // (From the top: the sidebar and the header are sticky.)
    await p.evaluate(() => window.scrollTo(0, 0));
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await p.screenshot({ path: path.join(ARTIFACTS, "containers.png"), fullPage: true });
    // The same page in Chinese, then back to English for the steps that follow.
    await p.selectOption(byTestId("lang-switch"), "zh-CN");
    await p.locator("h1", { hasText: "容器" }).waitFor();
    await p.locator(byTestId("container-logs-refresh"), { hasText: "最近 200 行" }).waitFor();
    await p.evaluate(() => window.scrollTo(0, 0));
    await p.screenshot({ path: path.join(ARTIFACTS, "containers-zh.png"), fullPage: true });
    await p.selectOption(byTestId("lang-switch"), "en");
    await p.locator("h1", { hasText: "Containers" }).waitFor();

    // Stop: the log stream ends with the container.
    await ctr.locator(byTestId("container-stop")).click();
    await phase("container", "hello", "Stopped").waitFor({ timeout: CONTAINER_TIMEOUT });
    await p.locator(`${byTestId("container-logs")}[data-container="hello"][data-state="ended"]`).waitFor({ timeout: CONTAINER_TIMEOUT });

    // Start again: the panel follows the new run, whose first line arrives too.
    await ctr.locator(byTestId("container-start")).click();
    await phase("container", "hello", "Running").waitFor({ timeout: CONTAINER_TIMEOUT });
    await p.locator(`${byTestId("container-logs")}[data-container="hello"][data-state="following"]`).waitFor({ timeout: 30_000 });
    await waitFor(
      "a second hello-from-console line",
      async () => ((await logs.locator(byTestId("container-logs-output")).textContent()) ?? "").split("hello-from-console").length > 2,
      30_000,
      250,
    );

    // Delete the container (the log panel goes with it), then the image it used.
    await ctr.locator(byTestId("delete-container-hello")).click();
    await ctr.locator(byTestId("delete-container-hello-confirm")).click();
    await ctr.waitFor({ state: "detached", timeout: CONTAINER_TIMEOUT });
    await logs.waitFor({ state: "detached" });
    await waitFor(
      "the image httpd to be deleted",
      async () => {
        await row("image", "httpd").locator(byTestId("delete-image-httpd")).click();
        await row("image", "httpd").locator(byTestId("delete-image-httpd-confirm")).click();
        await row("image", "httpd").waitFor({ state: "detached", timeout: 3_000 });
        return true;
      },
      CONTAINER_TIMEOUT,
      1_000,
    );
    assert.equal(await p.locator(byTestId("container-row")).count(), 0, "no container is left");

    // The console's own upload (cookie session, raw body): the name comes from the file name.
    await p.setInputFiles(byTestId("image-import-file"), archive);
    assert.equal(await p.inputValue(byTestId("image-import-name")), "busybox-httpd");
    await p.locator(byTestId("image-import-file-name"), { hasText: "busybox-httpd.oci.tar" }).waitFor();
    await p.click(byTestId("image-import"));
    await phase("image", "busybox-httpd", "Ready").waitFor({ timeout: 30_000 });
    await p.locator(`${byTestId("image-card")} ${byTestId("notice")}`, { hasText: "busybox-httpd" }).waitFor();
    await row("image", "busybox-httpd").locator(byTestId("delete-image-busybox-httpd")).click();
    await row("image", "busybox-httpd").locator(byTestId("delete-image-busybox-httpd-confirm")).click();
    await row("image", "busybox-httpd").waitFor({ state: "detached" });
  });
});

test("storage: a volume is snapshotted, restored to a new volume, grown and deleted", { timeout: 180_000 }, async () => {
  await step("storage", async () => {
    const p = page();
    await p.click(byTestId("nav-storage"));
    await p.waitForURL((url) => url.pathname === "/storage");
    await p.locator(byTestId("volume-form")).waitFor();
    await p.selectOption(byTestId("storage-project"), "default");
    await p.waitForURL((url) => url.searchParams.get("project") === "default");

    const row = (kind, name) => p.locator(`${byTestId(`${kind}-row`)}[data-name="${name}"]`);
    const exactly = (text) => new RegExp(`^\\s*${text}\\s*$`);
    const phase = (kind, name, text) => row(kind, name).locator(byTestId(`${kind}-phase`), { hasText: exactly(text) });
    const volumeMib = (name, mib) => row("volume", name).locator(byTestId("volume-mib"), { hasText: exactly(mib) });

    // An empty 64 MiB volume: a real (thin) file in the pool, since the daemon runs as root.
    await p.fill(byTestId("volume-name"), "vol1");
    await p.fill(byTestId("volume-size"), "64");
    await p.selectOption(byTestId("volume-source"), "");
    await p.click(byTestId("volume-create"));
    await phase("volume", "vol1", "Available").waitFor({ timeout: STORAGE_TIMEOUT });
    await volumeMib("vol1", "64").waitFor();
    assert.match((await row("volume", "vol1").locator(byTestId("volume-used")).textContent()) ?? "", /^\d+\.\d$/, "used MiB has one decimal");

    // The row's Snapshot action names the snapshot after the volume and the time.
    await row("volume", "vol1").locator(byTestId("volume-snapshot")).click();
    const snap = p.locator(byTestId("snapshot-row"), { has: p.locator(byTestId("snapshot-volume"), { hasText: exactly("vol1") }) });
    await snap.waitFor();
    const snapName = (await snap.getAttribute("data-name")) ?? "";
    assert.match(snapName, /^vol1-\d{14}$/, "the snapshot is named <volume>-<yyyymmddhhmmss>");
    await p.locator(`${byTestId("volume-card")} ${byTestId("notice")}`, { hasText: snapName }).waitFor();
    await phase("snapshot", snapName, "Ready").waitFor({ timeout: STORAGE_TIMEOUT });
    await row("snapshot", snapName).locator(byTestId("snapshot-mib"), { hasText: exactly("64") }).waitFor();
    assert.match((await row("snapshot", snapName).locator(byTestId("snapshot-copy")).textContent()) ?? "", /^(reflink|sparse)$/);

    // Restore it into a new volume: a clone of the snapshot's size.
    await row("snapshot", snapName).locator(byTestId("snapshot-restore")).click();
    await row("snapshot", snapName).locator(byTestId("snapshot-restore-name")).fill("vol2");
    await row("snapshot", snapName).locator(byTestId("snapshot-restore-confirm")).click();
    await phase("volume", "vol2", "Available").waitFor({ timeout: STORAGE_TIMEOUT });
    await volumeMib("vol2", "64").waitFor();
    assert.match((await row("volume", "vol2").textContent()) ?? "", new RegExp(`from snapshot ${snapName}`), "the clone names its snapshot");

    // Grow vol1 to 128 MiB; the file follows (no "growing…" once the reconciler is done).
    await row("volume", "vol1").locator(byTestId("volume-grow-size")).fill("128");
    await row("volume", "vol1").locator(byTestId("volume-grow")).click();
    await volumeMib("vol1", "128").waitFor();
    await waitFor(
      "vol1 to be grown to 128 MiB",
      async () => !/growing/.test((await row("volume", "vol1").textContent()) ?? ""),
      STORAGE_TIMEOUT,
      250,
    );

    // A volume never shrinks: the API's 422 names the field.
    await row("volume", "vol1").locator(byTestId("volume-grow-size")).fill("32");
    await row("volume", "vol1").locator(byTestId("volume-grow")).click();
    const banner = p.locator(`${byTestId("volume-card")} ${byTestId("error-banner")}`);
    await p.locator(`${byTestId("volume-card")} ${byTestId("error-field")}`, { hasText: "spec.size_mib" }).waitFor();
    assert.match((await banner.textContent()) ?? "", /422/, "the banner shows HTTP 422");
    await volumeMib("vol1", "128").waitFor();

    await p.evaluate(() => window.scrollTo(0, 0));
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await p.screenshot({ path: path.join(ARTIFACTS, "storage.png"), fullPage: true });
    // The same page in Chinese, then back to English for the steps that follow.
    await p.selectOption(byTestId("lang-switch"), "zh-CN");
    await p.locator("h1", { hasText: "存储" }).waitFor();
    await row("snapshot", snapName).locator(byTestId("snapshot-restore"), { hasText: "恢复为新卷" }).waitFor();
    await p.evaluate(() => window.scrollTo(0, 0));
    await p.screenshot({ path: path.join(ARTIFACTS, "storage-zh.png"), fullPage: true });
    await p.selectOption(byTestId("lang-switch"), "en");
    await p.locator("h1", { hasText: "Storage" }).waitFor();

    // Delete the clone, the snapshot and the volume, in that order.
    for (const [kind, name] of [["volume", "vol2"], ["snapshot", snapName], ["volume", "vol1"]]) {
      const r = row(kind, name);
      await r.locator(byTestId(`delete-${kind}-${name}`)).click();
      await r.locator(byTestId(`delete-${kind}-${name}-confirm`)).click();
      await r.waitFor({ state: "detached" });
    }
    await banner.waitFor({ state: "detached" });
    assert.equal(await p.locator(byTestId("volume-row")).count(), 0, "no volume is left");
    assert.equal(await p.locator(byTestId("snapshot-row")).count(), 0, "no snapshot is left");
  });
});

test("object storage: a bucket, an object uploaded, downloaded and deleted, and an access key", { timeout: 120_000 }, async () => {
  await step("objects", async () => {
    const p = page();
    await p.click(byTestId("nav-objects"));
    await p.waitForURL((url) => url.pathname === "/objects");
    await p.locator(byTestId("bucket-form")).waitFor();
    await p.selectOption(byTestId("objects-project"), "default");
    await p.waitForURL((url) => url.searchParams.get("project") === "default");
    // The hint names the port the S3 listener really bound (DATA/s3.addr).
    const s3Port = fs.readFileSync(path.join(run.dataDir, "s3.addr"), "utf8").trim().split(":").pop();
    await p.locator(byTestId("objects-endpoint"), { hasText: new RegExp(`:${s3Port}\\b`) }).waitFor();

    const row = (kind, name) => p.locator(`${byTestId(`${kind}-row`)}[data-name="${name}"]`);
    const exactly = (text) => new RegExp(`^\\s*${text}\\s*$`);
    const bucketCard = p.locator(byTestId("bucket-card"));
    const bucketBanner = bucketCard.locator(byTestId("error-banner"));
    const browser = p.locator(byTestId("object-card"));
    const crumb = (prefix) => browser.locator(`${byTestId("object-crumb")}[data-prefix="${prefix}"]`);
    const usage = (count, bytes) => browser.locator(`${byTestId("bucket-usage")}[data-count="${count}"][data-bytes="${bytes}"]`);

    // A private bucket with a 100 MiB quota; creating it opens it in the object browser.
    await p.fill(byTestId("bucket-name"), "e2e-photos");
    await p.selectOption(byTestId("bucket-policy"), "private");
    await p.fill(byTestId("bucket-quota"), "100");
    await p.click(byTestId("bucket-create"));
    const bucket = row("bucket", "e2e-photos");
    await bucket.waitFor();
    await bucket.locator(byTestId("bucket-quota-cell"), { hasText: exactly("100 MiB") }).waitFor();
    await bucket.locator(`${byTestId("bucket-policy-cell")}[data-policy="private"]`).waitFor();
    await crumb("").waitFor();
    assert.match((await browser.locator("h2").textContent()) ?? "", /e2e-photos/, "the browser shows the new bucket");
    await usage(0, 0).waitFor();

    // A name that is not an RFC 1123 label: the API's 422 names the field.
    await p.fill(byTestId("bucket-name"), "Bad_Name");
    await p.click(byTestId("bucket-create"));
    await bucketCard.locator(`${byTestId("error-field")} code`, { hasText: exactly("name") }).waitFor();
    assert.match((await bucketBanner.textContent()) ?? "", /422/, "the banner shows HTTP 422");
    assert.equal(await row("bucket", "Bad_Name").count(), 0, "no bucket Bad_Name");

    // The policy changes in place.
    await bucket.locator(byTestId("bucket-policy-select")).selectOption("public-read");
    await bucket.locator(`${byTestId("bucket-policy-cell")}[data-policy="public-read"]`).waitFor();
    await bucket.locator(byTestId("bucket-quota-cell"), { hasText: exactly("100 MiB") }).waitFor();

    // Open folder docs/ (a prefix with nothing in it yet) and upload a file into it.
    const content = "hello from the console";
    await p.fill(byTestId("object-folder-name"), "docs");
    await p.click(byTestId("object-folder-open"));
    await crumb("docs/").waitFor();
    assert.equal(await browser.locator(byTestId("object-breadcrumb")).getAttribute("data-prefix"), "docs/");
    await p.setInputFiles(byTestId("object-upload-file"), { name: "hello.txt", mimeType: "text/plain", buffer: Buffer.from(content) });
    await p.locator(byTestId("object-upload-file-name"), { hasText: "hello.txt" }).waitFor();
    await p.click(byTestId("object-upload"));
    const object = browser.locator(`${byTestId("object-row")}[data-key="docs/hello.txt"]`);
    await object.waitFor();
    await browser.locator(byTestId("notice"), { hasText: "docs/hello.txt" }).waitFor();
    const size = object.locator(byTestId("object-size"));
    assert.equal(await size.getAttribute("data-bytes"), String(Buffer.byteLength(content)), "the listed size is the file's");
    assert.match((await size.textContent()) ?? "", exactly(`${Buffer.byteLength(content)} B`));
    assert.match((await object.locator(byTestId("object-type")).textContent()) ?? "", /text\/plain/);
    await usage(1, Buffer.byteLength(content)).waitFor();

    // At the root the object is inside folder docs/; clicking the folder goes back into it.
    await crumb("").click();
    const folder = browser.locator(`${byTestId("object-folder-row")}[data-prefix="docs/"]`);
    await folder.waitFor();
    assert.equal(await browser.locator(byTestId("object-row")).count(), 0, "no object at the root itself");
    await folder.locator(byTestId("object-folder")).click();
    await object.waitFor();

    // The download link (cookie session) gives back the bytes that were uploaded.
    const [download] = await Promise.all([p.waitForEvent("download"), object.locator(byTestId("object-download")).click()]);
    assert.equal(download.suggestedFilename(), "hello.txt");
    assert.equal(await download.failure(), null, "the download succeeds");
    assert.equal(fs.readFileSync(await download.path(), "utf8"), content, "the downloaded bytes are the uploaded ones");

    // A bucket that holds an object cannot be deleted: the banner shows the API's 409.
    await bucket.locator(byTestId("delete-bucket-e2e-photos")).click();
    await bucket.locator(byTestId("delete-bucket-e2e-photos-confirm")).click();
    await bucketBanner.filter({ hasText: "409" }).waitFor();
    assert.match((await bucketBanner.textContent()) ?? "", /is not empty: it holds 1 object;/, "the banner shows the API's message");
    assert.equal(await bucket.count(), 1, "the bucket is still there");

    await p.evaluate(() => window.scrollTo(0, 0));
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await p.screenshot({ path: path.join(ARTIFACTS, "objects.png"), fullPage: true });
    // The page in Chinese, then back to English.
    await p.selectOption(byTestId("lang-switch"), "zh-CN");
    await p.locator("h1", { hasText: "对象存储" }).waitFor();
    await object.locator(byTestId("object-download"), { hasText: "下载" }).waitFor();
    await p.selectOption(byTestId("lang-switch"), "en");
    await p.locator("h1", { hasText: "Object storage" }).waitFor();

    // Delete the object (the folder is empty then), then the bucket.
    await object.locator(byTestId("object-delete")).click();
    await object.locator(byTestId("object-delete-confirm")).click();
    await object.waitFor({ state: "detached" });
    await browser.locator(byTestId("object-empty")).waitFor();
    await usage(0, 0).waitFor();
    await bucket.locator(byTestId("delete-bucket-e2e-photos")).click();
    await bucket.locator(byTestId("delete-bucket-e2e-photos-confirm")).click();
    await bucket.waitFor({ state: "detached" });
    await bucketBanner.waitFor({ state: "detached" });
    await p.locator(byTestId("object-pick")).waitFor();

    // An access key: its 40-character secret is shown once, never in the list.
    await p.fill(byTestId("access-key-name"), "e2e-key");
    await p.selectOption(byTestId("access-key-role"), "member");
    await p.click(byTestId("access-key-create"));
    await p.locator(byTestId("access-key-secret")).waitFor();
    const secret = (await p.locator(byTestId("access-key-secret-value")).textContent())?.trim() ?? "";
    const keyId = (await p.locator(byTestId("access-key-id-value")).textContent())?.trim() ?? "";
    assert.equal(secret.length, 40, `the secret access key has 40 characters (got ${secret.length})`);
    const key = row("access-key", "e2e-key");
    await key.waitFor();
    assert.equal(await key.getAttribute("data-id"), keyId, "the list shows the key's id");
    assert.match((await key.textContent()) ?? "", /member/);
    assert.ok(!((await p.locator(byTestId("access-key-table")).textContent()) ?? "").includes(secret), "the list does not show the secret");
    // Once dismissed (or after a reload) the secret is nowhere on the page.
    await p.click(byTestId("access-key-secret-dismiss"));
    await p.locator(byTestId("access-key-secret")).waitFor({ state: "detached" });
    await p.reload();
    await key.waitFor();
    assert.ok(!(await p.content()).includes(secret), "the secret is not shown again");

    await key.locator(byTestId("delete-access-key-e2e-key")).click();
    await key.locator(byTestId("delete-access-key-e2e-key-confirm")).click();
    await key.waitFor({ state: "detached" });
    assert.equal(await p.locator(byTestId("access-key-row")).count(), 0, "no access key is left");
  });
});

test("functions: deploy, a refused component, test requests, log, metrics, environment, a second version and rollback", { timeout: 180_000 }, async () => {
  await step("functions", async () => {
    const p = page();
    const echoWasm = path.join(FUNCTIONS, "echo.wasm");
    const helloWasm = path.join(FUNCTIONS, "hello.wasm");
    for (const f of [echoWasm, helloWasm]) {
      assert.ok(fs.existsSync(f), `${f} not found: build the example components with \`bash images/functions/build.sh\``);
    }
    await p.click(byTestId("nav-functions"));
    await p.waitForURL((url) => url.pathname === "/functions");
    await p.locator(byTestId("functions-deploy-form")).waitFor();
    await p.selectOption(byTestId("functions-project"), "default");
    await p.waitForURL((url) => url.searchParams.get("project") === "default");
    // The hint names the port the gateway really bound (DATA/gateway.addr).
    const gatewayPort = fs.readFileSync(path.join(run.dataDir, "gateway.addr"), "utf8").trim().split(":").pop();
    await p.locator(byTestId("functions-gateway"), { hasText: new RegExp(`:${gatewayPort}\\b`) }).waitFor();

    const exactly = (text) => new RegExp(`^\\s*${text}\\s*$`);
    const listCard = p.locator(byTestId("functions-card"));
    const deployBanner = listCard.locator(byTestId("error-banner"));
    const fnRow = (name, version) =>
      p.locator(`${byTestId("functions-row")}[data-name="${name}"]${version ? `[data-version="${version}"]` : ""}`);
    const detail = p.locator(byTestId("functions-detail"));
    const deploy = async (file, name, route) => {
      await p.fill(byTestId("functions-deploy-name"), name);
      await p.fill(byTestId("functions-deploy-route"), route);
      await p.setInputFiles(byTestId("functions-deploy-file"), file);
      await p.locator(byTestId("functions-deploy-file-name"), { hasText: path.basename(file) }).waitFor();
      await p.click(byTestId("functions-deploy"));
    };

    // The first deploy creates the function (version 1) and opens it in the detail panel.
    await deploy(echoWasm, "e2e-echo", "/e2e");
    await fnRow("e2e-echo", 1).waitFor();
    await listCard.locator(byTestId("notice"), { hasText: "Deployed e2e-echo version 1." }).waitFor();
    await fnRow("e2e-echo").locator(byTestId("functions-route-cell"), { hasText: exactly("/e2e") }).waitFor();
    await detail.locator(`${byTestId("functions-detail-body")}[data-name="e2e-echo"]`).waitFor();
    await detail.locator(byTestId("functions-url"), { hasText: `:${gatewayPort}/e2e` }).waitFor();

    // A file that is not a component: the API's 422 names the field `body`.
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cloudlet-e2e-fn-"));
    try {
      const bogus = path.join(tmp, "not-a-component.wasm");
      fs.writeFileSync(bogus, "this is not a WebAssembly component\n");
      await deploy(bogus, "e2e-bogus", "/bogus");
      await listCard.locator(`${byTestId("error-field")} code`, { hasText: exactly("body") }).waitFor();
      assert.match((await deployBanner.textContent()) ?? "", /422/, "the banner shows HTTP 422");
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    assert.equal(await fnRow("e2e-bogus").count(), 0, "no function e2e-bogus");

    // A test request: echo answers with the body and logs one line.
    const test = detail.locator(byTestId("functions-test"));
    const result = test.locator(byTestId("functions-test-result"));
    const send = async (expectBody) => {
      await test.locator(byTestId("functions-test-send")).click();
      await test.locator(byTestId("functions-test-body-out"), { hasText: expectBody }).waitFor();
      assert.equal(await result.getAttribute("data-status"), "200", "the test request answers 200");
      assert.match((await result.locator(byTestId("functions-test-status")).textContent()) ?? "", exactly("200"));
    };
    await test.locator(byTestId("functions-test-method")).selectOption("POST");
    await test.locator(byTestId("functions-test-path")).fill("/e2e/hi");
    await test.locator(byTestId("functions-test-body")).fill("ping");
    await send(exactly("ping"));
    await result.locator(`${byTestId("functions-test-header")}[data-name="x-echo-method"]`, { hasText: "POST" }).waitFor();
    assert.ok(Number(await result.locator(byTestId("functions-test-ms")).getAttribute("data-ms")) > 0, "the time is shown");

    const logOut = detail.locator(byTestId("functions-log-output"));
    await waitFor("the log to show the test request", async () => {
      if (((await logOut.textContent()) ?? "").includes("echo POST /e2e/hi 4 bytes")) return true;
      await detail.locator(byTestId("functions-log-refresh")).click();
      return false;
    }, UI_TIMEOUT, 500);
    assert.match((await logOut.textContent()) ?? "", /\dZ stdout echo POST \/e2e\/hi 4 bytes/, "the line has its time and stream");

    const metric = (id, value) => detail.locator(`${byTestId(`functions-metric-${id}`)}[data-value="${value}"]`);
    await waitFor("the metrics to count 1 ok invocation", async () => {
      if (await metric("ok", 1).count()) return true;
      await detail.locator(byTestId("functions-metrics-refresh")).click();
      return false;
    }, UI_TIMEOUT, 500);
    await metric("errors", 0).waitFor();
    const chart = detail.locator(byTestId("functions-latency-chart"));
    await detail.locator(`${byTestId("functions-latency-chart")}[data-total="1"]`).waitFor();
    assert.equal(await chart.locator(`${byTestId("functions-latency-bar")}[data-count="1"]`).count(), 1, "one bar holds the request");

    // An environment variable, saved with PATCH: the stored spec has it.
    const env = detail.locator(byTestId("functions-env"));
    await env.locator(byTestId("functions-env-add")).click();
    await env.locator(byTestId("functions-env-key")).last().fill("GREETING");
    await env.locator(byTestId("functions-env-value")).last().fill("hej");
    await env.locator(byTestId("functions-env-save")).click();
    await detail.locator(byTestId("notice"), { hasText: "Environment variables of e2e-echo saved." }).waitFor();
    const storedSpec = () =>
      p.evaluate(async () => {
        const res = await fetch("/v1/functions/e2e-echo?project=default", { credentials: "same-origin", headers: { Accept: "application/json" } });
        return (await res.json()).spec;
      });
    assert.deepEqual((await storedSpec()).env, { GREETING: "hej" }, "the function's env is saved");
    await env.locator(`${byTestId("functions-env-row")}[data-key="GREETING"]`).waitFor();
    assert.equal(await env.locator(byTestId("functions-env-value")).inputValue(), "hej");

    // Deploying the same name again adds version 2 (settings kept); it answers differently.
    await deploy(helloWasm, "e2e-echo", "/e2e");
    await fnRow("e2e-echo", 2).waitFor();
    await listCard.locator(byTestId("notice"), { hasText: "Deployed e2e-echo version 2." }).waitFor();
    await deployBanner.waitFor({ state: "detached" });
    await fnRow("e2e-echo").locator(byTestId("functions-kept-cell"), { hasText: "v1, v2" }).waitFor();
    await detail.locator(`${byTestId("functions-version-row")}[data-version="2"][data-serving="true"]`).waitFor();
    await send("hello from cloudlet");
    await detail.locator(`${byTestId("functions-metrics-version")}[data-version="2"]`).waitFor();

    await p.evaluate(() => window.scrollTo(0, 0));
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await p.screenshot({ path: path.join(ARTIFACTS, "functions.png"), fullPage: true });

    // Roll back to version 1: echo answers again, and the environment stayed.
    const v1 = detail.locator(`${byTestId("functions-version-row")}[data-version="1"]`);
    await v1.locator(byTestId("functions-version-serve"), { hasText: "Roll back to v1" }).click();
    await detail.locator(`${byTestId("functions-version-row")}[data-version="1"][data-serving="true"]`).waitFor();
    await detail.locator(byTestId("notice"), { hasText: "e2e-echo now serves version 1." }).waitFor();
    await fnRow("e2e-echo", 1).waitFor();
    await send(exactly("ping"));
    const spec = await storedSpec();
    assert.equal(spec.version, 1, "version 1 is served");
    assert.deepEqual(spec.versions, [1, 2], "both versions are kept");
    assert.deepEqual(spec.env, { GREETING: "hej" }, "the rollback kept the environment");

    // The page in Chinese, then back to English.
    await p.selectOption(byTestId("lang-switch"), "zh-CN");
    await p.locator("h1", { hasText: "函数" }).waitFor();
    await p.locator(byTestId("nav-functions"), { hasText: "函数" }).waitFor();
    await p.locator(byTestId("functions-deploy"), { hasText: "部署" }).waitFor();
    await detail.locator(byTestId("functions-version-serve"), { hasText: "启用 v2" }).waitFor();
    await p.selectOption(byTestId("lang-switch"), "en");
    await p.locator("h1", { hasText: "Functions" }).waitFor();

    // Delete, with confirmation.
    await detail.locator(byTestId("functions-delete")).click();
    await detail.locator(byTestId("functions-delete-confirm")).click();
    await fnRow("e2e-echo").waitFor({ state: "detached" });
    await p.locator(byTestId("notice"), { hasText: "Function e2e-echo deleted." }).waitFor();
    await p.locator(byTestId("functions-pick")).waitFor();
    assert.equal(await p.locator(byTestId("functions-row")).count(), 0, "no function is left");
  });
});

test("instances: a VM image, a refused memory size, status, the serial console and its log, stop and delete", { timeout: 240_000 }, async () => {
  await step("instances", () => instancesStep({ p: page(), run, waitFor, byTestId, artifacts: ARTIFACTS }));
});

test("projects: the default quotas are shown, a quota and a domain are changed, a bad domain is refused at its field", { timeout: 60_000 }, async () => {
  await step("projects", () => projectsStep({ p: page(), byTestId, waitFor, timeout: UI_TIMEOUT }));
});

test("the language switch shows Chinese and is remembered", { timeout: 60_000 }, async () => {
  await step("i18n", async () => {
    const p = page();
    await p.click(byTestId("nav-overview"));
    await p.waitForURL((url) => url.pathname === "/");
    await p.selectOption(byTestId("lang-switch"), "zh-CN");
    await p.locator(byTestId("nav-overview"), { hasText: "概览" }).waitFor();
    await p.locator("h1", { hasText: "概览" }).waitFor();
    assert.equal(await p.getAttribute("html", "lang"), "zh-CN");
    await p.locator(byTestId("node-card")).first().waitFor();
    await p.locator(byTestId("event-row")).first().waitFor();
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await p.screenshot({ path: path.join(ARTIFACTS, "console.png") });

    // A deep link loads the app afresh (the daemon answers index.html for
    // /audit, the SPA fallback); the language comes back from localStorage.
    await p.goto(`${run.base}/audit`);
    await p.locator(byTestId("audit-table")).waitFor();
    await p.locator(byTestId("nav-audit"), { hasText: "审计日志" }).waitFor();
    await p.locator("th", { hasText: "路径" }).first().waitFor();
  });
});

test("logging out ends the session", { timeout: 60_000 }, async () => {
  await step("logout", async () => {
    const p = page();
    await p.click(byTestId("logout"));
    await p.waitForURL((url) => url.pathname === "/login");
    await p.goto(`${run.base}/tokens`);
    await p.waitForURL((url) => url.pathname === "/login");
  });
});

test("the page raised no script errors and fetched nothing from elsewhere", () => {
  assert.deepEqual(run.pageErrors, [], "uncaught errors in the page");
  assert.deepEqual(run.foreignRequests, [], "requests to other origins");
  assert.deepEqual(run.cspViolations, [], "Content-Security-Policy violations");
});
