// Registers every op lowering rule (imported for its side effects by lower.ts).
import "./conv.ts";
import "./fused.ts";
import "./nn.ts";
import "./rows.ts";
