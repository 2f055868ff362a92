// Loaded BEFORE the player bundle: wraps WebCodecs VideoDecoder/AudioDecoder so every
// decoder the player creates reports configure/decode/output counts into window.__decode.
"use strict";
(() => {
	const t0 = performance.now();
	const mk = () => ({
		instances: 0,
		configs: [],
		decodeCalls: 0,
		keyChunks: 0,
		outputs: 0,
		firstDecodeAtMs: null,
		firstOutputAtMs: null,
		lastOutputTimestampUs: null,
		outputTimesMs: [], // performance.now() of each output (capped)
		errors: [],
	});
	const stats = (window.__decode = { t0, video: mk(), audio: mk() });
	const CAP = 20000;

	function wrap(Orig, s, kind) {
		if (!Orig) return Orig;
		return class extends Orig {
			constructor(init) {
				s.instances++;
				super({
					output: (out) => {
						const now = performance.now();
						s.outputs++;
						if (s.firstOutputAtMs === null) s.firstOutputAtMs = now;
						if (s.outputTimesMs.length < CAP) s.outputTimesMs.push(now);
						s.lastOutputTimestampUs = out.timestamp;
						if (kind === "audio") {
							s.sampleRate = out.sampleRate;
							s.channels = out.numberOfChannels;
							s.samples = (s.samples ?? 0) + out.numberOfFrames;
						} else {
							s.codedWidth = out.codedWidth;
							s.codedHeight = out.codedHeight;
							s.displayWidth = out.displayWidth;
							s.displayHeight = out.displayHeight;
						}
						init.output(out);
					},
					error: (e) => {
						s.errors.push(String(e?.message ?? e));
						init.error(e);
					},
				});
			}
			configure(config) {
				s.configs.push({
					codec: config.codec,
					descriptionBytes: config.description ? config.description.byteLength : null,
					sampleRate: config.sampleRate,
					numberOfChannels: config.numberOfChannels,
					optimizeForLatency: config.optimizeForLatency,
				});
				return super.configure(config);
			}
			decode(chunk) {
				s.decodeCalls++;
				if (s.firstDecodeAtMs === null) s.firstDecodeAtMs = performance.now();
				if (chunk.type === "key") s.keyChunks++;
				return super.decode(chunk);
			}
		};
	}
	window.VideoDecoder = wrap(window.VideoDecoder, stats.video, "video");
	window.AudioDecoder = wrap(window.AudioDecoder, stats.audio, "audio");
})();
