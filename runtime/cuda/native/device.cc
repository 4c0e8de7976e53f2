// Driver status, device properties and the primary context.
#include "common.h"

namespace ptc {

namespace {

Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const LoadStatus& st = loadDriver();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", Napi::Boolean::New(env, st.ok));
  o.Set("kind", Napi::String::New(env, st.kind));
  o.Set("reason", Napi::String::New(env, st.reason));
  return o;
}

Napi::Value DriverVersion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireDriver(env);
  int v = 0;
  check(env, driver().cuDriverGetVersion(&v), "cuDriverGetVersion");
  return Napi::Number::New(env, v);
}

Napi::Value DeviceCount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireDriver(env);
  int n = 0;
  check(env, driver().cuDeviceGetCount(&n), "cuDeviceGetCount");
  return Napi::Number::New(env, n);
}

CUdevice deviceAt(const Napi::Env& env, const Napi::Value& v) {
  int ordinal = static_cast<int>(toU64(v, "device index"));
  CUdevice dev = 0;
  check(env, driver().cuDeviceGet(&dev, ordinal), "cuDeviceGet", "opening device " + std::to_string(ordinal));
  return dev;
}

// Attributes that a driver no longer reports (clock rates are deprecated in CUDA 13) read as -1.
int attribute(CUdevice dev, int attr) {
  int v = -1;
  if (driver().cuDeviceGetAttribute(&v, attr, dev) != CUDA_SUCCESS) return -1;
  return v;
}

Napi::Value DeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireDriver(env);
  CUdevice dev = deviceAt(env, info[0]);
  char name[256] = {0};
  check(env, driver().cuDeviceGetName(name, sizeof name - 1, dev), "cuDeviceGetName");
  size_t total = 0;
  check(env, driver().cuDeviceTotalMem(&total, dev), "cuDeviceTotalMem");
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", Napi::String::New(env, name));
  o.Set("totalMemBytes", Napi::Number::New(env, static_cast<double>(total)));
  o.Set("ccMajor", Napi::Number::New(env, attribute(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)));
  o.Set("ccMinor", Napi::Number::New(env, attribute(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)));
  o.Set("smCount", Napi::Number::New(env, attribute(dev, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)));
  o.Set("clockKHz", Napi::Number::New(env, attribute(dev, CU_DEVICE_ATTRIBUTE_CLOCK_RATE)));
  o.Set("memoryClockKHz", Napi::Number::New(env, attribute(dev, CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)));
  o.Set("memoryBusWidthBits", Napi::Number::New(env, attribute(dev, CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)));
  o.Set("l2CacheBytes", Napi::Number::New(env, attribute(dev, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)));
  o.Set("maxThreadsPerBlock", Napi::Number::New(env, attribute(dev, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)));
  o.Set("maxSharedMemoryPerBlockOptin",
        Napi::Number::New(env, attribute(dev, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)));
  o.Set("pciBusId", Napi::Number::New(env, attribute(dev, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)));
  return o;
}

// Retains the device's primary context (the one the CUDA runtime and NCCL also use) and makes it
// current for this process; worker threads bind it before each call.
Napi::Value SetDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireDriver(env);
  int ordinal = static_cast<int>(toU64(info[0], "device index"));
  if (currentContext() != nullptr) {
    if (currentDevice() == ordinal) return env.Undefined();
    throw Napi::Error::New(env, "this process already uses CUDA device " + std::to_string(currentDevice()) +
                                    "; ptc runs one device per process (use the launcher for more)");
  }
  CUdevice dev = deviceAt(env, info[0]);
  CUcontext ctx = nullptr;
  check(env, driver().cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain",
        "creating the context of device " + std::to_string(ordinal));
  check(env, driver().cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  setCurrentContext(ctx, ordinal);
  return env.Undefined();
}

Napi::Value CurrentDevice(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), currentDevice()); }

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  return runAsync(env, "ptc.cuCtxSynchronize", [](Outcome& o) {
    CUresult r = driver().cuCtxSynchronize();
    if (r != CUDA_SUCCESS) o.fail(r, "cuCtxSynchronize");
  });
}

Napi::Value MemGetInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireContext(env);
  size_t freeBytes = 0, totalBytes = 0;
  check(env, driver().cuMemGetInfo(&freeBytes, &totalBytes), "cuMemGetInfo");
  Napi::Object o = Napi::Object::New(env);
  o.Set("free", Napi::Number::New(env, static_cast<double>(freeBytes)));
  o.Set("total", Napi::Number::New(env, static_cast<double>(totalBytes)));
  return o;
}

}  // namespace

void registerDevice(Napi::Env env, Napi::Object exports) {
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
  exports.Set("driverVersion", Napi::Function::New(env, DriverVersion, "driverVersion"));
  exports.Set("deviceCount", Napi::Function::New(env, DeviceCount, "deviceCount"));
  exports.Set("deviceInfo", Napi::Function::New(env, DeviceInfo, "deviceInfo"));
  exports.Set("setDevice", Napi::Function::New(env, SetDevice, "setDevice"));
  exports.Set("currentDevice", Napi::Function::New(env, CurrentDevice, "currentDevice"));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize, "synchronize"));
  exports.Set("memGetInfo", Napi::Function::New(env, MemGetInfo, "memGetInfo"));
}

}  // namespace ptc
