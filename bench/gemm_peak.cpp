// Measures strata::sgemm (oneDNN) against OpenBLAS's cblas_sgemm on square sizes and on the GEMM
// shapes of the step-benchmark model, so the choice of GEMM library stays a measurement; and the
// bf16 GEMM (strata::gemm_bf16, bf16 operands, fp32 accumulation) beside each, the bf16 peak.
// OpenBLAS is loaded at run time with dlopen (libopenblas.so.0 unless --openblas PATH) and
// skipped, with a note, when absent: Strata neither links nor needs it.
//
//   gemm_peak [--threads N] [--openblas PATH]
#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "core/bf16.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"

namespace {

// CBLAS enum values (cblas.h), declared here because OpenBLAS is optional at build time too.
constexpr int kCblasRowMajor = 101;
constexpr int kCblasNoTrans = 111;
constexpr int kCblasTrans = 112;
using CblasSgemm = void (*)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const float* a, int lda, const float* b, int ldb, float beta, float* c,
                            int ldc);
using OpenblasSetThreads = void (*)(int);

struct Shape {
  std::string name;
  bool trans_a, trans_b;
  int64_t m, n, k;
};

// Row-major operands of one shape, filled with small non-denormal values.
struct Operands {
  std::vector<float> a, b, c;
  int64_t lda, ldb;
  explicit Operands(const Shape& s)
      : a(static_cast<size_t>(s.m * s.k)),
        b(static_cast<size_t>(s.k * s.n)),
        c(static_cast<size_t>(s.m * s.n)),
        lda(s.trans_a ? s.m : s.k),
        ldb(s.trans_b ? s.k : s.n) {
    for (size_t i = 0; i < a.size(); ++i) a[i] = 0.5f + static_cast<float>(i % 7) * 0.125f;
    for (size_t i = 0; i < b.size(); ++i) b[i] = 0.25f + static_cast<float>(i % 5) * 0.0625f;
  }
};

// Best GFLOP/s of `fn` after one warm-up, repeating for ~0.3 s (at least 3 timed runs): best-of
// filters out interruptions, and 24 cases x 0.3 s keeps the whole run near 10 s.
double best_gflops(const Shape& s, const std::function<void()>& fn) {
  fn();
  double best_s = 1e30, spent = 0;
  for (int r = 0; r < 3 || spent < 0.3; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best_s = std::min(best_s, dt);
    spent += dt;
  }
  return 2.0 * static_cast<double>(s.m) * s.n * s.k / best_s * 1e-9;
}

int usage() {
  std::fprintf(stderr, "usage: gemm_peak [--threads N] [--openblas PATH]\n");
  return 2;
}

}  // namespace

