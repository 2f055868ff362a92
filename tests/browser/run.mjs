#!/usr/bin/env node
// Drive @moq/net in headless Chromium (Playwright) or Firefox (Puppeteer, WebDriver BiDi)
// against a MoQ relay.
//
//   node run.mjs <relay-url> [options]
//
//   <relay-url>            e.g. http://127.0.0.1:4443/ (the relay must also serve
//                          GET /certificate.sha256 on that TCP address, moq-relay's
//                          --web-http-listen)
//   --scenario a,b         pubsub (default), clock, disconnect, publish, clockpub
//                          (publish and clockpub serve other programs: they print
//                          {"progress":"published"} on stderr and run until stdin closes)
//   --broadcast B --track T --lines N --group-lines G    for publish / clockpub
//   --version V            force one version, e.g. moq-lite-03 (default: @moq/net's list)
//   --transport T          auto (default) | webtransport | websocket
//   --pin                  fetch the fingerprint here and connect to https:// with
//                          serverCertificateHashes, instead of letting @moq/net fetch it
//   --fingerprint HEX      connect to https:// pinned to this SHA-256 (implies --pin)
//   --subscription JSON    pubsub subscription options (default {"ordered":true,"latencyMax":10000};
//                          with latencyMax 0, the @moq/net default, the relay may drop every
//                          group that isn't the newest when it arrives: reset code 0x34 "Old")
//   --sizes JSON           pubsub frame sizes per group (default [[1],[0,17],[1200,3,65536],...])
//   --browser B            chromium (default; Playwright) | firefox (puppeteer-core over
//                          WebDriver BiDi, a stock Firefox such as Debian's firefox-esr)
//   --chromium PATH        default /usr/bin/chromium
//   --firefox PATH         default /usr/bin/firefox-esr
//   --verbose              include every browser console line in the output
//
// Prints one JSON document on stdout; exit status 0 only if every scenario passed (and, when
// --version / --transport are given, negotiated exactly that).
// Build the bundle first: npm run build (writes dist/moq-net.js).

import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));

const CHROMIUM_ARGS = [
	"--no-sandbox",
	"--headless=new",
	"--disable-gpu",
	"--no-first-run",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
];

// ---------------------------------------------------------------------------------------------
// Static server: the page, the harness and the bundle, on an ephemeral loopback port.

const FILES = {
	"/": { file: "page/index.html", type: "text/html; charset=utf-8" },
	"/harness.js": { file: "page/harness.js", type: "text/javascript; charset=utf-8" },
	"/moq-net.js": { file: "dist/moq-net.js", type: "text/javascript; charset=utf-8" },
};

