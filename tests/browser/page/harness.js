// Browser-side test primitives, driven from run.mjs via `page.evaluate`.
//
// Loaded after dist/moq-net.js, which defines the global `Moq` (the @moq/net exports plus
// `Moq.QmuxSession`). Every function is async, takes/returns plain JSON values (payloads are
// hex strings) and keeps its live objects in the maps below, keyed by caller-chosen names, so
// the Node side can interleave steps across several pages.
//
// Times: `atMs` is `performance.now()`, milliseconds since this page started navigating;
// `wallMs` is the same instant as Unix epoch milliseconds, comparable across pages.
"use strict";

(() => {
	const conns = new Map(); // name -> Established
	const published = new Map(); // "conn/path" -> { broadcast, tracks: Map<name, track.Producer> }
	const announces = new Map(); // name -> { events: [{path, active, atMs}], error?, changed }
	const reads = new Map(); // name -> Promise<result>

	const now = () => Math.round(performance.now() * 10) / 10;
	const wall = () => Math.round((performance.timeOrigin + performance.now()) * 10) / 10;
	const stamp = () => ({ atMs: now(), wallMs: wall() });

	const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
	const fromHex = (hex) => {
		const out = new Uint8Array(hex.length / 2);
		for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
		return out;
	};

	const errorJson = (err) => ({ name: err?.name, message: String(err?.message ?? err), code: err?.code });

	// Reject after `ms` with a descriptive error.
	const withTimeout = (promise, ms, what) =>
		Promise.race([
			promise,
			new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout after ${ms}ms: ${what}`)), ms)),
		]);

	function get(map, key, what) {
		const value = map.get(key);
		if (value === undefined) throw new Error(`unknown ${what}: ${key}`);
		return value;
	}

	// What @moq/net 0.3.4 offers over WebSocket by default (connection/connect.js), as
	// ALPN -> qmux wire version(s); null = every qmux draft the polyfill knows. Only needed here
	// because we build the WebSocket session ourselves (see connect()).
	const WEBSOCKET_VERSIONS = {
		"moq-lite-05": null,
		"moq-lite-04": null,
		"moq-lite-03": null,
		moql: null,
		"moqt-20": "qmux-01",
		"moqt-18": "qmux-01",
		"moqt-17": null,
		"moqt-16": null,
		"moqt-15": null,
	};

	/**
	 * Connect to a relay.
	 *
	 * @param {string} name  handle for later calls
	 * @param {object} opts
	 * @param {string} opts.url          relay URL. `http://` makes @moq/net fetch `/certificate.sha256`
	 *                                   itself and dial `https://`; use `https://` plus `fingerprint`
	 *                                   to pin the certificate without that fetch.
	 * @param {string} [opts.fingerprint] hex SHA-256 of the relay's certificate (serverCertificateHashes)
	 * @param {string} [opts.version]    a single WebTransport subprotocol / qmux ALPN, e.g. "moq-lite-03"
	 * @param {"auto"|"webtransport"|"websocket"} [opts.transport]
	 * @param {number} [opts.timeoutMs]
	 */
	async function connect(name, opts) {
		const { url, fingerprint, version, transport = "auto", timeoutMs = 10_000 } = opts;
		const start = now();
		const props = { signal: AbortSignal.timeout(timeoutMs) };

		if (transport === "websocket") {
			// @moq/net has no switch to disable WebTransport, so hand it a ready qmux session
			// (the same WebSocket polyfill its fallback uses) through the `transport` option.
			const wsUrl = new URL(url);
			wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
			const versions = version ? { [version]: WEBSOCKET_VERSIONS[version] ?? null } : WEBSOCKET_VERSIONS;
			const session = new Moq.QmuxSession(wsUrl, {
				protocols: Object.keys(versions),
				versions,
				// Forced: offer only `qmux-*.{version}`. Default: like @moq/net, also offer the bare
				// qmux-01 / qmux-00 / webtransport wire formats (version then chosen by SETUP).
				requireProtocol: Boolean(version),
			});
			await withTimeout(session.ready, timeoutMs, "qmux session ready");
			props.transport = session;
		} else {
			props.webtransport = {};
			if (fingerprint) props.webtransport.serverCertificateHashes = [{ algorithm: "sha-256", value: fingerprint }];
			// Replaces the default list (lite-05, -04, -03, moql, moqt-20..15) wholesale.
			if (version) props.webtransport.protocols = [version];
			// Without this, a WebSocket attempt joins the race 500 ms later (with its own
			// version list) and can win if WebTransport is slow or failing.
			if (transport === "webtransport") props.websocket = { enabled: false };
		}

		let conn;
		try {
			conn = await Moq.Connection.connect(new URL(url), props);
		} catch (err) {
			// connect() races the transports with Promise.any, so a failure is an AggregateError
			// whose message says nothing; surface the per-transport reasons instead.
			if (err instanceof AggregateError) {
				throw new Error(`connect failed: ${err.errors.map((e) => `${e?.name}: ${e?.message}`).join("; ")}`);
			}
			throw err;
		}
		conns.set(name, conn);
		return { version: conn.version, transport: conn.transport, connectMs: Math.round(now() - start), ...stamp() };
	}

	async function close(name) {
		const conn = get(conns, name, "connection");
		const startedWallMs = wall();
		conn.close();
		conns.delete(name);
		await withTimeout(conn.closed.catch(() => {}), 5000, "connection closed");
		return { startedWallMs, ...stamp() };
	}

	/** Publish an (initially empty) broadcast at `path` with the given track names. */
	async function publish(connName, path, trackNames) {
		const conn = get(conns, connName, "connection");
		const broadcast = new Moq.Broadcast.Producer();
		const tracks = new Map();
		for (const trackName of trackNames) tracks.set(trackName, broadcast.createTrack(trackName));
		conn.publish(Moq.Path.from(path), broadcast);
		published.set(`${connName}/${path}`, { broadcast, tracks });
		return stamp();
	}

	/** Resolve once somebody (the relay) subscribes to the track, i.e. written groups will flow. */
	async function waitDemand(connName, path, trackName, timeoutMs = 10_000) {
		const { tracks } = get(published, `${connName}/${path}`, "broadcast");
		const track = get(tracks, trackName, "track");
		const used = (async () => {
			while (!track.used.peek()) await track.used.changed();
		})();
		await withTimeout(used, timeoutMs, `demand for ${path}/${trackName}`);
		return stamp();
	}

	/** Write `groups` (arrays of hex payloads), one group after another, closing each. */
	async function writeGroups(connName, path, trackName, groups) {
		const { tracks } = get(published, `${connName}/${path}`, "broadcast");
		const track = get(tracks, trackName, "track");
		const sequences = [];
		const started = wall();
		for (const frames of groups) {
			const group = track.appendGroup();
			for (const hex of frames) {
				group.writeFrame({ payload: fromHex(hex), timestamp: Moq.Time.Timestamp.now() });
			}
			group.close();
			sequences.push(group.sequence);
		}
		return { sequences, startedWallMs: started, ...stamp() };
	}

	/** Close a published broadcast (the relay then announces it as ended). */
	async function unpublish(connName, path) {
		const key = `${connName}/${path}`;
		const { broadcast, tracks } = get(published, key, "broadcast");
		for (const track of tracks.values()) track.close();
		broadcast.close();
		published.delete(key);
		return stamp();
	}

	/** Start recording announcements under `prefix` on a connection. */
	async function watchAnnounced(name, connName, prefix = "") {
		const conn = get(conns, connName, "connection");
		const consumer = conn.announced(Moq.Path.from(prefix));
		const state = { consumer, events: [], error: undefined, done: false, changed: new Moq.Signals.Signal(0) };
		announces.set(name, state);
		void (async () => {
			try {
				for (;;) {
					const event = await consumer.next();
					if (!event) break;
					state.events.push({ path: event.path, active: event.active, ...stamp() });
					state.changed.update((n) => n + 1);
				}
			} catch (err) {
				state.error = errorJson(err);
			}
			state.done = true;
			state.changed.update((n) => n + 1);
		})();
		return stamp();
	}

	/**
	 * Wait for an announcement of `path` (relative to the watched prefix; `null` for any path)
	 * with the given state.
	 */
	async function waitAnnounced(name, path, active, timeoutMs = 10_000) {
		const state = get(announces, name, "announce watch");
		const match = () => state.events.find((e) => (path === null || e.path === path) && e.active === active);
		const found = (async () => {
			for (;;) {
				const event = match();
				if (event) return event;
				if (state.done) throw new Error(`announce stream ended: ${JSON.stringify(state.error ?? null)}`);
				await state.changed.changed();
			}
		})();
		const event = await withTimeout(found, timeoutMs, `announce ${path} active=${active}`);
		return { ...event, events: state.events };
	}

	async function stopAnnounced(name) {
		const state = get(announces, name, "announce watch");
		state.consumer.close();
		announces.delete(name);
		return { events: state.events, error: state.error };
	}

	/**
	 * Subscribe to `path`/`trackName` and read in the background until `frames` frames arrived
	 * (or `timeoutMs`). Collect the result with {@link readResult}.
	 *
	 * `as: "hex"` returns payloads as hex, `as: "text"` as UTF-8 strings. `subscription` is
	 * passed to @moq/net as-is ({ priority, ordered, latencyMax, startGroup, endGroup }).
	 */
	async function startRead(name, connName, path, trackName, opts = {}) {
		const { frames = Infinity, timeoutMs = 10_000, as = "hex", subscription = {} } = opts;
		const conn = get(conns, connName, "connection");
		const broadcast = conn.consume(Moq.Path.from(path));
		const sub = broadcast.subscribe(trackName, subscription);
		const start = stamp();
		const decode = as === "text" ? (b) => new TextDecoder().decode(b) : toHex;
		const result = { groups: [], frames: 0, firstFrame: undefined };

		// Groups are read concurrently: they may arrive out of order, and one that stays open
		// (e.g. moq-clock's current minute) must not block the others.
		const run = () =>
			new Promise((resolve, reject) => {
				const readGroup = async (group) => {
					const entry = { sequence: group.sequence, frames: [] };
					result.groups.push(entry);
					for (;;) {
						const frame = await group.readFrame();
						if (!frame) return;
						result.firstFrame ??= stamp();
						entry.frames.push(decode(frame.payload));
						if (++result.frames >= frames) resolve("complete");
					}
				};
				void (async () => {
					const readers = [];
					for (;;) {
						const group = await sub.recvGroup();
						if (!group) break;
						readers.push(readGroup(group).catch(reject));
					}
					await Promise.all(readers);
					resolve("track ended");
				})().catch(reject);
			});
		const done = withTimeout(run(), timeoutMs, `reading ${path}/${trackName}`)
			.then((why) => ({ ok: true, why }))
			.catch((err) => ({ ok: false, error: errorJson(err) }))
			.then((status) => {
				sub.close();
				broadcast.close();
				return { ...status, ...result, done: stamp() };
			});
		reads.set(name, done);
		return start;
	}

	async function readResult(name) {
		const result = await get(reads, name, "read");
		reads.delete(name);
		return result;
	}

	const clocks = new Map(); // "conn/path" -> { timer, group, minute, frames }

	/** Publish moq-clock's format on an already published broadcast's track, every second. */
	async function startClock(connName, path, trackName) {
		const { tracks } = get(published, `${connName}/${path}`, "broadcast");
		const track = get(tracks, trackName, "track");
		const state = { timer: undefined, group: undefined, minute: undefined, frames: 0 };
		const encoder = new TextEncoder();
		const write = (group, text) => {
			group.writeFrame({ payload: encoder.encode(text), timestamp: Moq.Time.Timestamp.now() });
			state.frames += 1;
		};
		const tick = () => {
			const iso = new Date().toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ, UTC
			const minute = iso.slice(0, 16);
			if (state.minute !== minute) {
				state.group?.close();
				state.group = track.appendGroup();
				state.minute = minute;
				write(state.group, `${iso.slice(0, 10)} ${iso.slice(11, 17)}`);
			}
			write(state.group, iso.slice(17, 19));
		};
		tick();
		state.timer = setInterval(tick, 1000);
		clocks.set(`${connName}/${path}`, state);
		return stamp();
	}

	async function stopClock(connName, path) {
		const key = `${connName}/${path}`;
		const state = get(clocks, key, "clock");
		clearInterval(state.timer);
		state.group?.close();
		clocks.delete(key);
		return { frames: state.frames, ...stamp() };
	}

	window.harness = {
		startClock,
		stopClock,
		connect,
		close,
		publish,
		waitDemand,
		writeGroups,
		unpublish,
		watchAnnounced,
		waitAnnounced,
		stopAnnounced,
		startRead,
		readResult,
		info: () => ({
			userAgent: navigator.userAgent,
			webTransport: typeof WebTransport !== "undefined",
			webTransportSupported: Moq.Connection.isWebTransportSupported(),
		}),
	};
})();
