// The layering of DESIGN.md as rules: a break fails `npm test`.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: "no-circular", severity: "error", from: {}, to: { circular: true } },
    {
      name: "ir-is-the-base",
      severity: "error",
      from: { path: "^compiler/ir/" },
      to: { path: "^(compiler/(?!ir/)|runtime|model|kernels|bench|bin)" },
    },
    {
      name: "compiler-never-imports-runtime-train-cuda-data",
      severity: "error",
      from: { path: "^compiler/" },
      to: { path: "^runtime/(train|cuda|data)/" },
    },
    {
      name: "compiler-never-imports-model-bench-bin",
      severity: "error",
      from: { path: "^compiler/" },
      to: { path: "^(model|bench|bin)/" },
    },
    { name: "runtime-never-imports-model", severity: "error", from: { path: "^runtime/" }, to: { path: "^(model|bench|bin)/" } },
    {
      name: "kernels-are-user-level",
      severity: "error",
      from: { path: "^kernels/" },
      to: { path: "^(runtime|model|bench|bin)/" },
    },
    {
      name: "cpu-oracle-independent-of-kernels",
      severity: "error",
      from: { path: "^runtime/cpu/" },
      to: { path: "^(kernels|compiler/(codegen|lower|passes|autodiff|frontend))/" },
    },
    {
      name: "ptx-emu-reads-only-ptx",
      severity: "error",
      from: { path: "^runtime/ptx-emu/" },
      to: { path: "^(compiler|kernels|runtime/(?!ptx-emu/))" },
    },
    {
      name: "model-uses-only-the-dsl",
      severity: "error",
      from: { path: "^model/" },
      to: { path: "^(compiler/(?!dsl/)|runtime|kernels|bench|bin)" },
    },
    {
      name: "tile-language-is-self-contained",
      severity: "error",
      comment: "the kernel language (compiler/tile) builds on the graph IR only",
      from: { path: "^compiler/tile/" },
      to: { path: "^(compiler/(?!tile/|ir/)|runtime|kernels|model|bench|bin)" },
    },
    {
      name: "codegen-below-kernels",
      severity: "error",
      comment: "codegen renders any kernel program; it never knows the built-in kernels, and never runtime",
      from: { path: "^compiler/codegen/" },
      to: { path: "^(kernels|runtime)/" },
    },
    {
      name: "kernels-use-the-kernel-language",
      severity: "error",
      from: { path: "^kernels/" },
      to: { path: "^compiler/(?!tile/|ir/)" },
    },
    {
      name: "trace-below-dsl",
      severity: "error",
      from: { path: "^compiler/trace/" },
      to: { path: "^compiler/(dsl|frontend|autodiff|passes|lower|codegen)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(^|/)(node_modules|dist|test/fixtures)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
  },
};
