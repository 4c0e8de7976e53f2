#include "common.h"

#include <atomic>

namespace ptc {

namespace {

std::atomic<CUcontext> g_ctx{nullptr};
std::atomic<int> g_device{-1};

class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(const Napi::Env& env, const char* name, Body body, Resolver resolve,
                const std::vector<Napi::Value>& keepAlive)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), body_(std::move(body)),
        resolve_(std::move(resolve)) {
    for (const Napi::Value& v : keepAlive)
      if (v.IsObject()) keep_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    CUresult r = bindContext();
    if (r != CUDA_SUCCESS) outcome_.fail(r, "cuCtxSetCurrent");
    else body_(outcome_);
    if (!outcome_.error.empty()) SetError(outcome_.error);
  }
  void OnOK() override { deferred_.Resolve(resolve_ ? resolve_(Env()) : Env().Undefined()); }
  void OnError(const Napi::Error&) override { deferred_.Reject(outcomeError(Env(), outcome_).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Body body_;
  Resolver resolve_;
  Outcome outcome_;
  std::vector<Napi::ObjectReference> keep_;
};

}  // namespace

CUcontext currentContext() { return g_ctx.load(); }
int currentDevice() { return g_device.load(); }
void setCurrentContext(CUcontext ctx, int device) {
  g_ctx.store(ctx);
  g_device.store(device);
}

// Remembers what each thread has bound, so steady-state calls (and calls during graph capture)
// make no extra driver call.
thread_local CUcontext t_bound = nullptr;

CUresult bindContext() {
  CUcontext ctx = g_ctx.load();
  if (ctx == nullptr || ctx == t_bound) return CUDA_SUCCESS;
  CUresult r = driver().cuCtxSetCurrent(ctx);
  if (r == CUDA_SUCCESS) t_bound = ctx;
  return r;
}

void requireDriver(const Napi::Env& env) {
  const LoadStatus& st = loadDriver();
  if (!st.ok) throw Napi::Error::New(env, st.reason);
}

void requireContext(const Napi::Env& env) {
  requireDriver(env);
  if (g_ctx.load() == nullptr) throw Napi::Error::New(env, "no CUDA device selected: call setDevice(index) first");
  check(env, bindContext(), "cuCtxSetCurrent");
}

Napi::Error cudaError(const Napi::Env& env, CUresult r, const char* call, const std::string& context) {
  Napi::Error e = Napi::Error::New(env, cuErrorMessage(r, call, context));
  e.Set("code", Napi::String::New(env, cuErrorName(r)));
  e.Set("result", Napi::Number::New(env, r));
  return e;
}

Napi::Error outcomeError(const Napi::Env& env, const Outcome& o) {
  Napi::Error e = Napi::Error::New(env, o.error);
  if (!o.code.empty()) e.Set("code", Napi::String::New(env, o.code));
  e.Set("result", Napi::Number::New(env, o.result));
  return e;
}

uint64_t toU64(const Napi::Value& v, const char* what) {
  if (v.IsBigInt()) {
    bool lossless = true;
    uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(v.Env(), std::string(what) + " does not fit in 64 bits");
    return x;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d < 0 || d != static_cast<double>(static_cast<uint64_t>(d)))
      throw Napi::RangeError::New(v.Env(), std::string(what) + " must be a non-negative integer");
    return static_cast<uint64_t>(d);
  }
  throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a bigint or a number");
}

size_t toSize(const Napi::Value& v, const char* what) { return static_cast<size_t>(toU64(v, what)); }

HostView toHostView(const Napi::Value& v, const char* what) {
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    auto* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data());
    return {base + ta.ByteOffset(), ta.ByteLength()};
  }
  if (v.IsDataView()) {
    Napi::DataView dv = v.As<Napi::DataView>();
    auto* base = static_cast<uint8_t*>(dv.ArrayBuffer().Data());
    return {base + dv.ByteOffset(), dv.ByteLength()};
  }
  if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    return {ab.Data(), ab.ByteLength()};
  }
  throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a TypedArray, DataView or ArrayBuffer");
}

Napi::Promise runAsync(const Napi::Env& env, const char* name, Body body, Resolver resolve,
                       const std::vector<Napi::Value>& keepAlive) {
  auto* worker = new PromiseWorker(env, name, std::move(body), std::move(resolve), keepAlive);
  Napi::Promise p = worker->promise();
  worker->Queue();  // the worker deletes itself after OnOK/OnError
  return p;
}

}  // namespace ptc
