export { callerLocation } from "./location.ts";
export * from "./trace.ts";
