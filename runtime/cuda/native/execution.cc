// Streams, events, modules, kernel launches and CUDA graphs. Calls that only enqueue work stay on
// the JS thread (they return at once, and graph capture must see them in order); calls that wait
// (synchronize, JIT) run on the thread pool.
#include "common.h"

namespace ptc {

namespace {

CUstream streamArg(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  return toHandle<CUstream>(v, "stream");
}

// --- streams
Napi::Value StreamCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  CUstream s = nullptr;
  // Non-blocking: our streams never serialise with the legacy NULL stream.
  check(env, driver().cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  return fromHandle(env, s);
}

Napi::Value StreamDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  check(env, driver().cuStreamDestroy(toHandle<CUstream>(info[0], "stream")), "cuStreamDestroy");
  return env.Undefined();
}

Napi::Value StreamSynchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  CUstream s = streamArg(info[0]);
  return runAsync(env, "ptc.cuStreamSynchronize", [s](Outcome& o) {
    CUresult r = driver().cuStreamSynchronize(s);
    if (r != CUDA_SUCCESS) o.fail(r, "cuStreamSynchronize");
  });
}

Napi::Value StreamQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  CUresult r = driver().cuStreamQuery(streamArg(info[0]));
  if (r == CUDA_ERROR_NOT_READY) return Napi::Boolean::New(env, false);
  check(env, r, "cuStreamQuery");
  return Napi::Boolean::New(env, true);
}

Napi::Value StreamWaitEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  check(env, driver().cuStreamWaitEvent(streamArg(info[0]), toHandle<CUevent>(info[1], "event"), 0),
        "cuStreamWaitEvent");
  return env.Undefined();
}

// --- events
Napi::Value EventCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  bool timing = info[0].IsUndefined() || info[0].ToBoolean().Value();
  CUevent e = nullptr;
  check(env, driver().cuEventCreate(&e, timing ? CU_EVENT_DEFAULT : CU_EVENT_DISABLE_TIMING), "cuEventCreate");
  return fromHandle(env, e);
}

Napi::Value EventRecord(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  check(env, driver().cuEventRecord(toHandle<CUevent>(info[0], "event"), streamArg(info[1])), "cuEventRecord");
  return env.Undefined();
}

Napi::Value EventSynchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  CUevent e = toHandle<CUevent>(info[0], "event");
  return runAsync(env, "ptc.cuEventSynchronize", [e](Outcome& o) {
    CUresult r = driver().cuEventSynchronize(e);
    if (r != CUDA_SUCCESS) o.fail(r, "cuEventSynchronize");
  });
}

Napi::Value EventElapsedMs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  float ms = 0;
  check(env,
        driver().cuEventElapsedTime(&ms, toHandle<CUevent>(info[0], "start event"),
                                    toHandle<CUevent>(info[1], "end event")),
        "cuEventElapsedTime");
  return Napi::Number::New(env, ms);
}

Napi::Value EventDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  check(env, driver().cuEventDestroy(toHandle<CUevent>(info[0], "event")), "cuEventDestroy");
  return env.Undefined();
}

// --- modules and functions
// moduleLoad(image: string (PTX) | Uint8Array (cubin or PTX bytes)): Promise<{ module, infoLog }>.
// The driver JIT-compiles PTX, which takes long enough to keep off the JS thread.
Napi::Value ModuleLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  auto image = std::make_shared<std::string>();
  if (info[0].IsString()) {
    *image = info[0].As<Napi::String>().Utf8Value();
  } else {
    HostView v = toHostView(info[0], "module image");
    image->assign(static_cast<const char*>(v.data), v.bytes);
  }
  auto module = std::make_shared<CUmodule>(nullptr);
  auto infoLog = std::make_shared<std::string>();
  return runAsync(
      env, "ptc.cuModuleLoadDataEx",
      [image, module, infoLog](Outcome& o) {
        // Log buffers as documented for CUjit_option: the *_SIZE_BYTES values are in/out.
        std::vector<char> infoBuf(16384, 0), errorBuf(16384, 0);
        CUjit_option options[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                                  CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_LOG_VERBOSE};
        void* values[] = {infoBuf.data(), reinterpret_cast<void*>(static_cast<uintptr_t>(infoBuf.size())),
                          errorBuf.data(), reinterpret_cast<void*>(static_cast<uintptr_t>(errorBuf.size())),
                          reinterpret_cast<void*>(static_cast<uintptr_t>(1))};
        CUresult r = driver().cuModuleLoadDataEx(module.get(), image->c_str(), 5, options, values);
        infoBuf.back() = 0;
        errorBuf.back() = 0;
        *infoLog = infoBuf.data();
        if (r != CUDA_SUCCESS) {
          o.fail(r, "cuModuleLoadDataEx", "loading a module");
          if (errorBuf[0] != 0) o.error += ":\n" + std::string(errorBuf.data());
        }
      },
      [module, infoLog](Napi::Env e) -> Napi::Value {
        Napi::Object out = Napi::Object::New(e);
        out.Set("module", fromHandle(e, *module));
        out.Set("infoLog", Napi::String::New(e, *infoLog));
        return out;
      });
}

