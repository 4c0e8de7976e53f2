/* Runs PTX test kernels on a real GPU through the CUDA driver API, for comparing the emulator with the
 * hardware. No CUDA headers needed: libcuda.so.1 is opened with dlopen.
 * Usage: launcher <manifest> <outdir>. Manifest lines (one job per manifest):
 *   name <job> | ptx <file> | kernel <name> | grid x y z | block x y z | shared <bytes>
 *   buf <bytes> <input file or -> | param buf <index> | param bytes <n> <hex little-endian> | out <buffer index> */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext, *CUmodule, *CUfunction;

static CUresult (*cuInit)(unsigned);
static CUresult (*cuDeviceGet)(int *, int);
static CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, int);
static CUresult (*cuCtxSetCurrent)(CUcontext);
static CUresult (*cuModuleLoadDataEx)(CUmodule *, const void *, unsigned, int *, void **);
static CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
static CUresult (*cuModuleUnload)(CUmodule);
static CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
static CUresult (*cuMemFree)(CUdeviceptr);
static CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
static CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
static CUresult (*cuMemsetD8)(CUdeviceptr, unsigned char, size_t);
static CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
static CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **, void **);
static CUresult (*cuCtxSynchronize)(void);
static CUresult (*cuGetErrorString)(CUresult, const char **);

static void check(CUresult r, const char *what) {
  if (r == 0) return;
  const char *s = "?";
  if (cuGetErrorString) cuGetErrorString(r, &s);
  fprintf(stderr, "%s failed: %d %s\n", what, r, s);
  exit(2);
}

static void *sym(void *lib, const char *name) {
  void *p = dlsym(lib, name);
  if (!p) {
    fprintf(stderr, "libcuda has no %s\n", name);
    exit(2);
  }
  return p;
}

static char *readFile(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc(n + 1);
  if (fread(buf, 1, n, f) != (size_t)n) exit(2);
  buf[n] = 0;
  fclose(f);
  if (size) *size = n;
  return buf;
}

