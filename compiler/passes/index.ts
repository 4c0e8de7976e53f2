export { cse } from "./cse.ts";
export { dce } from "./dce.ts";
