// The browser test (run it with clients/web/run.sh, which prepares what this needs): Debian's chromium, headless,
// driven by playwright-core, loads a page (src/app.ts, bundled by esbuild with the client generated from proto/)
// from one origin and calls a real `courier up` on another over gRPC-Web: CreateUser, GetUser, ListUsers (a server
// stream), a NOT_FOUND read from the answer; then the same page from an origin courier does not allow, whose call
// the browser refuses with a CORS error.
//
// Environment (run.sh sets it): COURIER_BIN (the server), WEB_TOOLS (tools/web, whose node_modules hold esbuild and
// playwright-core), CHROMIUM (the browser, default /usr/bin/chromium), WEB_WORK (a scratch directory).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const tools = process.env.WEB_TOOLS ?? path.join(here, "../../tools/web");
const work = process.env.WEB_WORK ?? path.join(here, ".work");
const bin = process.env.COURIER_BIN ?? path.join(here, "../../target/debug/courier");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const START_TIMEOUT_MS = 60_000; // a debug build migrating a new database can be slow

const toolsRequire = createRequire(path.join(tools, "package.json"));
const esbuild = toolsRequire("esbuild");
const { chromium } = toolsRequire("playwright-core");

/** Serves the bundled page (index.html, app.js) on 127.0.0.1:0: an origin of its own. */
async function pageServer(root) {
  const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };
  const server = http.createServer((request, response) => {
    const name = request.url === "/" ? "index.html" : path.basename(new URL(request.url, "http://x").pathname);
    try {
      const body = readFileSync(path.join(root, name));
      response.writeHead(200, { "content-type": types[path.extname(name)] ?? "application/octet-stream" });
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

/** `courier up` on a free port, its own data dir, gRPC-Web allowed for `origins`; resolves once it listens. */
function startCourier(dataDir, origins) {
  const args = ["up", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", dataDir,
    "--cors-allowed-origins", origins.join(",")];
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  const lines = [];
  child.stderr.on("data", (chunk) => lines.push(chunk.toString()));
  const listening = new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`courier never said it listens:\n${out}\n${lines.join("")}`)),
      START_TIMEOUT_MS);
    child.stdout.on("data", (chunk) => {
      out += chunk.toString();
      const match = /^courier: listening on (\S+:\d+)$/m.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`courier exited (${code}):\n${out}\n${lines.join("")}`)));
  });
  return { child, listening, stderr: lines };
}

/** Health over gRPC-Web itself (no Origin: not a browser), until it answers SERVING; no sleeps beyond backoff. */
async function waitServing(address) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let delay = 20;
  let last = "no answer";
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://${address}/grpc.health.v1.Health/Check`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
        body: new Uint8Array([0, 0, 0, 0, 0]), // an empty HealthCheckRequest: the server as a whole
      });
      const body = new Uint8Array(await response.arrayBuffer());
      // One data frame holding HealthCheckResponse{status: SERVING}: field 1, varint 1.
      if (body[0] === 0 && body[5] === 0x08 && body[6] === 1) return;
      last = `HTTP ${response.status}, ${body.length} bytes`;
    } catch (error) {
      last = String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 500);
  }
  throw new Error(`courier on ${address} never reported SERVING over gRPC-Web (${last})`);
}

const state = {};

before(async () => {
  mkdirSync(work, { recursive: true });
  const www = path.join(work, "www");
  mkdirSync(www, { recursive: true });
  await esbuild.build({
    entryPoints: [path.join(here, "src/app.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outfile: path.join(www, "app.js"),
    nodePaths: [path.join(tools, "node_modules")],
    logLevel: "warning",
  });
  writeFileSync(path.join(www, "index.html"),
    '<!doctype html><html><head><meta charset="utf-8"><title>courier over gRPC-Web</title></head>' +
    '<body><script type="module" src="/app.js"></script></body></html>\n');

  state.allowed = await pageServer(www);
  state.other = await pageServer(www);
  const dataDir = path.join(work, "courier-data");
  state.courier = startCourier(dataDir, [state.allowed.origin]);
  state.address = await state.courier.listening;
  await waitServing(state.address);
  state.baseUrl = `http://${state.address}`;
  state.token = readFileSync(path.join(dataDir, "token"), "utf8").trim();
  state.browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ["--no-sandbox"] });
});

