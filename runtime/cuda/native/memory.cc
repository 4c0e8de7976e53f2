// Device memory, pinned host memory and copies. Device pointers cross into JS as bigint.
#include <map>
#include <mutex>

#include "common.h"

namespace ptc {

namespace {

// Pinned blocks from hostAlloc, so the stream-ordered copies can refuse pageable memory: an async
// copy from a JS heap buffer could read it after the caller has reused it.
std::mutex g_pinnedMutex;
std::map<uintptr_t, size_t> g_pinned;

bool isPinned(const void* p, size_t bytes) {
  auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(g_pinnedMutex);
  auto it = g_pinned.upper_bound(a);
  if (it == g_pinned.begin()) return false;
  --it;
  return it->first <= a && a + bytes <= it->first + it->second;
}

void requirePinned(const Napi::Env& env, const HostView& v, const char* call) {
  if (!isPinned(v.data, v.bytes))
    throw Napi::Error::New(env, std::string(call) +
                                    " needs pinned host memory (from hostAlloc); use the promise-returning copy "
                                    "for ordinary buffers");
}

CUstream streamArg(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  return toHandle<CUstream>(v, "stream");
}

Napi::Value MemAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  size_t bytes = toSize(info[0], "bytes");
  CUdeviceptr p = 0;
  check(env, driver().cuMemAlloc(&p, bytes), "cuMemAlloc", "allocating " + formatBytes(static_cast<double>(bytes)));
  return fromU64(env, p);
}

Napi::Value MemFree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  check(env, driver().cuMemFree(toU64(info[0], "device pointer")), "cuMemFree");
  return env.Undefined();
}

// Page-locked host memory as an ArrayBuffer; it is freed when the ArrayBuffer is collected.
Napi::Value HostAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  size_t bytes = toSize(info[0], "bytes");
  if (bytes == 0) throw Napi::RangeError::New(env, "hostAlloc needs at least 1 byte");
  void* p = nullptr;
  check(env, driver().cuMemHostAlloc(&p, bytes, CU_MEMHOSTALLOC_PORTABLE), "cuMemHostAlloc",
        "allocating " + formatBytes(static_cast<double>(bytes)) + " of pinned host memory");
  {
    std::lock_guard<std::mutex> lock(g_pinnedMutex);
    g_pinned[reinterpret_cast<uintptr_t>(p)] = bytes;
  }
  return Napi::ArrayBuffer::New(env, p, bytes, [](Napi::Env, void* data) {
    {
      std::lock_guard<std::mutex> lock(g_pinnedMutex);
      g_pinned.erase(reinterpret_cast<uintptr_t>(data));
    }
    bindContext();
    driver().cuMemFreeHost(data);  // errors at exit (driver already torn down) are harmless
  });
}

// Copies from/to ordinary JS memory run on the thread pool and resolve once the data has arrived.
// They are issued on `stream` (default: the legacy stream) and then wait for it, so they are
// ordered after kernels already enqueued there. (A plain cuMemcpyHtoD from pageable memory may
// return before its DMA is done, and is not ordered against non-blocking streams.)
Napi::Value MemcpyHtoD(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  CUdeviceptr dst = toU64(info[0], "destination");
  HostView src = toHostView(info[1], "source");
  CUstream stream = streamArg(info[2]);
  return runAsync(
      env, "ptc.cuMemcpyHtoD",
      [dst, src, stream](Outcome& o) {
        std::string what = "copying " + formatBytes(src.bytes) + " to the device";
        CUresult r = driver().cuMemcpyHtoDAsync(dst, src.data, src.bytes, stream);
        if (r != CUDA_SUCCESS) return o.fail(r, "cuMemcpyHtoD", what);
        r = driver().cuStreamSynchronize(stream);
        if (r != CUDA_SUCCESS) o.fail(r, "cuStreamSynchronize", what);
      },
      nullptr, {info[1]});
}

