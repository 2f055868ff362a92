#!/usr/bin/env node
// Watch a live media broadcast with <moq-watch> (@moq/watch, pinned in package-lock.json) in
// Debian's headless Chromium and report what it decoded and painted, as JSON.
//
//   node run.mjs <relay-url> [--name media.hang] [--seconds 6] [--timeout 30]
//                [--version moq-lite-05] [--fingerprint HEX] [--websocket] [--muted]
//                [--width 640] [--rendition TRACK] [--screenshot out.png] [--verbose]
//
// <relay-url>: http://127.0.0.1:PORT/ (@moq/net fetches /certificate.sha256 from that port and
// pins it) or https://127.0.0.1:PORT/ with --fingerprint.
//
// Output: one `{"progress":"started"}` line as soon as the player element exists (a test can
// start the publisher after it, to check that the player finds a broadcast announced later),
// then the report on one line. The measurement window (--seconds) starts at the first painted
// frame, which must come within --timeout seconds. Exit 0 only when: the browser's
// VideoDecoder output frames (counted by wrapping the class, not by the player's counters),
// more than one distinct frame was painted, the canvas is non-uniform and changed over a
// second, and, unless --muted, the AudioDecoder output audio.
import { readFile } from "node:fs/promises";
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values, positionals } = parseArgs({
	allowPositionals: true,
	options: {
		name: { type: "string", default: "media.hang" },
		seconds: { type: "string", default: "6" },
		timeout: { type: "string", default: "30" },
		version: { type: "string" },
		fingerprint: { type: "string" },
		websocket: { type: "boolean", default: false },
		muted: { type: "boolean", default: false },
		width: { type: "string", default: "640" },
		rendition: { type: "string" },
		screenshot: { type: "string" },
		chromium: { type: "string", default: "/usr/bin/chromium" },
		verbose: { type: "boolean", default: false },
	},
});
if (positionals.length !== 1) throw new Error("usage: node run.mjs <relay-url> [--name N] [--seconds S] ...");

const FILES = {
	"/": ["page/index.html", "text/html; charset=utf-8"],
	"/instrument.js": ["page/instrument.js", "text/javascript"],
	"/probe.js": ["page/probe.js", "text/javascript"],
	"/moq-watch.js": ["dist/moq-watch.js", "text/javascript"],
};
const server = http.createServer(async (req, res) => {
	const entry = FILES[new URL(req.url, "http://x").pathname];
	if (!entry) return res.writeHead(404).end();
	res.writeHead(200, { "content-type": entry[1], "cache-control": "no-store" }).end(await readFile(path.join(here, entry[0])));
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${server.address().port}`;

const CHROMIUM_ARGS = [
	"--no-sandbox",
	"--headless=new",
	"--disable-gpu",
	"--no-first-run",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
	// Let the AudioContext start without a user gesture (else it stays "suspended").
	"--autoplay-policy=no-user-gesture-required",
	// Keep timers and animation frames at full rate in a headless, never-focused tab.
	"--disable-background-timer-throttling",
	"--disable-renderer-backgrounding",
	"--disable-backgrounding-occluded-windows",
];

const consoleLines = [];
const out = {
	ok: false,
	relay: positionals[0],
	name: values.name,
	options: { version: values.version, websocket: values.websocket, muted: values.muted, width: Number(values.width), rendition: values.rendition },
};
const userDataDir = await mkdtemp(path.join(os.tmpdir(), "moq-player-"));
let context;
try {
	context = await chromium.launchPersistentContext(userDataDir, {
		executablePath: values.chromium,
		headless: true,
		args: CHROMIUM_ARGS,
		viewport: { width: Number(values.width) + 40, height: Math.round(Number(values.width) * 0.6) + 40 },
	});
	out.browser = context.browser()?.version() ?? "chromium";
	const page = context.pages()[0] ?? (await context.newPage());
	page.on("console", (m) => {
		if (values.verbose || ["error", "warning"].includes(m.type())) consoleLines.push(`${m.type()}: ${m.text()}`);
	});
	page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
	await page.goto(`${origin}/`);
	await page.waitForFunction(() => window.probe !== undefined && customElements.get("moq-watch") !== undefined);
	out.start = await page.evaluate((o) => window.probe.start(o), {
		url: positionals[0],
		name: values.name,
		fingerprint: values.fingerprint,
		version: values.version,
		websocket: values.websocket,
		muted: values.muted,
		width: Number(values.width),
		rendition: values.rendition,
	});
	console.log(JSON.stringify({ progress: "started" }));
	// The measurement window starts at the first painted frame.
	await page.waitForFunction(() => window.probe.rendered() > 0, null, { timeout: Number(values.timeout) * 1000, polling: 50 });
	const seconds = Number(values.seconds);
	await page.waitForTimeout(Math.max(0, (seconds / 2) * 1000 - 500));
	out.canvas = await page.evaluate(() => window.probe.canvasChange(1000));
	await page.waitForTimeout(Math.max(0, (seconds / 2) * 1000 - 500));
	out.report = await page.evaluate(() => window.probe.report());
	if (values.screenshot) {
		await page.screenshot({ path: values.screenshot });
		out.screenshot = values.screenshot;
	}
	const r = out.report;
	const c = out.canvas;
	out.ok =
		r.video.outputs > 0 &&
		r.video.renderedDistinctFrames > 1 &&
		c.second.stddevLuma > 10 &&
		c.first.hash !== c.second.hash &&
		(values.muted || r.audio.outputs > 0);
} catch (err) {
	out.error = String(err?.stack ?? err);
	if (context) {
		const page = context.pages()[0];
		out.report = await page?.evaluate(() => window.probe?.report()).catch(() => undefined);
	}
} finally {
	out.console = consoleLines.slice(0, 200);
	await context?.close().catch(() => {});
	await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
	server.close();
}
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
