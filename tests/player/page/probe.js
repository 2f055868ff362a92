// Page-side driver for run.mjs: builds a <moq-watch> and measures what it decodes and paints.
"use strict";
(() => {
	const MOQ_EPOCH_UNIX_MS = Date.UTC(2020, 0, 1); // hang catalog `clock.wall` is relative to 2020-01-01
	const state = { events: [], rendered: [], latencies: [], el: null, startedAtMs: null };
	const now = () => Math.round(performance.now() * 10) / 10;
	const event = (what, extra) => state.events.push({ what, atMs: now(), ...extra });

	function start(opts) {
		const { url, name, fingerprint, version, websocket = false, muted = false, latency, width = 640, rendition } = opts;
		state.startedAtMs = now();
		const el = document.createElement("moq-watch");
		// 1. Connection options. Reload reads these at each connect attempt (not reactive), so they
		//    must be set BEFORE the url (setting url triggers the first connect).
		const webtransport = {};
		if (fingerprint) webtransport.serverCertificateHashes = [{ algorithm: "sha-256", value: fingerprint }];
		// Only set protocols when restricting: `protocols: undefined` would be spread over the default list.
		if (version) webtransport.protocols = [version];
		el.connection.webtransport = webtransport;
		if (!websocket) el.connection.websocket = { enabled: false };
		// 2. Playback controls. visible="always": download video even if the IntersectionObserver
		//    (headless) disagrees. muted=true would DISABLE the audio download entirely.
		el.setAttribute("visible", "always");
		el.muted = muted;
		if (latency !== undefined) el.latency = latency;
		// 3. The renderer paints into a <canvas> child (a <video> child does nothing).
		const canvas = document.createElement("canvas");
		canvas.style.width = `${width}px`;
		document.getElementById("slot").style.width = `${width}px`;
		el.appendChild(canvas);
		el.name = name; // e.g. "media.hang": the .hang suffix selects the catalog.json track
		el.url = url; // https://127.0.0.1:PORT/ (pinned) or http://127.0.0.1:PORT/ (fetches /certificate.sha256)
		document.getElementById("slot").appendChild(el); // connectedCallback enables the connection
		// Pin a rendition by track name (the player otherwise picks by its pixel size and the
		// bandwidth estimate).
		if (rendition) el.controls.target.update((t) => ({ ...t, name: rendition }));
		state.el = el;
		state.canvas = canvas;

		// Watch signals we report on.
		let lastConn, lastStatus, lastCatalog, lastTs;
		const poll = () => {
			const conn = el.connection.status.peek();
			if (conn !== lastConn) event("connection", { status: conn, version: el.connection.established.peek()?.version }), (lastConn = conn);
			const status = el.broadcast.out.status.peek();
			if (status !== lastStatus) event("broadcast", { status }), (lastStatus = status);
			const catalog = el.catalog;
			if (catalog !== lastCatalog) event("catalog", { present: !!catalog }), (lastCatalog = catalog);
			const ts = el.renderer.out.timestamp.peek();
			if (ts !== undefined && ts !== lastTs) {
				lastTs = ts;
				const at = now();
				state.rendered.push({ atMs: at, tsMs: ts });
				const clock = catalog?.clock;
				if (clock?.wall !== undefined) {
					const scale = clock.timescale ?? 1_000_000;
					const captured = MOQ_EPOCH_UNIX_MS + (clock.wall / scale) * 1000 + ts;
					state.latencies.push(Date.now() - captured);
				}
			}
			requestAnimationFrame(poll);
		};
		requestAnimationFrame(poll);
		return { startedAtMs: state.startedAtMs };
	}

	function canvasStats() {
		const c = state.canvas;
		if (!c || !c.width || !c.height) return { width: c?.width ?? 0, height: c?.height ?? 0 };
		const ctx = c.getContext("2d");
		const { data } = ctx.getImageData(0, 0, c.width, c.height);
		let sum = 0, sum2 = 0, hash = 2166136261 >>> 0;
		const colors = new Set();
		const n = data.length / 4;
		for (let i = 0; i < data.length; i += 4) {
			const y = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
			sum += y;
			sum2 += y * y;
			colors.add(((data[i] >> 4) << 8) | ((data[i + 1] >> 4) << 4) | (data[i + 2] >> 4));
			hash = Math.imul(hash ^ data[i] ^ (data[i + 1] << 8) ^ (data[i + 2] << 16), 16777619) >>> 0;
		}
		const mean = sum / n;
		return { width: c.width, height: c.height, meanLuma: +mean.toFixed(1), stddevLuma: +Math.sqrt(sum2 / n - mean * mean).toFixed(1), distinctColors4bit: colors.size, hash: hash.toString(16), atMs: now() };
	}

	// Pixel-level difference between two samples, taken `ms` apart.
	async function canvasChange(ms = 1000) {
		const c = state.canvas;
		const ctx = c.getContext("2d");
		const a = ctx.getImageData(0, 0, c.width, c.height).data;
		const sa = canvasStats();
		await new Promise((r) => setTimeout(r, ms));
		const b = ctx.getImageData(0, 0, c.width, c.height).data;
		const sb = canvasStats();
		let changed = 0;
		for (let i = 0; i < a.length; i += 4) if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) > 24) changed++;
		return { first: sa, second: sb, changedPixelFraction: +(changed / (a.length / 4)).toFixed(4) };
	}

	function report() {
		const el = state.el;
		const d = window.__decode;
		const conn = el?.connection.established.peek();
		const ctx = el?.audio.out.context.peek();
		const since = (t) => (t === null || t === undefined ? null : Math.round(t - state.startedAtMs));
		const perSecond = (times) => {
			if (times.length < 2) return null;
			const span = (times[times.length - 1] - times[0]) / 1000;
			return span > 0 ? +((times.length - 1) / span).toFixed(2) : null;
		};
		const rendered = state.rendered;
		const lat = state.latencies.slice(-60).sort((x, y) => x - y);
		const strip = (s) => ({ ...s, outputTimesMs: undefined });
		return {
			connection: { status: el?.connection.status.peek(), version: conn?.version, transport: conn?.transport ?? (conn ? "webtransport?" : undefined) },
			broadcast: { status: el?.broadcast.out.status.peek() },
			catalog: el?.catalog,
			video: {
				...strip(d.video),
				firstOutputAfterStartMs: since(d.video.firstOutputAtMs),
				outputsPerSecond: perSecond(d.video.outputTimesMs),
				track: el?.video.source.out.track.peek(),
				playerStats: el?.video.out.stats.peek(),
				renderedDistinctFrames: rendered.length,
				renderedDistinctPerSecond: perSecond(rendered.map((r) => r.atMs)),
				firstRenderAfterStartMs: rendered.length ? Math.round(rendered[0].atMs - state.startedAtMs) : null,
				lastRenderedTimestampMs: rendered.at(-1)?.tsMs,
			},
			audio: {
				...strip(d.audio),
				firstOutputAfterStartMs: since(d.audio.firstOutputAtMs),
				outputsPerSecond: perSecond(d.audio.outputTimesMs),
				track: el?.audio.source.out.track.peek(),
				playerStats: el?.audio.out.stats.peek(),
				contextState: ctx?.state,
				contextSampleRate: ctx?.sampleRate,
				bufferStalled: el?.audio.out.stalled.peek(),
				playheadMs: el?.audio.out.timestamp.peek(),
			},
			player: {
				// What <moq-watch-ui> shows as "+X latency": the target buffer = max(video, audio rendition jitter) + network jitter.
				syncBufferMs: el?.sync.out.buffer.peek(),
				syncJitterMs: el?.sync.out.jitter.peek(),
				elJitterMs: el?.jitter,
				latencyTarget: el?.latency,
				rttMs: conn?.probe?.peek?.()?.rtt,
			},
			endToEndLatencyMs: lat.length ? { samples: state.latencies.length, min: Math.round(lat[0]), median: Math.round(lat[lat.length >> 1]), max: Math.round(lat[lat.length - 1]) } : null,
			events: state.events,
		};
	}

	window.probe = { start, report, canvasStats, canvasChange, rendered: () => state.rendered.length };
})();