Napi::Value ModuleUnload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  check(env, driver().cuModuleUnload(toHandle<CUmodule>(info[0], "module")), "cuModuleUnload");
  return env.Undefined();
}

Napi::Value ModuleGetFunction(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  std::string name = info[1].As<Napi::String>().Utf8Value();
  CUfunction f = nullptr;
  check(env, driver().cuModuleGetFunction(&f, toHandle<CUmodule>(info[0], "module"), name.c_str()),
        "cuModuleGetFunction", "looking up kernel '" + name + "'");
  return fromHandle(env, f);
}

Napi::Value FuncGetAttribute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  int v = 0;
  int attr = static_cast<int>(toU64(info[1], "attribute"));
  check(env, driver().cuFuncGetAttribute(&v, attr, toHandle<CUfunction>(info[0], "function")), "cuFuncGetAttribute");
  return Napi::Number::New(env, v);
}

Napi::Value FuncSetAttribute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  int attr = static_cast<int>(toU64(info[1], "attribute"));
  int value = info[2].As<Napi::Number>().Int32Value();
  check(env, driver().cuFuncSetAttribute(toHandle<CUfunction>(info[0], "function"), attr, value),
        "cuFuncSetAttribute");
  return env.Undefined();
}

unsigned dim(const Napi::Value& arr, uint32_t i, const char* what) {
  Napi::Value v = arr.As<Napi::Array>().Get(i);
  return static_cast<unsigned>(toU64(v, what));
}

// launchKernel(fn, grid[3], block[3], sharedBytes, stream, params: Uint8Array, offsets: Uint32Array)
// `params` holds every argument packed at its natural alignment; kernelParams[i] points at
// params + offsets[i]. The driver copies the values during the call, so nothing outlives it.
Napi::Value LaunchKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  auto fn = toHandle<CUfunction>(info[0], "function");
  if (!info[1].IsArray() || !info[2].IsArray()) throw Napi::TypeError::New(env, "grid and block must be [x, y, z]");
  unsigned gx = dim(info[1], 0, "grid.x"), gy = dim(info[1], 1, "grid.y"), gz = dim(info[1], 2, "grid.z");
  unsigned bx = dim(info[2], 0, "block.x"), by = dim(info[2], 1, "block.y"), bz = dim(info[2], 2, "block.z");
  auto shared = static_cast<unsigned>(toU64(info[3], "shared memory bytes"));
  CUstream stream = streamArg(info[4]);
  HostView params = toHostView(info[5], "kernel parameters");
  Napi::Uint32Array offsets = info[6].As<Napi::Uint32Array>();
  std::vector<void*> ptrs(offsets.ElementLength());
  for (size_t i = 0; i < ptrs.size(); i++) {
    if (offsets[i] >= params.bytes && params.bytes > 0)
      throw Napi::RangeError::New(env, "kernel parameter offset out of range");
    ptrs[i] = static_cast<uint8_t*>(params.data) + offsets[i];
  }
  check(env,
        driver().cuLaunchKernel(fn, gx, gy, gz, bx, by, bz, shared, stream, ptrs.empty() ? nullptr : ptrs.data(),
                                nullptr),
        "cuLaunchKernel",
        "launching grid [" + std::to_string(gx) + "," + std::to_string(gy) + "," + std::to_string(gz) + "] x block [" +
            std::to_string(bx) + "," + std::to_string(by) + "," + std::to_string(bz) + "] with " +
            std::to_string(shared) + " B of dynamic shared memory");
  return env.Undefined();
}

