// Shared pieces of the addon: the current context, argument conversion, errors, and the worker that
// runs a blocking driver call on libuv's thread pool and settles a promise.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "libs.h"

namespace ptc {

/** The primary context of the device chosen by setDevice (one device per process, as in DDP). */
CUcontext currentContext();
void setCurrentContext(CUcontext ctx, int device);
int currentDevice();
/** Makes the context current on the calling thread (driver contexts are per thread). */
CUresult bindContext();

/** Throws a JS Error unless the driver is loaded and setDevice has run. */
void requireContext(const Napi::Env& env);
/** Throws a JS Error unless the driver is loaded. */
void requireDriver(const Napi::Env& env);

/** A JS Error with `code` (e.g. "CUDA_ERROR_OUT_OF_MEMORY") and `result` (the number). */
Napi::Error cudaError(const Napi::Env& env, CUresult r, const char* call, const std::string& context = "");
inline void check(const Napi::Env& env, CUresult r, const char* call, const std::string& context = "") {
  if (r != CUDA_SUCCESS) throw cudaError(env, r, call, context);
}

uint64_t toU64(const Napi::Value& v, const char* what);
/** A non-negative integer byte count given as number or bigint. */
size_t toSize(const Napi::Value& v, const char* what);
template <typename T>
T toHandle(const Napi::Value& v, const char* what) {
  return reinterpret_cast<T>(static_cast<uintptr_t>(toU64(v, what)));
}
inline Napi::BigInt fromU64(const Napi::Env& env, uint64_t x) { return Napi::BigInt::New(env, x); }
template <typename T>
Napi::BigInt fromHandle(const Napi::Env& env, T h) {
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(h)));
}

/** The bytes of a TypedArray/DataView/Buffer argument. */
struct HostView {
  void* data;
  size_t bytes;
};
HostView toHostView(const Napi::Value& v, const char* what);

/** What a background call reports back: an error message (empty = success) and its code. */
struct Outcome {
  std::string error;
  std::string code;
  int result = 0;
  void fail(CUresult r, const char* call, const std::string& context = "") {
    error = cuErrorMessage(r, call, context);
    code = cuErrorName(r);
    result = r;
  }
};

using Body = std::function<void(Outcome&)>;
using Resolver = std::function<Napi::Value(Napi::Env)>;

/**
 * Runs `body` on the libuv thread pool with the context bound and returns a promise for
 * `resolve(env)` (or undefined). `keepAlive` values (buffers being copied) stay referenced until
 * the promise settles.
 */
Napi::Promise runAsync(const Napi::Env& env, const char* name, Body body, Resolver resolve = nullptr,
                       const std::vector<Napi::Value>& keepAlive = {});

/** Rejection/resolution helpers shared by the NCCL queue. */
Napi::Error outcomeError(const Napi::Env& env, const Outcome& o);

void registerDevice(Napi::Env env, Napi::Object exports);
void registerMemory(Napi::Env env, Napi::Object exports);
void registerExecution(Napi::Env env, Napi::Object exports);
void registerNccl(Napi::Env env, Napi::Object exports);

}  // namespace ptc
