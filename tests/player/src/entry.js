// Bundle entry: registers <moq-watch> (side effect) and exposes the JS API as the global `MoqWatch`.
import "@moq/watch/element";
export * as Watch from "@moq/watch";
