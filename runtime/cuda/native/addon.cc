// Entry point of ptc_cuda.node. Loading the addon touches no driver: libcuda.so.1 is opened on the
// first call that needs it, so the addon loads on machines without a GPU.
#include "common.h"

namespace ptc {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  registerDevice(env, exports);
  registerMemory(env, exports);
  registerExecution(env, exports);
  registerNccl(env, exports);
  exports.Set("formatBytes", Napi::Function::New(
                                 env,
                                 [](const Napi::CallbackInfo& info) -> Napi::Value {
                                   return Napi::String::New(info.Env(),
                                                            formatBytes(info[0].As<Napi::Number>().DoubleValue()));
                                 },
                                 "formatBytes"));
  return exports;
}

}  // namespace ptc

static Napi::Object InitPtcCuda(Napi::Env env, Napi::Object exports) { return ptc::Init(env, exports); }

NODE_API_MODULE(ptc_cuda, InitPtcCuda)
