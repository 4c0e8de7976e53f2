# The CUDA addon (runtime/cuda/native), built by node-gyp at `npm ci` against Node's own headers.
# It links nothing from CUDA: libcuda.so.1 and libnccl.so.2 are dlopen'ed at run time.
{
  "targets": [
    {
      "target_name": "ptc_cuda",
      "sources": [
        "runtime/cuda/native/addon.cc",
        "runtime/cuda/native/common.cc",
        "runtime/cuda/native/device.cc",
        "runtime/cuda/native/execution.cc",
        "runtime/cuda/native/libs.cc",
        "runtime/cuda/native/memory.cc",
        "runtime/cuda/native/nccl.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-fexceptions", "-std=c++17", "-O2", "-Wall", "-Wno-unused-function"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
