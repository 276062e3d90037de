// Step benchmark: tokens/s and achieved GFLOP/s of full training steps (forward, backward,
// global-norm clip, AdamW) of a ~34M-parameter hybrid model, against the machine's sgemm peak
// measured in the same run, plus peak memory by category.
//
//   build/bench/step_bench [--steps 3] [--warmup 1] [--threads N] [--policy keep|recompute|swap]
//                          [--micro-batch 4] [--dim 512] [--layers 8] [--seq 512] [--vocab 8192]
//                          [--tier nvme|host|cxl] [--dir /tmp/strata_swap]   (with --policy swap)
//                          [--queue-depth 32] [--block-kb 1024]              (nvme tier)
//                          [--writes-in-flight 1]  (swap: sets written at once, as offload's)
//                          [--precision fp32|bf16] [--profile]
// Every timed step is followed by a 2048^3 GEMM peak of its precision, and its GEMM FLOP/s is
// also given against that (the median over the steps): the machine's speed drifts. The headline
// sets the mean step against the best peak read in the run.
// --profile prints where the timed steps' wall time goes (core/profile.h: exclusive time per
// kind of op; "other" is the step's time outside every scope: loss bookkeeping, allocation,
// the activation store, the gradient norm).
// With --precision bf16 the GEMMs take bf16 operands (core/gemm_bf16.h: oneDNN on the AMX or
// AVX512-BF16 units) and their achieved FLOP/s is set against the bf16 peak measured in the
// same run; the sgemm peak is printed beside it.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"
#include "core/memory.h"
#include "core/peak.h"
#include "core/profile.h"
#include "core/rng.h"
#include "core/weights_epoch.h"
#include "models/model.h"
#include "offload/tier.h"
#include "optim/grad_norm.h"
#include "optim/optimizer.h"

using namespace strata;

