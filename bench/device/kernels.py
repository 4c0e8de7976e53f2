"""Runs ptc's emitted kernels on a GPU: loads each PTX (driver JIT), launches it through libcuda with
ctypes on torch-allocated tensors, checks the output against an f32 torch reference and times it
against torch's own op (cuBLAS matmul, layer_norm, softmax, ...) on the same GPU, same stream.

Inputs: a folder written by `bench/kernels.ts --device <dir>` (PTX files + manifest.json).
Usage:  python3 bench/device/kernels.py [dir, default dist/device-kernels] [--out results.json]
(dist/ is git-ignored: name it in the device run's carry list.)
"""

import ctypes
import json
import math
import os
import sys

import torch
import torch.nn.functional as F  # noqa: N812  (the reference expressions use F)

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    folder = args[0] if args else os.path.join(HERE, "..", "..", "dist", "device-kernels")
    out_path = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
    manifest = json.load(open(os.path.join(folder, "manifest.json")))

    torch.cuda.init()
    torch.zeros(1, device="cuda")  # creates and binds the primary context on this thread
    cuda = ctypes.CDLL("libcuda.so.1")

    def check(r, what):
        if r != 0:
            name = ctypes.c_char_p()
            cuda.cuGetErrorName(r, ctypes.byref(name))
            raise RuntimeError(f"{what}: {name.value.decode() if name.value else r}")

    modules = {}

    def load(ptx_file, kernel):
        if ptx_file not in modules:
            text = open(os.path.join(folder, ptx_file), "rb").read() + b"\0"
            log = ctypes.create_string_buffer(8192)
            opts = (ctypes.c_int * 2)(5, 6)  # CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
            vals = (ctypes.c_void_p * 2)(ctypes.cast(log, ctypes.c_void_p), ctypes.c_void_p(8192))
            mod = ctypes.c_void_p()
            r = cuda.cuModuleLoadDataEx(ctypes.byref(mod), ctypes.c_char_p(text), 2, opts, vals)
            if r != 0:
                raise RuntimeError(f"JIT of {ptx_file} failed ({r}): {log.value.decode(errors='replace')}")
            modules[ptx_file] = mod
        fn = ctypes.c_void_p()
        check(cuda.cuModuleGetFunction(ctypes.byref(fn), modules[ptx_file], kernel.encode()), f"cuModuleGetFunction {kernel}")
        return fn

    dev = torch.cuda.get_device_name()
    print(f"device: {dev}; torch {torch.__version__}; CUDA {torch.version.cuda}")
    gen = torch.Generator(device="cuda").manual_seed(0)
    results = []
    for case in manifest:
        row = {"case": case["name"], "kernel": case["kernel"]}
        try:
            tensors = {}
            for name, spec in case["tensors"].items():
                dtype = torch.bfloat16 if spec["dtype"] == "bf16" else torch.float32
                if spec["init"] == "zeros":
                    t = torch.zeros(spec["shape"], dtype=dtype, device="cuda")
                else:
                    t = torch.randn(spec["shape"], generator=gen, device="cuda").to(dtype)
                tensors[name] = t
            keep = []
            for a in case["args"]:
                if "tensor" in a:
                    keep.append(ctypes.c_uint64(tensors[a["tensor"]].data_ptr()))
                elif "i32" in a:
                    keep.append(ctypes.c_int32(a["i32"]))
                elif "i64" in a:
                    keep.append(ctypes.c_int64(a["i64"]))
                else:
                    keep.append(ctypes.c_float(a["f32"]))
            params = (ctypes.c_void_p * len(keep))(*[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in keep])
            fn = load(case["ptx"], case["kernel"])
            gx, gy, gz = case["grid"]
            stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)

            def launch():
                check(cuda.cuLaunchKernel(fn, gx, gy, gz, case["block"], 1, 1, 0, stream, params, None), "cuLaunchKernel")

            launch()
            torch.cuda.synchronize()
            env = {"torch": torch, "F": F, **tensors}
            ref = eval(case["reference"], env).float()  # noqa: S307 (expressions from our own manifest)
            got = tensors[case["output"]].float()
            scale = ref.abs().max().item()
            err = (got - ref).abs()
            row["max_abs_err"] = err.max().item()
            row["max_err_over_max_ref"] = row["max_abs_err"] / max(scale, 1e-30)
            # Per element, relative to |ref| plus 1% of the largest |ref| (bf16 outputs: ~2^-8 expected).
            row["max_rel_err"] = (err / (ref.abs() + 1e-2 * scale)).max().item()
            # A bf16 output is one rounding (2^-8 relative) of values near the largest: the criterion.
            row["ok"] = bool(math.isfinite(row["max_err_over_max_ref"]) and row["max_err_over_max_ref"] < 1e-2)
            row["ours_ms"] = time_it(launch)
            try:
                row["torch_ms"] = time_it(lambda: eval(case["baseline"], env))  # noqa: S307
                row["ours_over_torch"] = row["ours_ms"] / row["torch_ms"]
            except Exception as e:  # a baseline this torch lacks (e.g. rms_norm)
                row["torch_ms"] = None
                row["baseline_error"] = str(e).splitlines()[0]
            row["ours_tflops"] = case["flops"] / row["ours_ms"] / 1e9
            row["ours_gbs"] = case["bytes"] / row["ours_ms"] / 1e6
        except Exception as e:
            row["error"] = str(e)
        results.append(row)
        print(fmt(row), flush=True)
    if out_path:
        json.dump({"device": dev, "torch": torch.__version__, "results": results}, open(out_path, "w"), indent=2)


def time_it(fn, iters=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def fmt(r):
    if "error" in r:
        return f"{r['case']:<48} ERROR {r['error']}"
    torch_ms = f"{r['torch_ms']:.3f}" if r.get("torch_ms") else "n/a"
    ratio = f"{r['ours_over_torch']:.2f}x" if r.get("torch_ms") else "-"
    return (
        f"{r['case']:<48} {'ok ' if r['ok'] else 'BAD'} err/max {r['max_err_over_max_ref']:.1e} rel {r['max_rel_err']:.1e}  ours {r['ours_ms']:.3f} ms"
        f"  torch {torch_ms} ms  ours/torch {ratio}  {r['ours_tflops']:.1f} TFLOP/s  {r['ours_gbs']:.0f} GB/s"
    )


if __name__ == "__main__":
    main()
