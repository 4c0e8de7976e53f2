// NCCL collectives. Every NCCL call that may block runs on one dedicated thread, in the order JS
// issued them: ranks must enqueue collectives in the same order, and ncclGroupStart/End state is
// per thread, so a pool of threads would break both. Waiting for completion (ncclWait) polls the
// stream and the communicator's async error on the thread pool, and aborts on timeout, so a dead
// peer becomes an error instead of a hang.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "common.h"

namespace ptc {

namespace {

struct Task {
  Body body;
  Resolver resolve;
  Outcome outcome;
  Napi::Promise::Deferred deferred;
};

void settle(Napi::Env env, Napi::Function, std::nullptr_t*, Task* task);
using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, Task, settle>;

class SerialQueue {
 public:
  Napi::Promise submit(const Napi::Env& env, Body body, Resolver resolve) {
    if (!started_) start(env);
    auto* task = new Task{std::move(body), std::move(resolve), Outcome{}, Napi::Promise::Deferred::New(env)};
    Napi::Promise p = task->deferred.Promise();
    if (pending_++ == 0) tsfn_.Ref(env);  // keep the event loop alive while work is queued
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(task);
    }
    cv_.notify_one();
    return p;
  }
  void done(const Napi::Env& env) {
    if (--pending_ == 0) tsfn_.Unref(env);
  }

 private:
  void start(const Napi::Env& env) {
    tsfn_ = Tsfn::New(env, "ptc.nccl", 0, 1);
    tsfn_.Unref(env);
    started_ = true;
    std::thread([this] { loop(); }).detach();
  }
  void loop() {
    for (;;) {
      Task* task = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return !queue_.empty(); });
        task = queue_.front();
        queue_.pop_front();
      }
      CUresult r = bindContext();
      if (r != CUDA_SUCCESS) task->outcome.fail(r, "cuCtxSetCurrent");
      else task->body(task->outcome);
      tsfn_.BlockingCall(task);
    }
  }

  bool started_ = false;
  int pending_ = 0;  // touched on the JS thread only
  Tsfn tsfn_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Task*> queue_;
};

SerialQueue g_queue;

void settle(Napi::Env env, Napi::Function, std::nullptr_t*, Task* task) {
  if (env != nullptr) {
    if (task->outcome.error.empty())
      task->deferred.Resolve(task->resolve ? task->resolve(env) : env.Undefined());
    else
      task->deferred.Reject(outcomeError(env, task->outcome).Value());
    g_queue.done(env);
  }
  delete task;
}

void failNccl(Outcome& o, ncclResult_t r, const char* call, ncclComm_t comm) {
  o.error = ncclErrorMessage(r, call, comm);
  o.code = ncclErrorName(r);
  o.result = r;
}

void requireNccl(const Napi::Env& env) {
  requireContext(env);
  const LoadStatus& st = loadNccl("libnccl.so.2");
  if (!st.ok) throw Napi::Error::New(env, st.reason);
}

Napi::Value NcclLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "libnccl.so.2";
  const LoadStatus& st = loadNccl(path);
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", Napi::Boolean::New(env, st.ok));
  o.Set("kind", Napi::String::New(env, st.kind));
  o.Set("reason", Napi::String::New(env, st.reason));
  return o;
}

Napi::Value NcclVersion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireNccl(env);
  int v = 0;
  ncclResult_t r = nccl().ncclGetVersion(&v);
  if (r != ncclSuccess) throw Napi::Error::New(env, ncclErrorMessage(r, "ncclGetVersion"));
  return Napi::Number::New(env, v);
}

Napi::Value NcclGetUniqueId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireNccl(env);
  ncclUniqueId id;
  ncclResult_t r = nccl().ncclGetUniqueId(&id);
  if (r != ncclSuccess) throw Napi::Error::New(env, ncclErrorMessage(r, "ncclGetUniqueId"));
  return Napi::Buffer<char>::Copy(env, id.internal, sizeof id.internal);
}