after(async () => {
  await state.browser?.close();
  if (state.courier) {
    state.courier.child.kill("SIGTERM");
    await new Promise((resolve) => state.courier.child.once("exit", resolve));
  }
  state.allowed?.server.close();
  state.other?.server.close();
});

/** A fresh page of `origin`, once its script has run; its console messages are collected in `console`. */
async function open(origin) {
  const page = await state.browser.newPage();
  const console = [];
  page.on("console", (message) => console.push(message.text()));
  page.on("pageerror", (error) => console.push(`pageerror: ${error.message}`));
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => window.courier !== undefined, undefined, { timeout: 10_000 });
  return { page, console };
}

test("a page on an allowed origin calls CreateUser, GetUser and the ListUsers stream over gRPC-Web", async (t) => {
  const { page, console } = await open(state.allowed.origin);
  const email = `ada.${Date.now()}@example.com`;
  const flow = await page.evaluate(
    ([baseUrl, token, email]) => window.courier.flow(baseUrl, token, email), [state.baseUrl, state.token, email]);
  t.diagnostic(`from ${state.allowed.origin}: created ${flow.created.id}, streamed ${flow.listed.length} users, ` +
    `unknown id: ${flow.missing.code} (${flow.missing.message})`);
  assert.match(flow.created.id, /^usr_[0-9a-f]{32}$/, JSON.stringify(flow));
  assert.deepEqual(flow.created, { id: flow.created.id, name: "Ada Lovelace", email, status: "ACTIVE" });
  assert.deepEqual(flow.fetched, { id: flow.created.id, name: "Ada Lovelace", email });
  // Both users of this flow, one message each, in creation order.
  const streamed = flow.listed.filter((user) => user.email.endsWith(email)).map((user) => user.email);
  assert.deepEqual(streamed, [email, `grace.${email}`], `ListUsers streamed ${JSON.stringify(flow.listed)}`);
  assert.equal(flow.listed.find((user) => user.email === email)?.id, flow.created.id);
  // A trailers-only error answer: the page reads grpc-status and grpc-message only because CORS exposes them.
  assert.equal(flow.missing.code, "NotFound", JSON.stringify(flow.missing));
  assert.ok(!console.some((line) => /CORS/.test(line)), console.join("\n"));
  await page.close();
});

test("a page on an origin courier does not allow is refused by the browser with a CORS error", async (t) => {
  const { page, console } = await open(state.other.origin);
  const email = `eve.${Date.now()}@example.com`;
  const refused = await page.evaluate(
    ([baseUrl, token, email]) => window.courier.attempt(baseUrl, token, email), [state.baseUrl, state.token, email]);
  assert.ok(refused, "the call from an origin not allowed succeeded");
  t.diagnostic(`from ${state.other.origin}: ${refused.code} (${refused.message}); console: ` +
    console.find((line) => /CORS/.test(line)));
  // fetch rejects with a TypeError and says no more to the page; the browser says why on the console.
  assert.notEqual(refused.code, "NotFound", JSON.stringify(refused));
  assert.match(refused.message, /fetch/i, JSON.stringify(refused));
  assert.ok(console.some((line) => /blocked by CORS policy/.test(line)), `no CORS error in:\n${console.join("\n")}`);
  await page.close();

  // Nothing reached UserService: the allowed page lists no user with that email.
  const { page: allowed } = await open(state.allowed.origin);
  const seen = await allowed.evaluate(
    ([baseUrl, token, email]) => window.courier.flow(baseUrl, token, email),
    [state.baseUrl, state.token, `check.${Date.now()}@example.com`]);
  assert.ok(seen.listed.length >= 2, JSON.stringify(seen.listed));
  assert.ok(!seen.listed.some((user) => user.email === email), JSON.stringify(seen.listed));
  await allowed.close();
});
