const m: { f: number } = { f: 1 };
await import("/tmp/t1.ts");
console.log(m);