// commInitRank(nranks, id: Uint8Array(128), rank): Promise<bigint>. Blocks until all ranks join.
Napi::Value NcclCommInitRank(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireNccl(env);
  int nranks = static_cast<int>(toU64(info[0], "nranks"));
  HostView idView = toHostView(info[1], "unique id");
  if (idView.bytes != sizeof(ncclUniqueId))
    throw Napi::RangeError::New(env, "an NCCL unique id has 128 bytes, got " + std::to_string(idView.bytes));
  ncclUniqueId id;
  std::memcpy(id.internal, idView.data, sizeof id.internal);
  int rank = static_cast<int>(toU64(info[2], "rank"));
  auto comm = std::make_shared<ncclComm_t>(nullptr);
  return g_queue.submit(
      env,
      [nranks, id, rank, comm](Outcome& o) {
        ncclResult_t r = nccl().ncclCommInitRank(comm.get(), nranks, id, rank);
        if (r != ncclSuccess) failNccl(o, r, "ncclCommInitRank", *comm);
      },
      [comm](Napi::Env e) -> Napi::Value { return fromHandle(e, *comm); });
}

// One collective as parsed from JS: {op, send, recv, count, dtype, redop, root}.
struct Collective {
  std::string op;
  CUdeviceptr send, recv;
  size_t count;
  int dtype, redop, root;
};

Collective parseCollective(const Napi::Object& o) {
  Collective c;
  c.op = o.Get("op").As<Napi::String>().Utf8Value();
  c.send = toU64(o.Get("send"), "send buffer");
  c.recv = toU64(o.Get("recv"), "receive buffer");
  c.count = toSize(o.Get("count"), "count");
  c.dtype = static_cast<int>(toU64(o.Get("dtype"), "dtype"));
  c.redop = o.Has("redop") ? static_cast<int>(toU64(o.Get("redop"), "redop")) : 0;
  c.root = o.Has("root") ? static_cast<int>(toU64(o.Get("root"), "root")) : 0;
  if (c.op != "allReduce" && c.op != "reduceScatter" && c.op != "allGather" && c.op != "broadcast")
    throw Napi::Error::New(o.Env(), "unknown collective '" + c.op + "'");
  return c;
}

ncclResult_t enqueue(const Collective& c, ncclComm_t comm, CUstream s, const char** call) {
  auto* send = reinterpret_cast<const void*>(static_cast<uintptr_t>(c.send));
  auto* recv = reinterpret_cast<void*>(static_cast<uintptr_t>(c.recv));
  const Nccl& n = nccl();
  if (c.op == "allReduce") return *call = "ncclAllReduce", n.ncclAllReduce(send, recv, c.count, c.dtype, c.redop, comm, s);
  if (c.op == "reduceScatter")
    return *call = "ncclReduceScatter", n.ncclReduceScatter(send, recv, c.count, c.dtype, c.redop, comm, s);
  if (c.op == "allGather") return *call = "ncclAllGather", n.ncclAllGather(send, recv, c.count, c.dtype, comm, s);
  return *call = "ncclBroadcast", n.ncclBroadcast(send, recv, c.count, c.dtype, c.root, comm, s);
}

// collectives(comm, stream, ops[]): Promise<void>. More than one op is issued as one NCCL group.
// Resolves once enqueued on the stream; use ncclWait (or a stream sync) for completion.
Napi::Value NcclCollectives(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireNccl(env);
  auto comm = toHandle<ncclComm_t>(info[0], "communicator");
  CUstream stream = info[1].IsUndefined() || info[1].IsNull() ? nullptr : toHandle<CUstream>(info[1], "stream");
  Napi::Array arr = info[2].As<Napi::Array>();
  std::vector<Collective> ops;
  for (uint32_t i = 0; i < arr.Length(); i++) ops.push_back(parseCollective(arr.Get(i).As<Napi::Object>()));
  return g_queue.submit(
      env,
      [comm, stream, ops](Outcome& o) {
        const Nccl& n = nccl();
        bool grouped = ops.size() > 1;
        ncclResult_t r = grouped ? n.ncclGroupStart() : ncclSuccess;
        if (r != ncclSuccess) return failNccl(o, r, "ncclGroupStart", comm);
        for (const Collective& c : ops) {
          const char* call = "";
          r = enqueue(c, comm, stream, &call);
          if (r != ncclSuccess) {
            failNccl(o, r, call, comm);
            if (grouped) n.ncclGroupEnd();
            return;
          }
        }
        if (grouped && (r = n.ncclGroupEnd()) != ncclSuccess) failNccl(o, r, "ncclGroupEnd", comm);
      },
      nullptr);
}