int main(int argc, char **argv) {
  if (argc != 3) return 1;
  void *lib = dlopen("libcuda.so.1", RTLD_NOW);
  if (!lib) {
    fprintf(stderr, "no libcuda.so.1: %s\n", dlerror());
    return 3;
  }
  cuInit = sym(lib, "cuInit");
  cuDeviceGet = sym(lib, "cuDeviceGet");
  cuDevicePrimaryCtxRetain = sym(lib, "cuDevicePrimaryCtxRetain");
  cuCtxSetCurrent = sym(lib, "cuCtxSetCurrent");
  cuModuleLoadDataEx = sym(lib, "cuModuleLoadDataEx");
  cuModuleGetFunction = sym(lib, "cuModuleGetFunction");
  cuModuleUnload = sym(lib, "cuModuleUnload");
  cuMemAlloc = sym(lib, "cuMemAlloc_v2");
  cuMemFree = sym(lib, "cuMemFree_v2");
  cuMemcpyHtoD = sym(lib, "cuMemcpyHtoD_v2");
  cuMemcpyDtoH = sym(lib, "cuMemcpyDtoH_v2");
  cuMemsetD8 = sym(lib, "cuMemsetD8_v2");
  cuFuncSetAttribute = sym(lib, "cuFuncSetAttribute");
  cuLaunchKernel = sym(lib, "cuLaunchKernel");
  cuCtxSynchronize = sym(lib, "cuCtxSynchronize");
  cuGetErrorString = sym(lib, "cuGetErrorString");

  check(cuInit(0), "cuInit");
  int dev;
  CUcontext ctx;
  check(cuDeviceGet(&dev, 0), "cuDeviceGet");
  check(cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
  check(cuCtxSetCurrent(ctx), "cuCtxSetCurrent");

  char *manifest = readFile(argv[1], NULL);
  char *ptx = NULL, kernel[256] = "", name[256] = "job";
  unsigned grid[3] = {1, 1, 1}, block[3] = {1, 1, 1}, shared = 0;
  CUdeviceptr bufs[64];
  size_t bufSize[64];
  int nbuf = 0, nparam = 0, outs[64], nout = 0;
  unsigned char paramStore[64][8];
  void *params[64];
  for (char *line = strtok(manifest, "\n"); line; line = strtok(NULL, "\n")) {
    char a[512], b[512];
    if (sscanf(line, "ptx %511s", a) == 1) ptx = readFile(a, NULL);
    else if (sscanf(line, "kernel %255s", kernel) == 1) continue;
    else if (sscanf(line, "name %255s", name) == 1) continue;
    else if (sscanf(line, "grid %u %u %u", &grid[0], &grid[1], &grid[2]) == 3) continue;
    else if (sscanf(line, "block %u %u %u", &block[0], &block[1], &block[2]) == 3) continue;
    else if (sscanf(line, "shared %u", &shared) == 1) continue;
    else if (sscanf(line, "buf %511s %511s", a, b) == 2) {
      size_t n = strtoull(a, NULL, 10);
      bufSize[nbuf] = n;
      check(cuMemAlloc(&bufs[nbuf], n ? n : 1), "cuMemAlloc");
      check(cuMemsetD8(bufs[nbuf], 0, n ? n : 1), "cuMemsetD8");
      if (strcmp(b, "-") != 0) {
        size_t got;
        char *data = readFile(b, &got);
        check(cuMemcpyHtoD(bufs[nbuf], data, got < n ? got : n), "cuMemcpyHtoD");
        free(data);
      }
      nbuf++;
    } else if (sscanf(line, "param buf %511s", a) == 1) {
      memcpy(paramStore[nparam], &bufs[atoi(a)], 8);
      params[nparam] = paramStore[nparam];
      nparam++;
    } else if (sscanf(line, "param bytes %511s %511s", a, b) == 2) {
      int n = atoi(a);
      for (int i = 0; i < n; i++) {
        unsigned v;
        sscanf(b + 2 * i, "%2x", &v);
        paramStore[nparam][i] = (unsigned char)v;
      }
      params[nparam] = paramStore[nparam];
      nparam++;
    } else if (sscanf(line, "out %511s", a) == 1) outs[nout++] = atoi(a);
  }
  char log[8192] = "";
  int optKeys[2] = {5 /* CU_JIT_ERROR_LOG_BUFFER */, 6 /* CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES */};
  void *optVals[2] = {log, (void *)(size_t)sizeof log};
  CUmodule mod;
  CUresult r = cuModuleLoadDataEx(&mod, ptx, 2, optKeys, optVals);
  if (r) fprintf(stderr, "JIT log: %s\n", log);
  check(r, "cuModuleLoadDataEx");
  CUfunction fn;
  check(cuModuleGetFunction(&fn, mod, kernel), "cuModuleGetFunction");
  if (shared > 48 * 1024) check(cuFuncSetAttribute(fn, 8 /* MAX_DYNAMIC_SHARED_SIZE_BYTES */, shared), "cuFuncSetAttribute");
  check(cuLaunchKernel(fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], shared, NULL, params, NULL), "cuLaunchKernel");
  check(cuCtxSynchronize(), "cuCtxSynchronize");
  for (int i = 0; i < nout; i++) {
    int k = outs[i];
    char *host = malloc(bufSize[k] ? bufSize[k] : 1);
    check(cuMemcpyDtoH(host, bufs[k], bufSize[k]), "cuMemcpyDtoH");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.out%d", argv[2], name, k);
    FILE *f = fopen(path, "wb");
    fwrite(host, 1, bufSize[k], f);
    fclose(f);
    free(host);
  }
  for (int i = 0; i < nbuf; i++) cuMemFree(bufs[i]);
  cuModuleUnload(mod);
  printf("ok %s\n", name);
  return 0;
}