Napi::Value MemcpyDtoH(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  HostView dst = toHostView(info[0], "destination");
  CUdeviceptr src = toU64(info[1], "source");
  CUstream stream = streamArg(info[2]);
  return runAsync(
      env, "ptc.cuMemcpyDtoH",
      [dst, src, stream](Outcome& o) {
        std::string what = "copying " + formatBytes(dst.bytes) + " from the device";
        CUresult r = driver().cuMemcpyDtoHAsync(dst.data, src, dst.bytes, stream);
        if (r != CUDA_SUCCESS) return o.fail(r, "cuMemcpyDtoH", what);
        r = driver().cuStreamSynchronize(stream);
        if (r != CUDA_SUCCESS) o.fail(r, "cuStreamSynchronize", what);
      },
      nullptr, {info[0]});
}

// Stream-ordered copies: enqueued here, complete when the stream is synchronized.
Napi::Value MemcpyHtoDAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  CUdeviceptr dst = toU64(info[0], "destination");
  HostView src = toHostView(info[1], "source");
  requirePinned(env, src, "memcpyHtoDAsync");
  check(env, driver().cuMemcpyHtoDAsync(dst, src.data, src.bytes, streamArg(info[2])), "cuMemcpyHtoDAsync");
  return env.Undefined();
}

Napi::Value MemcpyDtoHAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  HostView dst = toHostView(info[0], "destination");
  requirePinned(env, dst, "memcpyDtoHAsync");
  CUdeviceptr src = toU64(info[1], "source");
  check(env, driver().cuMemcpyDtoHAsync(dst.data, src, dst.bytes, streamArg(info[2])), "cuMemcpyDtoHAsync");
  return env.Undefined();
}

Napi::Value MemcpyDtoDAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  check(env,
        driver().cuMemcpyDtoDAsync(toU64(info[0], "destination"), toU64(info[1], "source"), toSize(info[2], "bytes"),
                                   streamArg(info[3])),
        "cuMemcpyDtoDAsync");
  return env.Undefined();
}

Napi::Value MemsetD8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  auto value = static_cast<unsigned char>(toU64(info[1], "value") & 0xff);
  check(env, driver().cuMemsetD8(toU64(info[0], "device pointer"), value, toSize(info[2], "bytes")), "cuMemsetD8");
  return env.Undefined();
}

Napi::Value MemsetD8Async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  auto value = static_cast<unsigned char>(toU64(info[1], "value") & 0xff);
  check(env,
        driver().cuMemsetD8Async(toU64(info[0], "device pointer"), value, toSize(info[2], "bytes"),
                                 streamArg(info[3])),
        "cuMemsetD8Async");
  return env.Undefined();
}

Napi::Value IsPinned(const Napi::CallbackInfo& info) {
  HostView v = toHostView(info[0], "buffer");
  return Napi::Boolean::New(info.Env(), isPinned(v.data, v.bytes));
}

}  // namespace

void registerMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("memAlloc", Napi::Function::New(env, MemAlloc, "memAlloc"));
  exports.Set("memFree", Napi::Function::New(env, MemFree, "memFree"));
  exports.Set("hostAlloc", Napi::Function::New(env, HostAlloc, "hostAlloc"));
  exports.Set("isPinned", Napi::Function::New(env, IsPinned, "isPinned"));
  exports.Set("memcpyHtoD", Napi::Function::New(env, MemcpyHtoD, "memcpyHtoD"));
  exports.Set("memcpyDtoH", Napi::Function::New(env, MemcpyDtoH, "memcpyDtoH"));
  exports.Set("memcpyHtoDAsync", Napi::Function::New(env, MemcpyHtoDAsync, "memcpyHtoDAsync"));
  exports.Set("memcpyDtoHAsync", Napi::Function::New(env, MemcpyDtoHAsync, "memcpyDtoHAsync"));
  exports.Set("memcpyDtoDAsync", Napi::Function::New(env, MemcpyDtoDAsync, "memcpyDtoDAsync"));
  exports.Set("memsetD8", Napi::Function::New(env, MemsetD8, "memsetD8"));
  exports.Set("memsetD8Async", Napi::Function::New(env, MemsetD8Async, "memsetD8Async"));
}

}  // namespace ptc
