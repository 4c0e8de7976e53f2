"""Merges the stage outputs of bench/device/run.sh into OUT/results.json and OUT/results.md.

Usage: python3 bench/device/summarize.py OUT
Reads what exists of: stages.tsv, gpu-tests.json (vitest), forward.json, train.json, time.json,
torch-eager.json, torch-compile.json, kernels.json, attention.json. A missing or broken file is reported, not fatal.
"""

import json
import os
import sys


def load(out, name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"error": f"unreadable {name}: {e}"}


def stages(out):
    rows = []
    path = os.path.join(out, "stages.tsv")
    if os.path.exists(path):
        for line in open(path):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 4:
                rows.append({"stage": parts[0], "status": parts[1], "seconds": int(parts[2]), "note": parts[3]})
    return rows


def gpu_tests(report):
    if not report or "testResults" not in report:
        return report
    tests = [
        {"file": os.path.relpath(f["name"]) if os.path.isabs(f["name"]) else f["name"], "test": t.get("fullName") or t.get("title"), "status": t["status"]}
        for f in report["testResults"]
        for t in f.get("assertionResults", [])
    ]
    count = {s: sum(1 for t in tests if t["status"] == s) for s in ("passed", "failed", "skipped", "pending")}
    return {"counts": count, "failed": [t for t in tests if t["status"] == "failed"], "tests": tests}


def fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fusion_label(run):
    """'fused (8 window attention, 3 FPN merges, 3 cross-attention)' or 'unfused'."""
    if not run.get("fused"):
        return "unfused"
    c = run.get("fusions") or {}
    parts = [f"{c[k]} {name}" for k, name in (("windowAttention", "window attention"), ("fpnMerge", "FPN merges"), ("crossAttention", "cross-attention")) if c.get(k)]
    return "fused (" + ", ".join(parts) + ")" if parts else "fused"


def attention_section(a):
    """bench/device/attention.py: per case, errors and each method's times and share of copy bandwidth."""
    if not a:
        return []
    md = ["## Window attention: ptc's fused kernels vs PyTorch (bench/device/attention.py)", ""]
    if "cases" not in a:
        return md + ["```", str(a.get("error", a))[:2000], "```", ""]
    bw = a.get("copy_bytes_per_s")
    md += [f"device {a.get('device')}, torch {a.get('torch')}; copy bandwidth {fmt(bw / 1e9 if bw else None)} GB/s; {a.get('timing')}; bytes: {a.get('bytes')}", ""]
    errs, rows = [], []
    for c in a["cases"]:
        if "methods" not in c:
            rows.append([c["case"], "-", None, None, None, None, None, None, c.get("error") or c.get("skipped")])
            continue
        e = c.get("err_over_max_ref", {})
        errs.append([c["case"], *(e.get(k) for k in ("out", "dq", "dk", "dv", "dtable", "dscale", "dpad")), (c.get("baseline_err_over_max_ref") or {}).get("sdpa")])
        p = c["methods"].get("ptc", {})
        for name, m in c["methods"].items():
            if "error" in m:
                rows.append([c["case"], name, None, None, None, None, None, None, m["error"]])
                continue
            speed = None if name == "ptc" or "forward_backward_s" not in p else m["forward_backward_s"] / p["forward_backward_s"]
            rows.append([c["case"], name, m["forward_s"] * 1e6, m.get("forward_of_copy_bw"), m["backward_s"] * 1e6, m.get("backward_of_copy_bw"),
                         m["forward_backward_s"] * 1e6, speed, f"compile {m['compile_s']:.1f} s" if "compile_s" in m else ""])
    md.append(table(["case", "out", "dq", "dk", "dv", "dtable", "dscale", "dpad", "sdpa bf16 out"], errs))
    md += ["", "(max |err| / max |ref| against the f32 PyTorch chain through autograd)", ""]
    md.append(table(["case", "method", "fwd us", "fwd / copy bw", "bwd us", "bwd / copy bw", "fwd+bwd us", "fwd+bwd time / ptc's", "note"], rows))
    md.append("")
    return md