async function serve() {
	const server = http.createServer(async (req, res) => {
		const entry = FILES[new URL(req.url, "http://x").pathname];
		if (!entry) {
			res.writeHead(new URL(req.url, "http://x").pathname === "/favicon.ico" ? 204 : 404).end();
			return;
		}
		try {
			const body = await readFile(path.join(here, entry.file));
			res.writeHead(200, { "content-type": entry.type, "cache-control": "no-store" }).end(body);
		} catch (err) {
			res.writeHead(500).end(String(err));
		}
	});
	await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
	return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

// ---------------------------------------------------------------------------------------------
// Browsers. Each launcher returns { name, version, newPage(), close() }; the pages of both
// libraries have the same on("console" | "pageerror"), goto, waitForFunction, evaluate, close.

async function launchChromium(values, userDataDir) {
	// launchPersistentContext is Playwright's way to pass --user-data-dir (launch() rejects it).
	const context = await chromium.launchPersistentContext(userDataDir, {
		executablePath: values.chromium,
		headless: true,
		args: CHROMIUM_ARGS,
	});
	return {
		name: "chromium",
		version: context.browser()?.version() ?? null,
		newPage: () => context.newPage(),
		close: () => context.close(),
	};
}

async function launchFirefox(values, userDataDir) {
	// Loaded only here, so Chromium runs don't need it.
	const { default: puppeteer } = await import("puppeteer-core");
	const browser = await puppeteer.launch({
		browser: "firefox",
		executablePath: values.firefox,
		headless: true,
		// A fresh profile; puppeteer-core writes its automation preferences into it (no
		// updates, telemetry, remote settings, ...).
		userDataDir,
	});
	return {
		name: "firefox",
		version: (await browser.version()).replace(/^firefox\//, ""), // "firefox/153.8.0"
		// A window, not a tab: Firefox runs only a window's selected tab as visible and clamps
		// the hidden ones' timers to about one a second, which stalls @moq/net.
		newPage: () => browser.newPage({ type: "window" }),
		close: () => browser.close(),
	};
}

const BROWSERS = { chromium: launchChromium, firefox: launchFirefox };

// ---------------------------------------------------------------------------------------------
// Scenarios. Each gets a `ctx` with `page(name)` (opens and loads a new page/tab; each page is
// its own JS realm, so its own @moq/net instance), the connect options and the CLI options, and
// returns a JSON-able record with at least { ok, version, transport }; throwing marks it failed.

// Test frames of the given sizes per group (empty and multi-packet frames included by default).
// Payloads are random so a misrouted byte can't go unnoticed.
function makeGroups(sizes) {
	return sizes.map((frames) => frames.map((n) => randomBytes(n).toString("hex")));
}

async function pubsub(ctx) {
	const pub = await ctx.page("publisher");
	const sub = await ctx.page("subscriber");
	const steps = {};

	steps.subConnect = await sub.call("connect", "sub", ctx.connect);
	steps.pubConnect = await pub.call("connect", "pub", ctx.connect);

	// Discovery: learn the broadcast name from the announcement, then subscribe to it.
	await sub.call("watchAnnounced", "all", "sub", "");
	steps.publish = await pub.call("publish", "pub", "test", ["data"]);
	const announced = await sub.call("waitAnnounced", "all", "test", true);
	steps.announced = { path: announced.path, atMs: announced.atMs };

	const groups = makeGroups(ctx.sizes);
	const total = groups.flat().length;
	const subscription = ctx.subscription;
	steps.subscribe = await sub.call("startRead", "data", "sub", announced.path, "data", { frames: total, subscription });
	steps.demand = await pub.call("waitDemand", "pub", "test", "data");
	steps.write = await pub.call("writeGroups", "pub", "test", "data", groups);
	const read = await sub.call("readResult", "data");

	// Compare byte-exact, group by group. The subscriber may see groups in any order.
	const received = new Map(read.groups.map((g) => [g.sequence, g.frames]));
	const mismatches = [];
	groups.forEach((frames, i) => {
		const got = received.get(steps.write.sequences[i]) ?? [];
		frames.forEach((hex, j) => {
			if (got[j] !== hex) mismatches.push({ group: steps.write.sequences[i], frame: j, want: hex.length / 2, got: got[j] === undefined ? null : got[j].length / 2 });
		});
		if (got.length > frames.length) mismatches.push({ group: steps.write.sequences[i], extraFrames: got.length - frames.length });
	});
	steps.read = {
		ok: read.ok,
		why: read.why,
		error: read.error,
		frames: read.frames,
		expectedFrames: total,
		groups: read.groups.map((g) => ({ sequence: g.sequence, frames: g.frames.length, bytes: g.frames.reduce((n, h) => n + h.length / 2, 0) })),
		firstFrame: read.firstFrame,
		mismatches,
	};

	// The end of the broadcast must reach the subscriber as an inactive announcement.
	steps.unpublish = await pub.call("unpublish", "pub", "test");
	const ended = await sub.call("waitAnnounced", "all", "test", false);
	steps.ended = { atMs: ended.atMs, wallMs: ended.wallMs };
	steps.announceEvents = (await sub.call("stopAnnounced", "all")).events;

	await pub.call("close", "pub");
	await sub.call("close", "sub");

	const ok = read.ok && read.frames === total && mismatches.length === 0;
	return {
		ok,
		version: steps.subConnect.version,
		transport: steps.subConnect.transport,
		// *AtMs: since that page started loading. *AfterMs: between two events (wall clock).
		timings: {
			subscriberConnectMs: steps.subConnect.connectMs,
			subscriberConnectedAtMs: steps.subConnect.atMs,
			publisherConnectMs: steps.pubConnect.connectMs,
			publisherConnectedAtMs: steps.pubConnect.atMs,
			announceAfterPublishMs: Math.round(announced.wallMs - steps.publish.wallMs),
			demandAfterSubscribeMs: Math.round(steps.demand.wallMs - steps.subscribe.wallMs),
			firstFrameAfterWriteMs: read.firstFrame && Math.round(read.firstFrame.wallMs - steps.write.startedWallMs),
			allFramesAfterWriteMs: Math.round(read.done.wallMs - steps.write.startedWallMs),
			endedAfterUnpublishMs: Math.round(ended.wallMs - steps.unpublish.wallMs),
		},
		steps,
	};
}

// Subscribe to moq-clock's `clock` broadcast, track `seconds`: each group (one per minute) starts
// with a "YYYY-MM-DD HH:MM:" frame followed by one "SS" frame per second.
async function clock(ctx) {
	const sub = await ctx.page("clock");
	const connected = await sub.call("connect", "sub", ctx.connect);
	await sub.call("watchAnnounced", "all", "sub", "");
	const announced = await sub.call("waitAnnounced", "all", "clock", true);
	await sub.call("startRead", "seconds", "sub", "clock", "seconds", { frames: 4, as: "text", timeoutMs: 10_000 });
	const read = await sub.call("readResult", "seconds");
	await sub.call("stopAnnounced", "all");
	await sub.call("close", "sub");

	const problems = [];
	for (const group of read.groups) {
		group.frames.forEach((text, i) => {
			// A group joined mid-minute still starts at its first frame (the relay replays the group).
			const pattern = i === 0 ? /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:$/ : /^\d{2}$/;
			if (!pattern.test(text)) problems.push({ group: group.sequence, frame: i, text });
		});
	}
	return {
		ok: read.ok && read.frames === 4 && problems.length === 0,
		version: connected.version,
		transport: connected.transport,
		timings: {
			connectMs: connected.connectMs,
			connectedAtMs: connected.atMs,
			announcedAtMs: announced.atMs,
			firstFrameAtMs: read.firstFrame?.atMs,
		},
		groups: read.groups,
		error: read.error,
		problems,
	};
}

// Edge cases: the publisher's connection dropping (rather than closing the broadcast) must
// also end the announcement, and subscribing to a path nobody publishes must fail, not hang.
async function disconnect(ctx) {
	const pub = await ctx.page("publisher");
	const sub = await ctx.page("subscriber");
	const connected = await sub.call("connect", "sub", ctx.connect);
	await pub.call("connect", "pub", ctx.connect);
	await sub.call("watchAnnounced", "all", "sub", "");
	await pub.call("publish", "pub", "gone", ["data"]);
	await sub.call("waitAnnounced", "all", "gone", true);
	const closed = await pub.call("close", "pub");
	const ended = await sub.call("waitAnnounced", "all", "gone", false);
	await sub.call("stopAnnounced", "all");

	const subscribed = await sub.call("startRead", "missing", "sub", "does-not-exist", "data", { frames: 1, timeoutMs: 5000 });
	const missing = await sub.call("readResult", "missing");
	await sub.call("close", "sub");
	return {
		ok: ended.active === false && !missing.ok && !/^timeout/.test(missing.error?.message ?? ""),
		version: connected.version,
		transport: connected.transport,
		endedAfterDisconnectMs: Math.round(ended.wallMs - closed.startedWallMs),
		missingBroadcast: { error: missing.error, afterMs: Math.round(missing.done.wallMs - subscribed.wallMs) },
	};
}

// Progress for a caller that coordinates other programs with this run: one JSON line on stderr.
function progress(event) {
	process.stderr.write(`${JSON.stringify({ progress: event })}\n`);
}

// Resolves when stdin closes: the caller's signal that it has seen what it needed.
function stdinClosed() {
	return new Promise((resolve) => {
		if (process.stdin.readableEnded) return resolve();
		process.stdin.on("end", resolve);
		process.stdin.on("close", resolve);
		process.stdin.resume();
	});
}

// The lines of the `publish` scenario: the caller knows them in advance.
function lineGroups(lines, perGroup) {
	const groups = [];
	for (let i = 0; i < lines; i++) {
		if (i % perGroup === 0) groups.push([]);
		const text = `browser line ${String(i).padStart(5, "0")}`;
		groups[groups.length - 1].push(Buffer.from(text).toString("hex"));
	}
	return groups;
}

// Publish `--lines` text frames (`browser line 00000`, ...) on `--broadcast`/`--track` once a
// subscriber (another program) appears, and keep the broadcast until stdin closes.
async function publish(ctx) {
	const pub = await ctx.page("publisher");
	const connected = await pub.call("connect", "pub", ctx.connect);
	await pub.call("publish", "pub", ctx.broadcast, [ctx.track]);
	progress("published");
	const demand = await pub.call("waitDemand", "pub", ctx.broadcast, ctx.track, 60_000);
	const write = await pub.call("writeGroups", "pub", ctx.broadcast, ctx.track, lineGroups(ctx.lines, ctx.groupLines));
	progress("written");
	await stdinClosed();
	await pub.call("unpublish", "pub", ctx.broadcast);
	await pub.call("close", "pub");
	return {
		ok: true,
		version: connected.version,
		transport: connected.transport,
		timings: { connectMs: connected.connectMs, connectedAtMs: connected.atMs, demandAtMs: demand.atMs },
		groups: write.sequences.length,
	};
}

// Publish a clock in moq-clock's format on `--broadcast` (track `seconds`: a group per minute,
// its first frame `YYYY-MM-DD HH:MM:`, then `SS` every second) until stdin closes.
async function clockpub(ctx) {
	const pub = await ctx.page("publisher");
	const connected = await pub.call("connect", "pub", ctx.connect);
	await pub.call("publish", "pub", ctx.broadcast, ["seconds"]);
	await pub.call("startClock", "pub", ctx.broadcast, "seconds");
	progress("published");
	await stdinClosed();
	const written = await pub.call("stopClock", "pub", ctx.broadcast);
	await pub.call("unpublish", "pub", ctx.broadcast);
	await pub.call("close", "pub");
	return { ok: written.frames > 0, version: connected.version, transport: connected.transport, written };
}

const SCENARIOS = { pubsub, clock, disconnect, publish, clockpub };

// ---------------------------------------------------------------------------------------------

async function main() {
	const { values, positionals } = parseArgs({
		allowPositionals: true,
		options: {
			scenario: { type: "string", default: "pubsub" },
			version: { type: "string" },
			transport: { type: "string", default: "auto" },
			pin: { type: "boolean", default: false },
			fingerprint: { type: "string" },
			subscription: { type: "string", default: '{"ordered":true,"latencyMax":10000}' },
			sizes: { type: "string", default: "[[1],[0,17],[1200,3,65536],[5,100000,0,42],[7,7,7,7,7]]" },
			broadcast: { type: "string", default: "browser" },
			track: { type: "string", default: "lines" },
			lines: { type: "string", default: "1000" },
			"group-lines": { type: "string", default: "100" },
			browser: { type: "string", default: "chromium" },
			chromium: { type: "string", default: "/usr/bin/chromium" },
			firefox: { type: "string", default: "/usr/bin/firefox-esr" },
			verbose: { type: "boolean", default: false },
		},
	});
	if (positionals.length !== 1) throw new Error("usage: node run.mjs <relay-url> [--scenario pubsub,clock,disconnect] [--version V] [--transport auto|webtransport|websocket] [--pin | --fingerprint HEX] [--browser chromium|firefox]");
	const launchBrowser = BROWSERS[values.browser];
	if (!launchBrowser) throw new Error(`unknown browser: ${values.browser} (chromium or firefox)`);
	const relay = new URL(positionals[0]);

	// By default pass the http:// URL through: @moq/net then fetches /certificate.sha256 itself
	// and dials https:// with serverCertificateHashes. --pin does the same from Node instead.
	const connect = { url: relay.toString(), version: values.version, transport: values.transport };
	if (values.pin || values.fingerprint) {
		if (values.fingerprint) {
			connect.fingerprint = values.fingerprint;
		} else {
			const res = await fetch(new URL("/certificate.sha256", relay));
			if (!res.ok) throw new Error(`GET /certificate.sha256: ${res.status}`);
			connect.fingerprint = (await res.text()).trim();
		}
		const https = new URL(relay);
		https.protocol = "https:";
		connect.url = https.toString();
	}

	const { server, origin } = await serve();
	const userDataDir = await mkdtemp(path.join(tmpdir(), `moq-${values.browser}-`));
	const consoleLines = [];
	const output = { ok: false, relay: relay.toString(), options: { ...values, connect }, scenarios: {} };
	let browser;
	try {
		const launchedAt = Date.now();
		browser = await launchBrowser(values, userDataDir);
		output.browser = { name: browser.name, version: browser.version, launchMs: Date.now() - launchedAt };

		const pages = [];
		const openPage = async (name) => {
			const page = await browser.newPage();
			pages.push(page);
			page.on("console", (msg) => {
				const type = msg.type() === "warn" ? "warning" : msg.type(); // Puppeteer says "warn"
				if (values.verbose || ["error", "warning"].includes(type)) consoleLines.push(`[${name}] ${type}: ${msg.text()}`);
			});
			page.on("pageerror", (err) => consoleLines.push(`[${name}] pageerror: ${err.message}`));
			const loadStart = Date.now();
			await page.goto(`${origin}/`);
			await page.waitForFunction(() => window.harness !== undefined);
			output.page ??= { loadMs: Date.now() - loadStart, ...(await page.evaluate(() => window.harness.info())) };
			// Call a harness function by name; errors come back as rejections with the page's message.
			return { call: (fn, ...args) => page.evaluate(([fn, args]) => window.harness[fn](...args), [fn, args]) };
		};

		let allOk = true;
		for (const name of values.scenario.split(",")) {
			const scenario = SCENARIOS[name];
			if (!scenario) throw new Error(`unknown scenario: ${name}`);
			const started = Date.now();
			try {
				const result = await scenario({
					page: openPage,
					connect,
					subscription: JSON.parse(values.subscription),
					sizes: JSON.parse(values.sizes),
					broadcast: values.broadcast,
					track: values.track,
					lines: Number(values.lines),
					groupLines: Number(values["group-lines"]),
				});
				// A forced version the relay doesn't take can silently fall back to SETUP
				// negotiation (moq-lite-02), and "auto" can fall back to WebSocket: check.
				if (values.version && result.version !== values.version) {
					Object.assign(result, { ok: false, error: `negotiated ${result.version}, wanted ${values.version}` });
				}
				if (values.transport !== "auto" && result.transport !== values.transport) {
					Object.assign(result, { ok: false, error: `ran over ${result.transport}, wanted ${values.transport}` });
				}
				output.scenarios[name] = result;
			} catch (err) {
				output.scenarios[name] = { ok: false, error: String(err?.message ?? err).split("\n")[0] };
			}
			output.scenarios[name].wallMs = Date.now() - started;
			allOk &&= output.scenarios[name].ok;
			for (const page of pages.splice(0)) await page.close();
		}
		output.ok = allOk;
	} finally {
		output.console = consoleLines;
		await browser?.close().catch(() => {});
		server.close();
		await rm(userDataDir, { recursive: true, force: true });
	}
	return output;
}

main().then(
	(output) => {
		console.log(JSON.stringify(output, null, 2));
		process.exit(output.ok ? 0 : 1);
	},
	(err) => {
		console.log(JSON.stringify({ ok: false, error: String(err?.stack ?? err) }, null, 2));
		process.exit(2);
	},
);