// ncclWait(comm, stream, timeoutMs): Promise<void>. Polls instead of blocking in the driver so a
// remote failure or a dead peer ends the wait; on timeout the communicator is aborted.
Napi::Value NcclWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireNccl(env);
  auto comm = toHandle<ncclComm_t>(info[0], "communicator");
  CUstream stream = info[1].IsUndefined() || info[1].IsNull() ? nullptr : toHandle<CUstream>(info[1], "stream");
  double timeoutMs = info[2].As<Napi::Number>().DoubleValue();
  return runAsync(env, "ptc.ncclWait", [comm, stream, timeoutMs](Outcome& o) {
    using Clock = std::chrono::steady_clock;
    auto deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(timeoutMs * 1000));
    auto sleep = std::chrono::microseconds(20);
    for (;;) {
      CUresult r = driver().cuStreamQuery(stream);
      if (r == CUDA_SUCCESS) return;
      if (r != CUDA_ERROR_NOT_READY) return o.fail(r, "cuStreamQuery", "waiting for NCCL");
      ncclResult_t async = ncclSuccess;
      ncclResult_t q = nccl().ncclCommGetAsyncError(comm, &async);
      if (q != ncclSuccess) return failNccl(o, q, "ncclCommGetAsyncError", comm);
      if (async != ncclSuccess && async != ncclInProgress) {
        failNccl(o, async, "NCCL collective", comm);
        nccl().ncclCommAbort(comm);
        o.error += " (the communicator was aborted)";
        return;
      }
      if (Clock::now() > deadline) {
        nccl().ncclCommAbort(comm);
        char secs[32];
        std::snprintf(secs, sizeof secs, "%g", timeoutMs / 1000);
        o.error = std::string("NCCL collective did not finish within ") + secs +
                  " s; a peer rank may have died or stalled (the communicator was aborted)";
        o.code = "NCCL_TIMEOUT";
        return;
      }
      std::this_thread::sleep_for(sleep);
      if (sleep < std::chrono::milliseconds(2)) sleep *= 2;
    }
  });
}

Napi::Value NcclCommAsyncError(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireNccl(env);
  ncclResult_t async = ncclSuccess;
  ncclResult_t r = nccl().ncclCommGetAsyncError(toHandle<ncclComm_t>(info[0], "communicator"), &async);
  if (r != ncclSuccess) throw Napi::Error::New(env, ncclErrorMessage(r, "ncclCommGetAsyncError"));
  return Napi::Number::New(env, async);
}

Napi::Value NcclCommDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireNccl(env);
  auto comm = toHandle<ncclComm_t>(info[0], "communicator");
  return g_queue.submit(
      env,
      [comm](Outcome& o) {
        ncclResult_t r = nccl().ncclCommDestroy(comm);
        if (r != ncclSuccess) failNccl(o, r, "ncclCommDestroy", nullptr);
      },
      nullptr);
}

// Abort runs on the thread pool, not the NCCL thread, since its purpose is to unblock that thread.
Napi::Value NcclCommAbort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireNccl(env);
  auto comm = toHandle<ncclComm_t>(info[0], "communicator");
  return runAsync(env, "ptc.ncclCommAbort", [comm](Outcome& o) {
    ncclResult_t r = nccl().ncclCommAbort(comm);
    if (r != ncclSuccess) failNccl(o, r, "ncclCommAbort", nullptr);
  });
}

}  // namespace

void registerNccl(Napi::Env env, Napi::Object exports) {
  exports.Set("ncclLoad", Napi::Function::New(env, NcclLoad, "ncclLoad"));
  exports.Set("ncclVersion", Napi::Function::New(env, NcclVersion, "ncclVersion"));
  exports.Set("ncclGetUniqueId", Napi::Function::New(env, NcclGetUniqueId, "ncclGetUniqueId"));
  exports.Set("ncclCommInitRank", Napi::Function::New(env, NcclCommInitRank, "ncclCommInitRank"));
  exports.Set("ncclCollectives", Napi::Function::New(env, NcclCollectives, "ncclCollectives"));
  exports.Set("ncclWait", Napi::Function::New(env, NcclWait, "ncclWait"));
  exports.Set("ncclCommAsyncError", Napi::Function::New(env, NcclCommAsyncError, "ncclCommAsyncError"));
  exports.Set("ncclCommDestroy", Napi::Function::New(env, NcclCommDestroy, "ncclCommDestroy"));
  exports.Set("ncclCommAbort", Napi::Function::New(env, NcclCommAbort, "ncclCommAbort"));
}

}  // namespace ptc