def main(out):
    r = {
        "stages": stages(out),
        "gpuTests": gpu_tests(load(out, "gpu-tests.json")),
        "forward": load(out, "forward.json"),
        "train": load(out, "train.json"),
        "time": load(out, "time.json"),
        "torchEager": load(out, "torch-eager.json"),
        "torchCompile": load(out, "torch-compile.json"),
        "kernels": load(out, "kernels.json"),
        "attention": load(out, "attention.json"),
    }
    md = ["# ptc on a GPU (bench/device/run.sh)", ""]
    md += ["## Stages", "", table(["stage", "status", "seconds", "note"], [[s["stage"], s["status"], s["seconds"], s["note"]] for s in r["stages"]]), ""]

    g = r["gpuTests"]
    if g and "counts" in g:
        c = g["counts"]
        md += ["## GPU tests (vitest test/gpu, test/parallel/nccl.test.ts)", ""]
        md += [f"passed {c['passed']}, failed {c['failed']}, skipped {c['skipped'] + c['pending']}", ""]
        if c["passed"] + c["failed"] == 0:
            md += ["(all skipped: no CUDA driver was found)", ""]
        for t in g["failed"]:
            md.append(f"- FAILED {t['file']}: {t['test']}")
        md.append("")

    f = r["forward"]
    if f:
        md += ["## xxs forward: device vs CPU backend", ""]
        if "error" in f:
            md += ["```", f["error"][:2000], "```", ""]
        else:
            md += [
                f"device {f.get('device')}, {f.get('launches')} launches / {f.get('modules')} modules; lowering {fmt(f.get('lowerSeconds'))} s, "
                f"module load (JIT) {fmt(f.get('loadSeconds'))} s, cold run {fmt(f.get('coldRunSeconds'))} s, CPU reference {fmt(f.get('cpuSeconds'))} s",
                "",
            ]
            ag = f.get("agreement", {})
            md.append(table(["output", "max abs diff", "of max |ref|", "mean rel"], [[o["name"], o["maxAbs"], o["maxRel"], o["meanRel"]] for o in ag.get("outputs", [])]))
            md += ["", f"agreement within bounds: {fmt(ag.get('ok'))} {'; '.join(ag.get('failures', []))}"]
            gr = f.get("graph") or {}
            md += [f"launch time {fmt(f.get('launchMs'))} ms; CUDA graph replay {fmt(gr.get('launchMs'))} ms, bits identical: {fmt(gr.get('identicalToPlainLaunches'))}", ""]

    t = r["train"]
    if t:
        prec = t.get("precision", "bf16")
        md += [f"## xxs training ({prec} compute, f32 masters): device engine vs CPU trainer", ""]
        if "error" in t:
            md += ["```", t["error"][:2000], "```", ""]
        # One run per --fuse variant (fused: the forward `ptc train` trains); older files: one unfused run.
        for run in t.get("runs") or ([{**t, "fused": False}] if "steps" in t else []):
            md += [f"### {fusion_label(run)}", ""]
            md.append(
                table(
                    ["step", "loss cpu", "loss device", "grad norm cpu", "grad norm device", "cpu s", "device s"],
                    [[s["step"], s["cpuLoss"], s["deviceLoss"], s["cpuGradNorm"], s["deviceGradNorm"], s["cpuSeconds"], s["deviceSeconds"]] for s in run["steps"]],
                )
            )
            md += ["", f"setup {fmt(run.get('setupSeconds'))} s; weights: sum |cpu - device| / sum |update| = {fmt(run.get('weightsDiffOverUpdate'))}; first step within bounds: {fmt(run.get('ok'))}", ""]
        if t.get("partial"):
            md += ["(partial: the stage hit its time limit after these runs)", ""]

    tm, te, tc = r["time"], r["torchEager"], r["torchCompile"]
    if tm or te or tc:
        config = (tm or {}).get("config", "s")
        md += [f"## Training step of the {config} config: ptc vs PyTorch (same device)", ""]
        rows = []
        # Ratios per image (the two sides may run other batch sizes): eager's images/s over ours.
        base = te.get("imagesPerSecond") if te and "imagesPerSecond" in te else None
        speedups = []
        if tm and "runs" in tm:
            for run in tm["runs"]:
                # Files from before --fuse timed the unfused graph.
                label = f"ptc, {'fused' if run.get('fused') else 'unfused'} (CUDA graphs {'on' if run['cudaGraphs'] else 'off'})"
                ratio = base / run["imagesPerSecond"] if base else None
                rows.append([label, run["stepMs"], run["imagesPerSecond"], ratio, run["setupSeconds"], run.get("reservedBytes")])
            # Fusion's effect, at the same CUDA-graph setting in the same process.
            for graphs in (False, True):
                pair = {bool(x.get("fused")): x for x in tm["runs"] if x["cudaGraphs"] == graphs}
                if True in pair and False in pair:
                    speedups.append(
                        f"CUDA graphs {'on' if graphs else 'off'}: unfused {fmt(pair[False]['stepMs'])} ms / fused {fmt(pair[True]['stepMs'])} ms = "
                        f"{fmt(pair[False]['stepMs'] / pair[True]['stepMs'])}x; first loss fused {fmt(pair[True].get('firstLoss'), 6)}, unfused {fmt(pair[False].get('firstLoss'), 6)}"
                    )
            fusions = next((x.get("fusions") for x in tm["runs"] if x.get("fusions")), None)
            md += [f"ptc: micro-batch {tm.get('microBatch')} x accum {tm.get('accum')}, image {tm.get('image')}, bf16 compute, f32 masters" + (f"; {fusion_label({'fused': True, 'fusions': fusions})}" if fusions else ""), ""]
        elif tm:
            rows.append(["ptc", None, None, None, None, tm.get("error", "")[:200]])
        for name, res in (("torch eager", te), ("torch.compile", tc)):
            if res and "stepMs" in res:
                ratio = base / res["imagesPerSecond"] if base else None
                rows.append([name, res["stepMs"], res["imagesPerSecond"], ratio, res.get("firstStepSeconds"), res.get("peakMemoryBytes")])
        md.append(table(["", "step ms", "images/s", "time per image / eager's", "setup or first step s", "memory bytes"], rows))
        if speedups:
            md += ["", "Fusion (step time without / with the fused kernels): " + "; ".join(speedups)]
        if tm and tm.get("partial"):
            md += ["", "(ptc: partial, the stage hit its time limit after these runs)"]
        if te:
            md += ["", f"PyTorch parameters {te.get('params')} (ptc: {te.get('expectParams')}), batch {te.get('batch')}, {te.get('image')} px, {te.get('device')}"]
        md.append("")

    k = r["kernels"]
    if k and "results" in k:
        md += ["## Kernels vs torch (bench/device/kernels.py)", ""]
        md.append(
            table(
                ["case", "ok", "err / max ref", "ours ms", "torch ms", "ours/torch"],
                [[x["case"], x.get("ok"), x.get("max_err_over_max_ref"), x.get("ours_ms"), x.get("torch_ms"), x.get("ours_over_torch")] for x in k["results"]],
            )
        )
        md.append("")

    md += attention_section(r["attention"])

    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(r, fh, indent=1)
    with open(os.path.join(out, "results.md"), "w") as fh:
        fh.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
