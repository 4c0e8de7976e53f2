// The slice of the CUDA driver API and NCCL that ptc uses, declared here so the addon builds on
// machines without the CUDA toolkit. Every prototype and enum value below was copied from
// cuda.h of CUDA 13.0 (/usr/local/cuda-13.0/include/cuda.h) and from NCCL's src/nccl.h.in
// (NVIDIA/nccl, 2.2x); the symbol names are the ABI names that cuda.h's #defines map to
// (cuMemAlloc -> cuMemAlloc_v2, cuGraphInstantiate -> cuGraphInstantiateWithFlags, ...).
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {

// --- driver types (cuda.h: "typedef int CUdevice_v1", "typedef unsigned long long CUdeviceptr_v2")
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st* CUcontext;
typedef struct CUmod_st* CUmodule;
typedef struct CUfunc_st* CUfunction;
typedef struct CUstream_st* CUstream;
typedef struct CUevent_st* CUevent;
typedef struct CUgraph_st* CUgraph;
typedef struct CUgraphExec_st* CUgraphExec;
typedef int CUjit_option;

// --- enum values used (cuda.h, enum cudaError_enum / CUjit_option_enum / ...)
enum : int {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_OUT_OF_MEMORY = 2,
  CUDA_ERROR_NOT_READY = 600,
};
enum : int {
  CU_JIT_INFO_LOG_BUFFER = 3,
  CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
  CU_JIT_ERROR_LOG_BUFFER = 5,
  CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
  CU_JIT_LOG_VERBOSE = 12,
};
enum : unsigned {
  CU_STREAM_NON_BLOCKING = 0x1,  // CUstream_flags
  CU_EVENT_DEFAULT = 0x0,        // CUevent_flags
  CU_EVENT_DISABLE_TIMING = 0x2,
  CU_MEMHOSTALLOC_PORTABLE = 0x1,  // cuMemHostAlloc flags
};
// CUdevice_attribute
enum : int {
  CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1,
  CU_DEVICE_ATTRIBUTE_CLOCK_RATE = 13,  // kHz
  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
  CU_DEVICE_ATTRIBUTE_PCI_BUS_ID = 33,
  CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE = 36,  // kHz
  CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH = 37,  // bits
  CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
  CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
};

// --- driver entry points, as function-pointer types (the names in comments are the dlsym names)
typedef CUresult (*PFN_cuInit)(unsigned int flags);
typedef CUresult (*PFN_cuDriverGetVersion)(int* version);
typedef CUresult (*PFN_cuGetErrorName)(CUresult error, const char** str);
typedef CUresult (*PFN_cuGetErrorString)(CUresult error, const char** str);
typedef CUresult (*PFN_cuDeviceGetCount)(int* count);
typedef CUresult (*PFN_cuDeviceGet)(CUdevice* device, int ordinal);
typedef CUresult (*PFN_cuDeviceGetName)(char* name, int len, CUdevice dev);
typedef CUresult (*PFN_cuDeviceTotalMem)(size_t* bytes, CUdevice dev);  // cuDeviceTotalMem_v2
typedef CUresult (*PFN_cuDeviceGetAttribute)(int* pi, int attrib, CUdevice dev);
typedef CUresult (*PFN_cuDevicePrimaryCtxRetain)(CUcontext* pctx, CUdevice dev);
typedef CUresult (*PFN_cuCtxSetCurrent)(CUcontext ctx);
typedef CUresult (*PFN_cuCtxSynchronize)(void);
typedef CUresult (*PFN_cuMemGetInfo)(size_t* free, size_t* total);                   // cuMemGetInfo_v2
typedef CUresult (*PFN_cuMemAlloc)(CUdeviceptr* dptr, size_t bytesize);              // cuMemAlloc_v2
typedef CUresult (*PFN_cuMemFree)(CUdeviceptr dptr);                                 // cuMemFree_v2
typedef CUresult (*PFN_cuMemHostAlloc)(void** pp, size_t bytesize, unsigned int flags);
typedef CUresult (*PFN_cuMemFreeHost)(void* p);
typedef CUresult (*PFN_cuMemcpyHtoD)(CUdeviceptr dst, const void* src, size_t bytes);  // cuMemcpyHtoD_v2
typedef CUresult (*PFN_cuMemcpyDtoH)(void* dst, CUdeviceptr src, size_t bytes);        // cuMemcpyDtoH_v2
typedef CUresult (*PFN_cuMemcpyHtoDAsync)(CUdeviceptr dst, const void* src, size_t bytes,
                                          CUstream stream);  // cuMemcpyHtoDAsync_v2
typedef CUresult (*PFN_cuMemcpyDtoHAsync)(void* dst, CUdeviceptr src, size_t bytes,
                                          CUstream stream);  // cuMemcpyDtoHAsync_v2
typedef CUresult (*PFN_cuMemcpyDtoDAsync)(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                                          CUstream stream);  // cuMemcpyDtoDAsync_v2
typedef CUresult (*PFN_cuMemsetD8)(CUdeviceptr dst, unsigned char value, size_t n);  // cuMemsetD8_v2
typedef CUresult (*PFN_cuMemsetD8Async)(CUdeviceptr dst, unsigned char value, size_t n, CUstream stream);
typedef CUresult (*PFN_cuModuleLoadDataEx)(CUmodule* module, const void* image, unsigned int numOptions,
                                           CUjit_option* options, void** optionValues);
typedef CUresult (*PFN_cuModuleUnload)(CUmodule module);
typedef CUresult (*PFN_cuModuleGetFunction)(CUfunction* fn, CUmodule module, const char* name);
typedef CUresult (*PFN_cuFuncGetAttribute)(int* pi, int attrib, CUfunction fn);
typedef CUresult (*PFN_cuFuncSetAttribute)(CUfunction fn, int attrib, int value);
typedef CUresult (*PFN_cuLaunchKernel)(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                       unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                       unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream stream,
                                       void** kernelParams, void** extra);
typedef CUresult (*PFN_cuStreamCreate)(CUstream* stream, unsigned int flags);
typedef CUresult (*PFN_cuStreamDestroy)(CUstream stream);  // cuStreamDestroy_v2
typedef CUresult (*PFN_cuStreamSynchronize)(CUstream stream);
typedef CUresult (*PFN_cuStreamQuery)(CUstream stream);
typedef CUresult (*PFN_cuStreamWaitEvent)(CUstream stream, CUevent event, unsigned int flags);
typedef CUresult (*PFN_cuEventCreate)(CUevent* event, unsigned int flags);
typedef CUresult (*PFN_cuEventRecord)(CUevent event, CUstream stream);
typedef CUresult (*PFN_cuEventSynchronize)(CUevent event);
typedef CUresult (*PFN_cuEventElapsedTime)(float* ms, CUevent start, CUevent end);  // _v2 where present
typedef CUresult (*PFN_cuEventDestroy)(CUevent event);                                // cuEventDestroy_v2
typedef CUresult (*PFN_cuStreamBeginCapture)(CUstream stream, int mode);  // cuStreamBeginCapture_v2
typedef CUresult (*PFN_cuStreamEndCapture)(CUstream stream, CUgraph* graph);
// The unversioned symbol cuGraphInstantiate is the legacy 5-argument form; cuda.h 12+ maps the
// name to cuGraphInstantiateWithFlags, which is what we load.
typedef CUresult (*PFN_cuGraphInstantiateWithFlags)(CUgraphExec* exec, CUgraph graph, unsigned long long flags);
typedef CUresult (*PFN_cuGraphLaunch)(CUgraphExec exec, CUstream stream);
typedef CUresult (*PFN_cuGraphExecDestroy)(CUgraphExec exec);
typedef CUresult (*PFN_cuGraphDestroy)(CUgraph graph);

// --- NCCL (src/nccl.h.in): ncclResult_t, ncclDataType_t and ncclRedOp_t are plain int enums.
typedef int ncclResult_t;
typedef struct ncclComm* ncclComm_t;
typedef struct {
  char internal[128];  // NCCL_UNIQUE_ID_BYTES
} ncclUniqueId;
enum : int { ncclSuccess = 0, ncclInProgress = 7 };

typedef ncclResult_t (*PFN_ncclGetVersion)(int* version);
typedef ncclResult_t (*PFN_ncclGetUniqueId)(ncclUniqueId* id);
typedef ncclResult_t (*PFN_ncclCommInitRank)(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank);
typedef ncclResult_t (*PFN_ncclAllReduce)(const void* send, void* recv, size_t count, int datatype, int op,
                                          ncclComm_t comm, CUstream stream);
typedef ncclResult_t (*PFN_ncclReduceScatter)(const void* send, void* recv, size_t recvcount, int datatype,
                                              int op, ncclComm_t comm, CUstream stream);
typedef ncclResult_t (*PFN_ncclAllGather)(const void* send, void* recv, size_t sendcount, int datatype,
                                          ncclComm_t comm, CUstream stream);
typedef ncclResult_t (*PFN_ncclBroadcast)(const void* send, void* recv, size_t count, int datatype, int root,
                                          ncclComm_t comm, CUstream stream);
typedef ncclResult_t (*PFN_ncclGroupStart)(void);
typedef ncclResult_t (*PFN_ncclGroupEnd)(void);
typedef ncclResult_t (*PFN_ncclCommDestroy)(ncclComm_t comm);
typedef ncclResult_t (*PFN_ncclCommAbort)(ncclComm_t comm);
typedef ncclResult_t (*PFN_ncclCommGetAsyncError)(ncclComm_t comm, ncclResult_t* asyncError);
typedef const char* (*PFN_ncclGetErrorString)(ncclResult_t result);
typedef const char* (*PFN_ncclGetLastError)(ncclComm_t comm);  // optional (NCCL >= 2.13)

}  // extern "C"