// --- CUDA graphs: capture a stream's work once, replay it with one launch.
Napi::Value StreamBeginCapture(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  // CUstreamCaptureMode (cuda.h): GLOBAL = 0, THREAD_LOCAL = 1, RELAXED = 2. Default THREAD_LOCAL:
  // unsafe calls from this thread (cuMemAlloc) invalidate the capture; the thread pool is unaffected.
  int mode = info[1].IsUndefined() ? 1 : static_cast<int>(toU64(info[1], "capture mode"));
  check(env, driver().cuStreamBeginCapture(toHandle<CUstream>(info[0], "stream"), mode), "cuStreamBeginCapture");
  return env.Undefined();
}

Napi::Value StreamEndCapture(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  CUgraph g = nullptr;
  check(env, driver().cuStreamEndCapture(toHandle<CUstream>(info[0], "stream"), &g), "cuStreamEndCapture");
  return fromHandle(env, g);
}

Napi::Value GraphInstantiate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  CUgraphExec exec = nullptr;
  check(env, driver().cuGraphInstantiateWithFlags(&exec, toHandle<CUgraph>(info[0], "graph"), 0), "cuGraphInstantiate");
  return fromHandle(env, exec);
}

Napi::Value GraphLaunch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  check(env, driver().cuGraphLaunch(toHandle<CUgraphExec>(info[0], "graph exec"), streamArg(info[1])),
        "cuGraphLaunch");
  return env.Undefined();
}

Napi::Value GraphExecDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  check(env, driver().cuGraphExecDestroy(toHandle<CUgraphExec>(info[0], "graph exec")), "cuGraphExecDestroy");
  return env.Undefined();
}

Napi::Value GraphDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  check(env, driver().cuGraphDestroy(toHandle<CUgraph>(info[0], "graph")), "cuGraphDestroy");
  return env.Undefined();
}

}  // namespace

void registerExecution(Napi::Env env, Napi::Object exports) {
  exports.Set("streamCreate", Napi::Function::New(env, StreamCreate, "streamCreate"));
  exports.Set("streamDestroy", Napi::Function::New(env, StreamDestroy, "streamDestroy"));
  exports.Set("streamSynchronize", Napi::Function::New(env, StreamSynchronize, "streamSynchronize"));
  exports.Set("streamQuery", Napi::Function::New(env, StreamQuery, "streamQuery"));
  exports.Set("streamWaitEvent", Napi::Function::New(env, StreamWaitEvent, "streamWaitEvent"));
  exports.Set("eventCreate", Napi::Function::New(env, EventCreate, "eventCreate"));
  exports.Set("eventRecord", Napi::Function::New(env, EventRecord, "eventRecord"));
  exports.Set("eventSynchronize", Napi::Function::New(env, EventSynchronize, "eventSynchronize"));
  exports.Set("eventElapsedMs", Napi::Function::New(env, EventElapsedMs, "eventElapsedMs"));
  exports.Set("eventDestroy", Napi::Function::New(env, EventDestroy, "eventDestroy"));
  exports.Set("moduleLoad", Napi::Function::New(env, ModuleLoad, "moduleLoad"));
  exports.Set("moduleUnload", Napi::Function::New(env, ModuleUnload, "moduleUnload"));
  exports.Set("moduleGetFunction", Napi::Function::New(env, ModuleGetFunction, "moduleGetFunction"));
  exports.Set("funcGetAttribute", Napi::Function::New(env, FuncGetAttribute, "funcGetAttribute"));
  exports.Set("funcSetAttribute", Napi::Function::New(env, FuncSetAttribute, "funcSetAttribute"));
  exports.Set("launchKernel", Napi::Function::New(env, LaunchKernel, "launchKernel"));
  exports.Set("streamBeginCapture", Napi::Function::New(env, StreamBeginCapture, "streamBeginCapture"));
  exports.Set("streamEndCapture", Napi::Function::New(env, StreamEndCapture, "streamEndCapture"));
  exports.Set("graphInstantiate", Napi::Function::New(env, GraphInstantiate, "graphInstantiate"));
  exports.Set("graphLaunch", Napi::Function::New(env, GraphLaunch, "graphLaunch"));
  exports.Set("graphExecDestroy", Napi::Function::New(env, GraphExecDestroy, "graphExecDestroy"));
  exports.Set("graphDestroy", Napi::Function::New(env, GraphDestroy, "graphDestroy"));
}

}  // namespace ptc
