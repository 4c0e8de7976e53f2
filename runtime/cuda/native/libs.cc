// dlopen/dlsym of the CUDA driver and NCCL. Nothing links against either library, so the addon
// loads on any Linux machine; the first use says plainly why the GPU path is unavailable.
#include "libs.h"

#include <dlfcn.h>

#include <cstdio>
#include <mutex>
#include <vector>

namespace ptc {

namespace {

Driver g_driver{};
LoadStatus g_driverStatus;
std::once_flag g_driverOnce;

Nccl g_nccl{};
LoadStatus g_ncclStatus;
bool g_ncclTried = false;
std::mutex g_ncclMutex;

struct Symbol {
  const char* name;
  void** slot;
  bool optional;
};

// Resolves every symbol; returns the names that are missing (required ones only).
std::vector<std::string> resolve(void* lib, const std::vector<Symbol>& symbols) {
  std::vector<std::string> missing;
  for (const Symbol& s : symbols) {
    *s.slot = dlsym(lib, s.name);
    if (*s.slot == nullptr && !s.optional) missing.push_back(s.name);
  }
  return missing;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

#define SYM(table, field, name) Symbol{name, reinterpret_cast<void**>(&table.field), false}
#define OPT(table, field, name) Symbol{name, reinterpret_cast<void**>(&table.field), true}

void doLoadDriver() {
  LoadStatus& st = g_driverStatus;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    st.kind = "not-found";
    st.reason = "libcuda.so.1 not found: no NVIDIA driver on this machine";
    return;
  }
  Driver& d = g_driver;
  std::vector<Symbol> symbols = {
      SYM(d, cuInit, "cuInit"),
      SYM(d, cuDriverGetVersion, "cuDriverGetVersion"),
      SYM(d, cuGetErrorName, "cuGetErrorName"),
      SYM(d, cuGetErrorString, "cuGetErrorString"),
      SYM(d, cuDeviceGetCount, "cuDeviceGetCount"),
      SYM(d, cuDeviceGet, "cuDeviceGet"),
      SYM(d, cuDeviceGetName, "cuDeviceGetName"),
      SYM(d, cuDeviceTotalMem, "cuDeviceTotalMem_v2"),
      SYM(d, cuDeviceGetAttribute, "cuDeviceGetAttribute"),
      SYM(d, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
      SYM(d, cuCtxSetCurrent, "cuCtxSetCurrent"),
      SYM(d, cuCtxSynchronize, "cuCtxSynchronize"),
      SYM(d, cuMemGetInfo, "cuMemGetInfo_v2"),
      SYM(d, cuMemAlloc, "cuMemAlloc_v2"),
      SYM(d, cuMemFree, "cuMemFree_v2"),
      SYM(d, cuMemHostAlloc, "cuMemHostAlloc"),
      SYM(d, cuMemFreeHost, "cuMemFreeHost"),
      SYM(d, cuMemcpyHtoD, "cuMemcpyHtoD_v2"),
      SYM(d, cuMemcpyDtoH, "cuMemcpyDtoH_v2"),
      SYM(d, cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"),
      SYM(d, cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"),
      SYM(d, cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2"),
      SYM(d, cuMemsetD8, "cuMemsetD8_v2"),
      SYM(d, cuMemsetD8Async, "cuMemsetD8Async"),
      SYM(d, cuModuleLoadDataEx, "cuModuleLoadDataEx"),
      SYM(d, cuModuleUnload, "cuModuleUnload"),
      SYM(d, cuModuleGetFunction, "cuModuleGetFunction"),
      SYM(d, cuFuncGetAttribute, "cuFuncGetAttribute"),
      SYM(d, cuFuncSetAttribute, "cuFuncSetAttribute"),
      SYM(d, cuLaunchKernel, "cuLaunchKernel"),
      SYM(d, cuStreamCreate, "cuStreamCreate"),
      SYM(d, cuStreamDestroy, "cuStreamDestroy_v2"),
      SYM(d, cuStreamSynchronize, "cuStreamSynchronize"),
      SYM(d, cuStreamQuery, "cuStreamQuery"),
      SYM(d, cuStreamWaitEvent, "cuStreamWaitEvent"),
      SYM(d, cuEventCreate, "cuEventCreate"),
      SYM(d, cuEventRecord, "cuEventRecord"),
      SYM(d, cuEventSynchronize, "cuEventSynchronize"),
      // cuda.h 12.8+ maps cuEventElapsedTime to _v2; older drivers only have the plain name.
      OPT(d, cuEventElapsedTime, "cuEventElapsedTime_v2"),
      SYM(d, cuEventDestroy, "cuEventDestroy_v2"),
      SYM(d, cuStreamBeginCapture, "cuStreamBeginCapture_v2"),
      SYM(d, cuStreamEndCapture, "cuStreamEndCapture"),
      SYM(d, cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags"),
      SYM(d, cuGraphLaunch, "cuGraphLaunch"),
      SYM(d, cuGraphExecDestroy, "cuGraphExecDestroy"),
      SYM(d, cuGraphDestroy, "cuGraphDestroy"),
  };
  std::vector<std::string> missing = resolve(lib, symbols);
  if (d.cuEventElapsedTime == nullptr) {
    d.cuEventElapsedTime = reinterpret_cast<PFN_cuEventElapsedTime>(dlsym(lib, "cuEventElapsedTime"));
    if (d.cuEventElapsedTime == nullptr) missing.push_back("cuEventElapsedTime");
  }
  if (!missing.empty()) {
    st.kind = "too-old";
    st.reason = "libcuda.so.1 is too old for ptc: it lacks " + join(missing) + " (CUDA 12 or newer driver needed)";
    return;
  }
  CUresult r = d.cuInit(0);
  if (r != CUDA_SUCCESS) {
    st.kind = "init-failed";
    st.reason = cuErrorMessage(r, "cuInit");
    return;
  }
  st.ok = true;
  st.kind = "ok";
}

}  // namespace

const LoadStatus& loadDriver() {
  std::call_once(g_driverOnce, doLoadDriver);
  return g_driverStatus;
}

const Driver& driver() { return g_driver; }

const LoadStatus& loadNccl(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_ncclMutex);
  if (g_ncclTried) return g_ncclStatus;
  g_ncclTried = true;
  LoadStatus& st = g_ncclStatus;
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    st.kind = "not-found";
    const char* err = dlerror();
    st.reason = path + " not found: NCCL is not installed (set PTC_NCCL_LIBRARY to its path)" +
                (err ? std::string(" [") + err + "]" : "");
    return st;
  }
  Nccl& n = g_nccl;
  std::vector<Symbol> symbols = {
      SYM(n, ncclGetVersion, "ncclGetVersion"),
      SYM(n, ncclGetUniqueId, "ncclGetUniqueId"),
      SYM(n, ncclCommInitRank, "ncclCommInitRank"),
      SYM(n, ncclAllReduce, "ncclAllReduce"),
      SYM(n, ncclReduceScatter, "ncclReduceScatter"),
      SYM(n, ncclAllGather, "ncclAllGather"),
      SYM(n, ncclBroadcast, "ncclBroadcast"),
      SYM(n, ncclGroupStart, "ncclGroupStart"),
      SYM(n, ncclGroupEnd, "ncclGroupEnd"),
      SYM(n, ncclCommDestroy, "ncclCommDestroy"),
      SYM(n, ncclCommAbort, "ncclCommAbort"),
      SYM(n, ncclCommGetAsyncError, "ncclCommGetAsyncError"),
      SYM(n, ncclGetErrorString, "ncclGetErrorString"),
      OPT(n, ncclGetLastError, "ncclGetLastError"),
  };
  std::vector<std::string> missing = resolve(lib, symbols);
  if (!missing.empty()) {
    st.kind = "too-old";
    st.reason = path + " is too old for ptc: it lacks " + join(missing);
    return st;
  }
  st.ok = true;
  st.kind = "ok";
  return st;
}

const Nccl& nccl() { return g_nccl; }

std::string cuErrorName(CUresult r) {
  const char* name = nullptr;
  if (g_driver.cuGetErrorName == nullptr || g_driver.cuGetErrorName(r, &name) != CUDA_SUCCESS || name == nullptr)
    return "CUDA error " + std::to_string(r);
  return name;
}

std::string cuErrorMessage(CUresult r, const char* call, const std::string& context) {
  std::string msg = std::string(call) + " failed: " + cuErrorName(r);
  const char* text = nullptr;
  if (g_driver.cuGetErrorString != nullptr && g_driver.cuGetErrorString(r, &text) == CUDA_SUCCESS && text != nullptr)
    msg += std::string(" (") + text + ")";
  if (!context.empty()) msg += " while " + context;
  return msg;
}

std::string ncclErrorName(ncclResult_t r) {
  // src/nccl.h.in, ncclResult_t
  static const char* const names[] = {"ncclSuccess",         "ncclUnhandledCudaError", "ncclSystemError",
                                      "ncclInternalError",   "ncclInvalidArgument",    "ncclInvalidUsage",
                                      "ncclRemoteError",     "ncclInProgress",         "ncclTimeout"};
  if (r >= 0 && r < static_cast<int>(sizeof(names) / sizeof(names[0]))) return names[r];
  return "ncclResult " + std::to_string(r);
}

std::string ncclErrorMessage(ncclResult_t r, const char* call, ncclComm_t comm) {
  std::string msg = std::string(call) + " failed: " + ncclErrorName(r);
  if (g_nccl.ncclGetErrorString != nullptr) {
    const char* text = g_nccl.ncclGetErrorString(r);
    if (text != nullptr) msg += std::string(" (") + text + ")";
  }
  if (g_nccl.ncclGetLastError != nullptr) {
    const char* last = g_nccl.ncclGetLastError(comm);
    if (last != nullptr && last[0] != '\0') msg += ": " + std::string(last);
  }
  return msg;
}

std::string formatBytes(double bytes) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (bytes >= 1024 && u < 5) {
    bytes /= 1024;
    u++;
  }
  char buf[64];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", bytes, units[u]);
  return buf;
}

}  // namespace ptc
