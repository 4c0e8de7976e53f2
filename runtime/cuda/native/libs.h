// Loading libcuda.so.1 and libnccl.so.2 at run time, and turning their error codes into text.
#pragma once

#include <string>

#include "cuda_api.h"

namespace ptc {

struct Driver {
  PFN_cuInit cuInit;
  PFN_cuDriverGetVersion cuDriverGetVersion;
  PFN_cuGetErrorName cuGetErrorName;
  PFN_cuGetErrorString cuGetErrorString;
  PFN_cuDeviceGetCount cuDeviceGetCount;
  PFN_cuDeviceGet cuDeviceGet;
  PFN_cuDeviceGetName cuDeviceGetName;
  PFN_cuDeviceTotalMem cuDeviceTotalMem;
  PFN_cuDeviceGetAttribute cuDeviceGetAttribute;
  PFN_cuDevicePrimaryCtxRetain cuDevicePrimaryCtxRetain;
  PFN_cuCtxSetCurrent cuCtxSetCurrent;
  PFN_cuCtxSynchronize cuCtxSynchronize;
  PFN_cuMemGetInfo cuMemGetInfo;
  PFN_cuMemAlloc cuMemAlloc;
  PFN_cuMemFree cuMemFree;
  PFN_cuMemHostAlloc cuMemHostAlloc;
  PFN_cuMemFreeHost cuMemFreeHost;
  PFN_cuMemcpyHtoD cuMemcpyHtoD;
  PFN_cuMemcpyDtoH cuMemcpyDtoH;
  PFN_cuMemcpyHtoDAsync cuMemcpyHtoDAsync;
  PFN_cuMemcpyDtoHAsync cuMemcpyDtoHAsync;
  PFN_cuMemcpyDtoDAsync cuMemcpyDtoDAsync;
  PFN_cuMemsetD8 cuMemsetD8;
  PFN_cuMemsetD8Async cuMemsetD8Async;
  PFN_cuModuleLoadDataEx cuModuleLoadDataEx;
  PFN_cuModuleUnload cuModuleUnload;
  PFN_cuModuleGetFunction cuModuleGetFunction;
  PFN_cuFuncGetAttribute cuFuncGetAttribute;
  PFN_cuFuncSetAttribute cuFuncSetAttribute;
  PFN_cuLaunchKernel cuLaunchKernel;
  PFN_cuStreamCreate cuStreamCreate;
  PFN_cuStreamDestroy cuStreamDestroy;
  PFN_cuStreamSynchronize cuStreamSynchronize;
  PFN_cuStreamQuery cuStreamQuery;
  PFN_cuStreamWaitEvent cuStreamWaitEvent;
  PFN_cuEventCreate cuEventCreate;
  PFN_cuEventRecord cuEventRecord;
  PFN_cuEventSynchronize cuEventSynchronize;
  PFN_cuEventElapsedTime cuEventElapsedTime;
  PFN_cuEventDestroy cuEventDestroy;
  PFN_cuStreamBeginCapture cuStreamBeginCapture;
  PFN_cuStreamEndCapture cuStreamEndCapture;
  PFN_cuGraphInstantiateWithFlags cuGraphInstantiateWithFlags;
  PFN_cuGraphLaunch cuGraphLaunch;
  PFN_cuGraphExecDestroy cuGraphExecDestroy;
  PFN_cuGraphDestroy cuGraphDestroy;
};

struct Nccl {
  PFN_ncclGetVersion ncclGetVersion;
  PFN_ncclGetUniqueId ncclGetUniqueId;
  PFN_ncclCommInitRank ncclCommInitRank;
  PFN_ncclAllReduce ncclAllReduce;
  PFN_ncclReduceScatter ncclReduceScatter;
  PFN_ncclAllGather ncclAllGather;
  PFN_ncclBroadcast ncclBroadcast;
  PFN_ncclGroupStart ncclGroupStart;
  PFN_ncclGroupEnd ncclGroupEnd;
  PFN_ncclCommDestroy ncclCommDestroy;
  PFN_ncclCommAbort ncclCommAbort;
  PFN_ncclCommGetAsyncError ncclCommGetAsyncError;
  PFN_ncclGetErrorString ncclGetErrorString;
  PFN_ncclGetLastError ncclGetLastError;  // may be null
};

/** Outcome of loading a library: kind is "ok", "not-found", "too-old" or "init-failed". */
struct LoadStatus {
  bool ok = false;
  std::string kind;
  std::string reason;  // one plain sentence
};

/** Loads libcuda.so.1 and runs cuInit(0) once; later calls return the first outcome. */
const LoadStatus& loadDriver();
/** The loaded driver; only valid after loadDriver().ok. */
const Driver& driver();

/** Loads libnccl.so.2 (or `path`) once. */
const LoadStatus& loadNccl(const std::string& path);
const Nccl& nccl();

/** "cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)" plus " while <context>" if given. */
std::string cuErrorMessage(CUresult r, const char* call, const std::string& context = "");
/** "CUDA_ERROR_OUT_OF_MEMORY" */
std::string cuErrorName(CUresult r);
/** "ncclAllReduce failed: ncclUnhandledCudaError (unhandled cuda error ...)" */
std::string ncclErrorMessage(ncclResult_t r, const char* call, ncclComm_t comm = nullptr);
std::string ncclErrorName(ncclResult_t r);

/** 2147483648 -> "2.00 GiB" */
std::string formatBytes(double bytes);

}  // namespace ptc