int run_bench(int argc, char** argv) {
  int threads = 0;
  std::string openblas_path = "libopenblas.so.0";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      const int64_t t = strata::bench_number("gemm_peak", "--threads", argv[++i]);
      if (t <= 0 || t > 4096) return usage();
      threads = static_cast<int>(t);
    } else if (!std::strcmp(argv[i], "--openblas") && i + 1 < argc) {
      openblas_path = argv[++i];
    } else {
      return usage();
    }
  }
  if (threads > 0) omp_set_num_threads(threads);
  threads = omp_get_max_threads();

  // Step-benchmark model: 2048 tokens per micro-batch, dim 512, ffn 1408; weights [out, in].
  std::vector<Shape> shapes;
  for (int64_t n : {128, 256, 512, 1024, 2048})
    shapes.push_back({std::to_string(n) + "^3", false, false, n, n, n});
  shapes.push_back({"2048x512x512 NT (q/k/v/o fwd)", false, true, 2048, 512, 512});
  shapes.push_back({"2048x1408x512 NT (gate/up fwd)", false, true, 2048, 1408, 512});
  shapes.push_back({"2048x512x1408 NT (down fwd)", false, true, 2048, 512, 1408});
  shapes.push_back({"2048x512x1408 NN (gate/up dX)", false, false, 2048, 512, 1408});
  shapes.push_back({"2048x1408x512 NN (down dX)", false, false, 2048, 1408, 512});
  shapes.push_back({"1408x512x2048 TN (gate/up dW)", true, false, 1408, 512, 2048});
  shapes.push_back({"512x1408x2048 TN (down dW)", true, false, 512, 1408, 2048});

  // All oneDNN runs first, then all OpenBLAS runs: both libraries' idle worker threads spin for
  // a while after each call, and interleaving them would let each slow the other down.
  std::vector<double> onednn(shapes.size()), ob(shapes.size(), 0.0);
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Shape& s = shapes[i];
    Operands x(s);
    onednn[i] = best_gflops(s, [&] {
      strata::sgemm(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.f, x.a.data(), x.lda, x.b.data(), x.ldb,
                    0.f, x.c.data(), s.n);
    });
  }
  // The bf16 GEMM (core/gemm_bf16.h: bf16 operands, fp32 accumulation) on the same shapes: the
  // peak a bf16 run is measured against.
  std::vector<double> bf16(shapes.size());
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Shape& s = shapes[i];
    Operands x(s);
    std::vector<strata::bf16> a(x.a.size()), b(x.b.size());
    strata::to_bf16(x.a.data(), a.data(), static_cast<int64_t>(a.size()));
    strata::to_bf16(x.b.data(), b.data(), static_cast<int64_t>(b.size()));
    bf16[i] = best_gflops(s, [&] {
      strata::gemm_bf16(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.f, a.data(), x.lda, b.data(), x.ldb,
                        0.f, x.c.data(), s.n);
    });
  }
  // Loaded only now, so the oneDNN pass runs with no OpenBLAS worker threads in the process.
  CblasSgemm openblas = nullptr;
  std::string openblas_note = openblas_path;
  if (void* lib = dlopen(openblas_path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
    openblas = reinterpret_cast<CblasSgemm>(dlsym(lib, "cblas_sgemm"));
    if (!openblas) openblas_note += " has no cblas_sgemm, skipped";
    if (auto set = reinterpret_cast<OpenblasSetThreads>(dlsym(lib, "openblas_set_num_threads")))
      set(threads);  // same thread count as oneDNN's OpenMP pool, for a fair comparison
  } else {
    openblas_note = std::string("skipped (") + dlerror() + ")";
  }
  if (openblas) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Shape& s = shapes[i];
      Operands x(s);
      ob[i] = best_gflops(s, [&] {
        openblas(kCblasRowMajor, s.trans_a ? kCblasTrans : kCblasNoTrans,
                 s.trans_b ? kCblasTrans : kCblasNoTrans, static_cast<int>(s.m),
                 static_cast<int>(s.n), static_cast<int>(s.k), 1.f, x.a.data(),
                 static_cast<int>(x.lda), x.b.data(), static_cast<int>(x.ldb), 0.f, x.c.data(),
                 static_cast<int>(s.n));
      });
    }
  }
  std::printf("gemm_peak: %d threads; openblas: %s; bf16: %s%s\n", threads, openblas_note.c_str(),
              strata::gemm_bf16_impl(false, false, 2048, 2048, 2048).c_str(),
              strata::cpu_has_native_bf16() ? "" : " (no native bf16 on this CPU: emulated)");
  for (size_t i = 0; i < shapes.size(); ++i) {
    std::printf("sgemm %s: onednn %.1f GFLOP/s", shapes[i].name.c_str(), onednn[i]);
    std::printf(", bf16 %.1f GFLOP/s (%.2fx fp32)", bf16[i], bf16[i] / onednn[i]);
    if (openblas) std::printf(", openblas %.1f GFLOP/s (onednn %.2fx)", ob[i], onednn[i] / ob[i]);
    std::printf("\n");
  }
  return 0;
}

int main(int argc, char** argv) {
  return strata::bench_main("gemm_peak", [&] { return run_bench(argc, argv); });
}