namespace {

int run_bench(int argc, char** argv) {
  int64_t steps = 3, warmup = 1, threads = omp_get_num_procs(), micro = 4, batch = 4;
  std::string policy = "keep", tier = "nvme", dir = "/tmp/strata_swap";
  int queue_depth = 32;
  int64_t block_kb = 1024, writes_in_flight = 1;
  bool profile = false;
  ModelConfig cfg;
  cfg.vocab_size = 8192;
  cfg.dim = 512;
  cfg.n_layers = 8;
  cfg.n_heads = 8;
  cfg.n_kv_heads = 8;
  cfg.ffn_dim = 1408;
  cfg.layer_pattern = "LLLS";
  cfg.chunk_size = 64;
  int64_t T = 512;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "step_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&] { return bench_number("step_bench", a, next()); };
    if (a == "--steps")
      steps = number();
    else if (a == "--warmup")
      warmup = number();
    else if (a == "--threads")
      threads = number();
    else if (a == "--policy")
      policy = next();
    else if (a == "--tier")
      tier = next();
    else if (a == "--dir")
      dir = next();
    else if (a == "--queue-depth")
      queue_depth = static_cast<int>(number());
    else if (a == "--block-kb")
      block_kb = number();
    else if (a == "--writes-in-flight")
      writes_in_flight = number();
    else if (a == "--micro-batch")
      micro = number();
    else if (a == "--dim")
      cfg.dim = number();
    else if (a == "--layers")
      cfg.n_layers = number();
    else if (a == "--seq")
      T = number();
    else if (a == "--vocab")
      cfg.vocab_size = number();
    else if (a == "--profile")
      profile = true;
    else if (a == "--precision") {
      const std::string p = next();
      if (p != "fp32" && p != "bf16") {
        std::fprintf(stderr, "step_bench: --precision: expected fp32 or bf16, got '%s'\n",
                     p.c_str());
        return 2;
      }
      cfg.precision = p == "bf16" ? Precision::bf16 : Precision::fp32;
    } else {
      std::fprintf(stderr, "step_bench: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (steps < 1 || warmup < 0 || threads < 1) {
    std::fprintf(stderr, "step_bench: expected --steps >= 1, --warmup >= 0, --threads >= 1\n");
    return 2;
  }
  if (T < 1 || micro < 1 || batch % micro != 0) {
    std::fprintf(stderr,
                 "step_bench: expected --seq >= 1 and --micro-batch dividing the batch of %lld\n",
                 static_cast<long long>(batch));
    return 2;
  }
  omp_set_num_threads(static_cast<int>(threads));

  // The peaks: read now, and that of the step's precision raised by each read after a step (a
  // peak is the best the machine did in this run; a read slowed by a neighbour is not one).
  double sgemm_peak = measure_sgemm_peak_gflops(2048, 3);
  const bool bf16 = cfg.precision == Precision::bf16;
  double bf16_peak = bf16 ? measure_bf16_peak_gflops(2048, 3) : 0;
  double& peak = bf16 ? bf16_peak : sgemm_peak;
  Model model(cfg);
  model.init(1);
  std::vector<std::unique_ptr<Optimizer>> opts;
  for (auto& u : model.units())
    opts.push_back(make_optimizer("adamw", u.numel(), OptimizerOptions{}));
  // swap: every block but the last goes to the tier (the last one's backward comes first).
  std::unique_ptr<SwapTier> swap_tier;
  if (policy == "swap") {
    SwapOptions so;
    so.tier = parse_swap_tier(tier);
    so.dir = dir;
    so.io.queue_depth = queue_depth;
    so.io.block_size = block_kb << 10;
    swap_tier = SwapTier::create(so);
  }
  ActivationStore store(cfg.n_layers, parse_activation_policy(policy), "x", std::move(swap_tier));
  if (policy == "swap") store.set_policy(cfg.n_layers - 1, ActivationPolicy::keep);
  if (writes_in_flight < 1) {
    std::fprintf(stderr, "step_bench: --writes-in-flight: expected a value >= 1\n");
    return 2;
  }
  store.set_writes_in_flight(writes_in_flight);

  // Random tokens: the speed does not depend on the text.
  const int64_t N = batch * T;
  std::vector<int32_t> tokens(static_cast<size_t>(N + 1));
  RngStream rng{rng_key(7, "bench/tokens"), 0};
  for (auto& t : tokens)
    t = static_cast<int32_t>(rng.next_below(static_cast<uint64_t>(cfg.vocab_size)));
  const float scale = 1.f / static_cast<float>(N);

  auto step = [&] {
    for (int64_t m = 0; m < batch / micro; ++m) {
      const int64_t off = m * micro * T;
      model.forward_backward(tokens.data() + off, tokens.data() + off + 1, BlockShape{micro, T, 0},
                             scale, store, m);
    }
    double sq = 0;
    for (auto& u : model.units()) sq += sum_of_squares(u.grads().data(), u.numel());
    const float c = clip_coefficient(sq, 1.f);
    auto& units = model.units();
    for (size_t u = 0; u < units.size(); ++u) {
      ProfScope prof_scope(ProfOp::optimizer);
      opts[u]->set_bf16_copy(units[u].bf16_to_rewrite());    // written as AdamW updates (bf16)
      opts[u]->set_grads_to_clear(units[u].grads().data());  // zeroed as AdamW reads them
      opts[u]->step(units[u].params().data(), units[u].grads().data(), units[u].numel(),
                    units[u].decay_segments(), 1e-4f, c < 1.f ? c : 1.f);
    }
    bump_weights_epoch();  // the parameters changed; the bf16 copies AdamW wrote are current
    for (auto& u : units)
      if (u.holds_bf16()) u.bf16_rewritten();
  };
  for (int64_t i = 0; i < warmup; ++i) step();
  MemoryTracker::instance().reset_peaks();
  profile_reset();
  // Each step timed on its own and followed by a peak of its precision (best of 2): this
  // machine's speed drifts by tens of percent within a minute, so a step is also set against
  // the peak read right after it, not only against the one read before the first step.
  std::vector<double> step_pct;
  double sec = 0, gemm_flop = 0;
  for (int64_t i = 0; i < steps; ++i) {
    const int64_t f0 = gemm_flops() + gemm_bf16_flops();
    const auto t0 = std::chrono::steady_clock::now();
    profile_enable(profile);
    step();
    profile_enable(false);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto f = static_cast<double>(gemm_flops() + gemm_bf16_flops() - f0);
    sec += s, gemm_flop += f;
    const double beside =
        bf16 ? measure_bf16_peak_gflops(2048, 2) : measure_sgemm_peak_gflops(2048, 2);
    step_pct.push_back(100 * f / s * 1e-9 / beside);
    peak = std::max(peak, beside);
  }
  sec /= steps;
  const double gemm_gflops = gemm_flop / steps / sec * 1e-9;
  // Model FLOPs by the usual 6 * params * tokens rule (embedding lookups excluded).
  const double p_matmul = static_cast<double>(model.num_parameters() - cfg.vocab_size * cfg.dim);
  const double model_gflops = 6.0 * p_matmul * static_cast<double>(N) / sec * 1e-9;

  std::printf(
      "step_bench: %lld params (dim %lld, %lld layers %s, vocab %lld), batch %lld x %lld tokens, "
      "micro-batch %lld, policy %s, %lld threads, precision %s\n",
      static_cast<long long>(model.num_parameters()), static_cast<long long>(cfg.dim),
      static_cast<long long>(cfg.n_layers), cfg.layer_pattern.c_str(),
      static_cast<long long>(cfg.vocab_size), static_cast<long long>(batch),
      static_cast<long long>(T), static_cast<long long>(micro), policy.c_str(),
      static_cast<long long>(threads), precision_name(cfg.precision));
  std::printf("sgemm peak (2048^3, %s): %.1f GFLOP/s\n",
              bf16 ? "this run" : "best read of this run", sgemm_peak);
  if (bf16)
    std::printf("bf16 peak (2048^3, best read of this run, %s): %.1f GFLOP/s\n",
                gemm_bf16_impl(false, false, 2048, 2048, 2048).c_str(), bf16_peak);
  std::printf(
      "step: %.1f ms | %.0f tokens/s | GEMM %.1f GFLOP/s achieved (%.1f%% of %s peak) | 6ND "
      "model %.1f GFLOP/s (%.1f%% of peak)\n",
      sec * 1e3, static_cast<double>(N) / sec, gemm_gflops, 100 * gemm_gflops / peak,
      precision_name(cfg.precision), model_gflops, 100 * model_gflops / peak);
  std::sort(step_pct.begin(), step_pct.end());
  std::printf(
      "per step, against the %s peak read right after it: GEMM %.1f%% (median of %lld steps; "
      "%.1f-%.1f%%)\n",
      precision_name(cfg.precision), step_pct[step_pct.size() / 2], static_cast<long long>(steps),
      step_pct.front(), step_pct.back());
  if (profile) {
    profile_enable(false);
    const ProfileTotals p = profile_totals();
    std::printf("profile (ms per step, exclusive; %% of the step; inclusive of nested scopes):\n");
    double covered = 0;
    for (int i = 0; i < kProfOps; ++i) {
      const double ms = p.seconds[static_cast<size_t>(i)] * 1e3 / steps;
      covered += ms;
      std::printf("  %-12s %9.1f ms %5.1f%%  %7lld calls  (inclusive %.1f ms)\n",
                  prof_op_name(static_cast<ProfOp>(i)), ms, 100 * ms / (sec * 1e3),
                  static_cast<long long>(p.calls[static_cast<size_t>(i)] / steps),
                  p.inclusive[static_cast<size_t>(i)] * 1e3 / steps);
    }
    std::printf("  %-12s %9.1f ms %5.1f%%\n", "other", sec * 1e3 - covered,
                100 * (sec * 1e3 - covered) / (sec * 1e3));
    const double gemm_s = p.seconds[static_cast<size_t>(ProfOp::gemm)] / steps;
    std::printf("  GEMMs alone: %.1f GFLOP/s (%.1f%% of the %s peak)\n", gemm_gflops * sec / gemm_s,
                100 * gemm_gflops * sec / gemm_s / peak, precision_name(cfg.precision));
  }
  const MemorySnapshot snap = MemoryTracker::instance().snapshot();
  std::printf("peak memory: %s\n", format_memory(snap).c_str());
  // Activations and the swap buffers in flight peak at different moments: their joint peak is
  // the total's, less the categories that stay flat through a step.
  int64_t flat = 0;
  for (MemCategory c : {MemCategory::params, MemCategory::grads, MemCategory::optimizer})
    flat += snap.current[static_cast<int>(c)];
  std::printf("peak activations + io together: %s\n", format_bytes(snap.total_peak - flat).c_str());
  if (policy == "swap") {
    const HostPoolStats ps = store.tier()->pool_stats();
    std::printf(
        "swap tier pool: holds %s, serves %s, beyond what it serves %s (peak io above is the "
        "in-flight writes plus this)\n",
        format_bytes(ps.bytes_held).c_str(), format_bytes(ps.bytes_served).c_str(),
        format_bytes(ps.held_beyond_served).c_str());
    std::printf(
        "swap: %.1f MiB written per step; blocked %.1f ms per step handing writes over and %.1f "
        "ms waiting for reads\n",
        static_cast<double>(store.bytes_written()) / (steps + warmup) / (1 << 20),
        store.write_seconds() * 1e3 / (steps + warmup),
        store.read_wait_seconds() * 1e3 / (steps + warmup));
  }
  return 0;
}

}  // namespace

// A bad model shape (--dim not divisible by the heads, say) is the model's own error message,
// exit 2, not an uncaught exception.
int main(int argc, char** argv) {
  return strata::bench_main("step_bench", [&] { return run_bench(argc, argv); });
}
