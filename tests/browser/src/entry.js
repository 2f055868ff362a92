// Bundle entry: everything @moq/net exports, plus the qmux WebSocket session so a page
// can force the WebSocket transport with an explicit version (see page/harness.js).
export * from "@moq/net";
export { default as QmuxSession } from "@moq/qmux";
