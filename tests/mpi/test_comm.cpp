// The MPI communicator and the mesh under mpirun -np 2 and -np 4: every collective (blocking and
// nonblocking) against values computed by hand per rank, split, point-to-point rings, the
// counters' byte convention, and the pp x dp x sp layouts. Values are small integers so every sum
// is exact in fp32 whatever the reduction order.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "parallel/comm.h"
#include "parallel/mesh.h"
#include "parallel/mpi_comm.h"
#include "tests/mpi/mpi_test_env.h"

namespace strata {
namespace {

// A fresh duplicate of the world per test: its own counters, its own message space.
std::unique_ptr<Comm> world() { return test_mpi_env().world(); }

int64_t f32_bytes(int64_t n) { return n * 4; }

TEST(Comm, RankAndSize) {
  auto w = world();
  EXPECT_EQ(w->rank(), test_mpi_env().world_rank());
  EXPECT_EQ(w->size(), test_mpi_env().world_size());
  EXPECT_GE(w->size(), 2);
  EXPECT_STREQ(w->backend(), "mpi");
  EXPECT_EQ(w->axis(), "world");
  EXPECT_GE(test_mpi_env().local_size(), 1);
  EXPECT_LT(test_mpi_env().local_rank(), test_mpi_env().local_size());
  EXPECT_GE(test_mpi_env().default_threads_per_rank(), 1);
}

// buf[i] = (rank+1)*(i+1) summed over ranks = (i+1) * S(S+1)/2.
void check_all_reduce(Comm& c, bool nonblocking) {
  const int S = c.size(), r = c.rank();
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{100003}}) {
    std::vector<float> buf(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<float>((r + 1) * (i % 1000 + 1));
    if (nonblocking) {
      CommHandle h = c.iall_reduce_sum(buf.data(), n);
      while (!h.test()) {
      }
      EXPECT_TRUE(h.done());
    } else {
      c.all_reduce_sum(buf.data(), n);
    }
    int bad = 0;
    for (int64_t i = 0; i < n; ++i)
      bad += buf[i] != static_cast<float>((i % 1000 + 1) * S * (S + 1) / 2);
    EXPECT_EQ(bad, 0) << "n=" << n;
  }
}

TEST(Comm, AllReduceSum) {
  auto w = world();
  check_all_reduce(*w, false);
}

TEST(Comm, IAllReduceSum) {
  auto w = world();
  check_all_reduce(*w, true);
}

// send[j] = 1000*rank + j; rank r receives chunk r summed: 1000*S(S-1)/2 + S*(r*n + i).
void check_reduce_scatter(Comm& c, bool nonblocking) {
  const int S = c.size(), r = c.rank();
  for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{40000}}) {
    std::vector<float> send(static_cast<size_t>(S * n)), recv(static_cast<size_t>(n), -1.f);
    for (int64_t j = 0; j < S * n; ++j) send[j] = static_cast<float>(1000 * r + j % 4096);
    if (nonblocking)
      c.ireduce_scatter_sum(send.data(), recv.data(), n).wait();
    else
      c.reduce_scatter_sum(send.data(), recv.data(), n);
    int bad = 0;
    for (int64_t i = 0; i < n; ++i)
      bad += recv[i] != static_cast<float>(1000 * S * (S - 1) / 2 + S * ((r * n + i) % 4096));
    EXPECT_EQ(bad, 0) << "n=" << n;
  }
}

TEST(Comm, ReduceScatterSum) {
  auto w = world();
  check_reduce_scatter(*w, false);
}

TEST(Comm, IReduceScatterSum) {
  auto w = world();
  check_reduce_scatter(*w, true);
}

// send[i] = 100*rank + i; recv[q*n + i] = 100*q + i. Also in place (send = recv + rank*n).
void check_all_gather(Comm& c, bool nonblocking, bool in_place) {
  const int S = c.size(), r = c.rank();
  for (int64_t n : {int64_t{1}, int64_t{6}, int64_t{30000}}) {
    std::vector<float> send(static_cast<size_t>(n)), recv(static_cast<size_t>(S * n), -1.f);
    float* src = send.data();
    if (in_place) src = recv.data() + r * n;
    for (int64_t i = 0; i < n; ++i) src[i] = static_cast<float>(100 * r + i % 50);
    if (nonblocking) {
      CommHandle h = c.iall_gather(src, recv.data(), n);
      h.wait();
      EXPECT_TRUE(h.done());
      h.wait();  // waiting twice is harmless
    } else {
      c.all_gather(src, recv.data(), n);
    }
    int bad = 0;
    for (int q = 0; q < S; ++q)
      for (int64_t i = 0; i < n; ++i)
        bad += recv[q * n + i] != static_cast<float>(100 * q + i % 50);
    EXPECT_EQ(bad, 0) << "n=" << n << (in_place ? " in place" : "");
  }
}

TEST(Comm, AllGather) {
  auto w = world();
  check_all_gather(*w, false, false);
  check_all_gather(*w, false, true);
}

TEST(Comm, IAllGather) {
  auto w = world();
  check_all_gather(*w, true, false);
  check_all_gather(*w, true, true);
}

TEST(Comm, OverlappingBuffersAreRejected) {
  auto w = world();
  std::vector<float> buf(static_cast<size_t>(w->size() * 4));
  // reduce_scatter: recv inside send.
  EXPECT_THROW(w->reduce_scatter_sum(buf.data(), buf.data() + 1, 4), StrataError);
  // all_gather: send overlapping recv but not at this rank's chunk.
  const int other = (w->rank() + 1) % w->size();
  EXPECT_THROW(w->all_gather(buf.data() + other * 4 + 1, buf.data(), 4), StrataError);
}

TEST(Comm, Broadcast) {
  auto w = world();
  for (int root = 0; root < w->size(); ++root) {
    std::vector<float> buf(1000, 0.f);
    if (w->rank() == root)
      for (int i = 0; i < 1000; ++i) buf[i] = static_cast<float>(root * 10000 + i);
    w->broadcast(buf.data(), 1000, root);
    int bad = 0;
    for (int i = 0; i < 1000; ++i) bad += buf[i] != static_cast<float>(root * 10000 + i);
    EXPECT_EQ(bad, 0) << "root " << root;
  }
  char text[32] = {};
  if (w->rank() == w->size() - 1) std::strcpy(text, "strata bytes");
  w->broadcast_bytes(text, sizeof text, w->size() - 1);
  EXPECT_STREQ(text, "strata bytes");
}

TEST(Comm, IBroadcastFromEveryRoot) {
  auto w = world();
  for (int root = 0; root < w->size(); ++root) {
    std::vector<float> buf(5000, -1.f);
    if (w->rank() == root)
      for (int i = 0; i < 5000; ++i) buf[i] = static_cast<float>(root * 10000 + i);
    CommHandle h = w->ibroadcast(buf.data(), 5000, root);
    h.wait();
    int bad = 0;
    for (int i = 0; i < 5000; ++i) bad += buf[i] != static_cast<float>(root * 10000 + i);
    EXPECT_EQ(bad, 0) << "root " << root;
  }
  EXPECT_EQ(w->stats()[CommOp::broadcast].bytes, w->size() * f32_bytes(5000));
}

// Rank r's record of row n: [m | 2 scaled | 2 plain]. Row 0 accumulated nothing anywhere
// (m = -inf, zeros), row 1 only on the last rank, the others on every rank with spread maxima.
std::vector<float> scaled_record(int r, int size, int64_t n) {
  const float ninf = -std::numeric_limits<float>::infinity();
  const bool empty = n == 0 || (n == 1 && r != size - 1);
  const float m = empty ? ninf : static_cast<float>(3 * r - 2 * n);
  return {m, empty ? 0.f : 1.f + r, empty ? 0.f : 0.5f * (n + 1), float(r + n), float(10 * r)};
}

TEST(Comm, ScaledRowsCombineInTheLogDomain) {
  auto w = world();
  const int S = w->size();
  const int64_t rows = 6, len = 5, scaled = 2;
  std::vector<float> buf;
  for (int64_t n = 0; n < rows; ++n) {
    const auto rec = scaled_record(w->rank(), S, n);
    buf.insert(buf.end(), rec.begin(), rec.end());
  }
  w->iall_reduce_scaled_rows(buf.data(), rows, len, scaled).wait();
  for (int64_t n = 0; n < rows; ++n) {
    double M = -std::numeric_limits<double>::infinity();
    for (int r = 0; r < S; ++r) M = std::max<double>(M, scaled_record(r, S, n)[0]);
    double a[2] = {0, 0}, b[2] = {0, 0};
    for (int r = 0; r < S; ++r) {
      const auto rec = scaled_record(r, S, n);
      const double f = std::isinf(rec[0]) ? 0 : std::exp(double(rec[0]) - M);
      for (int i = 0; i < 2; ++i) a[i] += rec[1 + i] * f, b[i] += rec[3 + i];
    }
    const float* got = buf.data() + n * len;
    EXPECT_EQ(double(got[0]), M) << "row " << n;
    for (int i = 0; i < 2; ++i) {
      EXPECT_NEAR(got[1 + i], a[i], 1e-6 * std::max(1.0, a[i])) << "row " << n;
      EXPECT_EQ(got[3 + i], b[i]) << "row " << n;  // small integers: exact
    }
    EXPECT_FALSE(std::isnan(got[1]) || std::isnan(got[2])) << "row " << n;
  }
  // Every rank got the same bits.
  std::vector<float> all(buf.size() * S);
  w->all_gather(buf.data(), all.data(), static_cast<int64_t>(buf.size()));
  for (int r = 1; r < S; ++r)
    EXPECT_EQ(0, std::memcmp(all.data(), all.data() + r * buf.size(), buf.size() * 4)) << r;
  EXPECT_EQ(w->stats()[CommOp::all_reduce].bytes, 2 * f32_bytes(rows * len));
  EXPECT_THROW(w->iall_reduce_scaled_rows(buf.data(), rows, len, len).wait(), StrataError);
}

TEST(Comm, ScalarReductions) {
  auto w = world();
  const int S = w->size(), r = w->rank();
  double d[2] = {r + 0.5, -1.0 * r};
  w->all_reduce_sum_double(d, 2);
  EXPECT_EQ(d[0], S * (S - 1) / 2.0 + 0.5 * S);
  EXPECT_EQ(d[1], -S * (S - 1) / 2.0);
  double m[2] = {static_cast<double>(r), -static_cast<double>(r)};
  w->all_reduce_max_double(m, 2);
  EXPECT_EQ(m[0], S - 1.0);
  EXPECT_EQ(m[1], 0.0);
  // Beyond 2^53-ish float precision: int64 must be exact.
  int64_t s[2] = {(int64_t{1} << 40) + r, int64_t{3}};
  w->all_reduce_sum_int64(s, 2);
  EXPECT_EQ(s[0], S * (int64_t{1} << 40) + S * (S - 1) / 2);
  EXPECT_EQ(s[1], 3 * S);
  int64_t mx[1] = {(int64_t{1} << 50) * (r == 1 ? 2 : 1)};
  w->all_reduce_max_int64(mx, 1);
  EXPECT_EQ(mx[0], int64_t{1} << 51);
}

TEST(Comm, Barrier) {
  auto w = world();
  for (int i = 0; i < 3; ++i) w->barrier();
  EXPECT_EQ(w->stats()[CommOp::barrier].calls, 3);
  EXPECT_EQ(w->stats()[CommOp::barrier].bytes, 0);
}

// Each rank sends its rank-stamped message right and receives from the left.
std::vector<float> ring_message(int rank, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(rank * 7 + i % 100);
  return v;
}

TEST(Comm, SendRecvRing) {
  auto w = world();
  const int S = w->size(), r = w->rank(), right = (r + 1) % S, left = (r + S - 1) % S;
  ASSERT_EQ(S % 2, 0) << "the blocking ring alternates by parity";
  for (int64_t n : {int64_t{3}, int64_t{1} << 18}) {  // eager and rendezvous protocols
    const std::vector<float> out = ring_message(r, n), want = ring_message(left, n);
    std::vector<float> in(static_cast<size_t>(n), -1.f);
    // Blocking: even ranks send first, odd ranks receive first, so no two sends wait on each
    // other.
    if (r % 2 == 0) {
      w->send(out.data(), n, right, 5);
      w->recv(in.data(), n, left, 5);
    } else {
      w->recv(in.data(), n, left, 5);
      w->send(out.data(), n, right, 5);
    }
    EXPECT_EQ(in, want) << "blocking, n=" << n;

    std::fill(in.begin(), in.end(), -1.f);
    w->send_recv(out.data(), n, right, in.data(), n, left, 6);
    EXPECT_EQ(in, want) << "send_recv, n=" << n;

    std::fill(in.begin(), in.end(), -1.f);
    {
      CommHandle rh = w->irecv(in.data(), n, left, 7);
      CommHandle sh = w->isend(out.data(), n, right, 7);
      sh.wait();
      rh.wait();
    }
    EXPECT_EQ(in, want) << "isend/irecv, n=" << n;
  }
}

TEST(Comm, RecvOfWrongLengthIsAnError) {
  auto w = world();
  std::vector<float> buf(8, 1.f);
  if (w->rank() == 0) {
    w->send(buf.data(), 3, 1, 9);   // shorter than expected: legal in MPI, an error for us
    w->send(buf.data(), 8, 1, 10);  // longer than the receive buffer: MPI_ERR_TRUNCATE
  } else if (w->rank() == 1) {
    EXPECT_THROW(w->recv(buf.data(), 4, 0, 9), StrataError);
    try {
      w->recv(buf.data(), 2, 0, 10);
      ADD_FAILURE() << "a truncated receive did not throw";
    } catch (const StrataError& e) {
      // MPI_ERRORS_RETURN turned MPI's error into ours, naming the op and the communicator.
      EXPECT_NE(std::string(e.what()).find("MPI_Recv failed on world rank 1/"), std::string::npos)
          << e.what();
    }
  }
  w->barrier();
}

TEST(Comm, Split) {
  auto w = world();
  const int S = w->size(), r = w->rank();
  // Two groups by parity, ordered by descending world rank.
  auto half = w->split(r % 2, -r, "parity");
  ASSERT_NE(half, nullptr);
  EXPECT_EQ(half->axis(), "parity");
  EXPECT_EQ(half->size(), S / 2);
  EXPECT_EQ(half->rank(), (S - 1 - r) / 2);
  float x = static_cast<float>(r);
  half->all_reduce_sum(&x, 1);
  float want = 0;
  for (int q = r % 2; q < S; q += 2) want += static_cast<float>(q);
  EXPECT_EQ(x, want);
  // Only this communicator counted the all-reduce.
  EXPECT_EQ(half->stats()[CommOp::all_reduce].calls, 1);
  EXPECT_EQ(w->stats()[CommOp::all_reduce].calls, 0);

  // A negative color leaves a rank out.
  auto some = w->split(r == 0 ? -1 : 0, r, "some");
  if (r == 0) {
    EXPECT_EQ(some, nullptr);
  } else {
    ASSERT_NE(some, nullptr);
    EXPECT_EQ(some->size(), S - 1);
    EXPECT_EQ(some->rank(), r - 1);
    some->barrier();
  }
}

TEST(Comm, CountersFollowTheZeroConvention) {
  auto w = world();
  const int64_t S = w->size(), n = 10;
  std::vector<float> full(static_cast<size_t>(S * n), 1.f), shard(static_cast<size_t>(n), 1.f);
  const CommStats& st = w->stats();
  EXPECT_EQ(st.total_calls(), 0);

  // One buffer of Psi = S*n floats: all-reduce vs reduce-scatter + all-gather.
  w->all_reduce_sum(full.data(), S * n);
  EXPECT_EQ(st[CommOp::all_reduce].calls, 1);
  EXPECT_EQ(st[CommOp::all_reduce].bytes, 2 * f32_bytes(S * n));
  w->reduce_scatter_sum(full.data(), shard.data(), n);
  w->all_gather(shard.data(), full.data(), n);
  EXPECT_EQ(st[CommOp::reduce_scatter].bytes, f32_bytes(S * n));
  EXPECT_EQ(st[CommOp::all_gather].bytes, f32_bytes(S * n));
  EXPECT_EQ(st[CommOp::reduce_scatter].bytes + st[CommOp::all_gather].bytes,
            st[CommOp::all_reduce].bytes);

  // Nonblocking forms count the same, when posted.
  CommHandle a = w->iall_reduce_sum(full.data(), S * n);
  EXPECT_EQ(st[CommOp::all_reduce].calls, 2);
  a.wait();
  w->ireduce_scatter_sum(full.data(), shard.data(), n).wait();
  w->iall_gather(shard.data(), full.data(), n).wait();
  EXPECT_EQ(st[CommOp::all_reduce].bytes, 4 * f32_bytes(S * n));
  EXPECT_EQ(st[CommOp::reduce_scatter].calls, 2);
  EXPECT_EQ(st[CommOp::all_gather].calls, 2);
  EXPECT_EQ(st[CommOp::reduce_scatter].bytes + st[CommOp::all_gather].bytes,
            st[CommOp::all_reduce].bytes);

  // Scalars count under all_reduce with their element size; broadcast, send, recv as payload.
  double d = 1;
  w->all_reduce_sum_double(&d, 1);
  EXPECT_EQ(st[CommOp::all_reduce].bytes, 4 * f32_bytes(S * n) + 16);
  w->broadcast(shard.data(), n, 0);
  EXPECT_EQ(st[CommOp::broadcast].bytes, f32_bytes(n));
  const int right = (w->rank() + 1) % w->size(), left = (w->rank() + w->size() - 1) % w->size();
  w->send_recv(shard.data(), 3, right, full.data(), 3, left, 1);
  EXPECT_EQ(st[CommOp::send].calls, 1);
  EXPECT_EQ(st[CommOp::send].bytes, f32_bytes(3));
  EXPECT_EQ(st[CommOp::recv].bytes, f32_bytes(3));
  w->barrier();
  EXPECT_EQ(st.total_calls(), 3 + 3 + 1 + 1 + 2 + 1);

  const std::string line = format_comm_stats(st);
  EXPECT_NE(line.find("world: all_reduce 3 calls"), std::string::npos) << line;
  EXPECT_NE(line.find("barrier 1 call 0B"), std::string::npos) << line;
  w->reset_stats();
  EXPECT_EQ(st.total_calls(), 0);
  EXPECT_EQ(st.total_bytes(), 0);
  EXPECT_EQ(format_comm_stats(st), "world: none");
}

TEST(Comm, HandlesWaitWhenDestroyedOrReassigned) {
  auto w = world();
  const int S = w->size();
  std::vector<float> a(1000, 1.f), b(1000, 2.f);
  { CommHandle h = w->iall_reduce_sum(a.data(), 1000); }  // destroyed unwaited: waits
  EXPECT_EQ(a[999], static_cast<float>(S));
  CommHandle h = w->iall_reduce_sum(a.data(), 1000);
  CommHandle moved = std::move(h);
  EXPECT_TRUE(h.done());  // NOLINT(bugprone-use-after-move): a moved-from handle is empty
  moved = w->iall_reduce_sum(b.data(), 1000);  // waits for the first before taking the second
  EXPECT_EQ(a[0], static_cast<float>(S * S));
  moved.wait();
  EXPECT_EQ(b[0], static_cast<float>(2 * S));
  CommHandle none;
  EXPECT_TRUE(none.done());
  EXPECT_TRUE(none.test());
  // Several in flight at once, completed in reverse order.
  std::vector<std::vector<float>> bufs(4, std::vector<float>(5000, 1.f));
  std::vector<CommHandle> hs;
  for (auto& v : bufs) hs.push_back(w->iall_reduce_sum(v.data(), 5000));
  for (int i = 3; i >= 0; --i) hs[i].wait();
  for (auto& v : bufs) EXPECT_EQ(v[4999], static_cast<float>(S));
}

TEST(Comm, AllReduceIsDeterministicRunToRun) {
  auto w = world();
  std::mt19937 gen(1234 + w->rank());
  std::normal_distribution<float> dist;
  std::vector<float> x(50000);
  for (float& v : x) v = dist(gen);
  std::vector<float> a = x, b = x;
  w->all_reduce_sum(a.data(), 50000);
  w->all_reduce_sum(b.data(), 50000);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  // Every rank holds the same bits.
  std::vector<float> root = a;
  w->broadcast(root.data(), 50000, 0);
  EXPECT_EQ(std::memcmp(a.data(), root.data(), a.size() * sizeof(float)), 0);
}

// ---- Mesh ------------------------------------------------------------------------------------

struct Layout {
  int pp, dp, sp;
};

std::vector<Layout> layouts_for(int world_size) {
  std::vector<Layout> out;
  for (int pp = 1; pp <= world_size; ++pp)
    for (int dp = 1; dp <= world_size; ++dp)
      for (int sp = 1; sp <= world_size; ++sp)
        if (pp * dp * sp == world_size) out.push_back({pp, dp, sp});
  return out;
}

TEST(Mesh, EveryLayoutOfTheWorld) {
  auto w = world();
  const int S = w->size(), r = w->rank();
  const auto layouts = layouts_for(S);
  EXPECT_EQ(layouts.size(), S == 2 ? 3u : S == 4 ? 6u : layouts.size());  // 2x1x1 ... 1x2x2
  for (const Layout& L : layouts) {
    SCOPED_TRACE("pp " + std::to_string(L.pp) + " dp " + std::to_string(L.dp) + " sp " +
                 std::to_string(L.sp));
    Mesh mesh(*w, L.pp, L.dp, L.sp);
    EXPECT_EQ(mesh.pp(), L.pp);
    EXPECT_EQ(mesh.dp(), L.dp);
    EXPECT_EQ(mesh.sp(), L.sp);
    // sp innermost, then dp, then pp.
    EXPECT_EQ(mesh.sp_rank(), r % L.sp);
    EXPECT_EQ(mesh.dp_rank(), (r / L.sp) % L.dp);
    EXPECT_EQ(mesh.pp_rank(), r / (L.sp * L.dp));
    EXPECT_EQ(mesh.rank_of(mesh.pp_rank(), mesh.dp_rank(), mesh.sp_rank()), r);
    EXPECT_EQ(mesh.sp_comm().size(), L.sp);
    EXPECT_EQ(mesh.dp_comm().size(), L.dp);
    EXPECT_EQ(mesh.pp_comm().size(), L.pp);
    EXPECT_EQ(mesh.sp_comm().rank(), mesh.sp_rank());
    EXPECT_EQ(mesh.dp_comm().rank(), mesh.dp_rank());
    EXPECT_EQ(mesh.pp_comm().rank(), mesh.pp_rank());
    EXPECT_EQ(&mesh.comm("world"), w.get());
    EXPECT_EQ(&mesh.comm("dp"), &mesh.dp_comm());
    EXPECT_EQ(mesh.rank_name(),
              "rank " + std::to_string(r) + " (pp " + std::to_string(mesh.pp_rank()) + ", dp " +
                  std::to_string(mesh.dp_rank()) + ", sp " + std::to_string(mesh.sp_rank()) + ")");
    EXPECT_EQ(mesh.layout(), "pp " + std::to_string(L.pp) + " x dp " + std::to_string(L.dp) +
                                 " x sp " + std::to_string(L.sp) + " = " + std::to_string(S) +
                                 " ranks");

    // Sum of world ranks over each axis group, against the members listed by hand.
    const int pi = mesh.pp_rank(), di = mesh.dp_rank(), si = mesh.sp_rank();
    float want_sp = 0, want_dp = 0, want_pp = 0;
    for (int s = 0; s < L.sp; ++s) want_sp += static_cast<float>(mesh.rank_of(pi, di, s));
    for (int d = 0; d < L.dp; ++d) want_dp += static_cast<float>(mesh.rank_of(pi, d, si));
    for (int p = 0; p < L.pp; ++p) want_pp += static_cast<float>(mesh.rank_of(p, di, si));
    float x = static_cast<float>(r);
    mesh.comm("sp").all_reduce_sum(&x, 1);
    EXPECT_EQ(x, want_sp);
    x = static_cast<float>(r);
    mesh.comm("dp").all_reduce_sum(&x, 1);
    EXPECT_EQ(x, want_dp);
    x = static_cast<float>(r);
    mesh.comm("pp").all_reduce_sum(&x, 1);
    EXPECT_EQ(x, want_pp);

    // Counted per axis.
    EXPECT_EQ(mesh.dp_comm().stats().axis, "dp");
    EXPECT_EQ(mesh.dp_comm().stats()[CommOp::all_reduce].bytes, 8);
    const std::string stats = mesh.format_stats();
    EXPECT_NE(stats.find("sp: all_reduce 1 call 8B"), std::string::npos) << stats;
    mesh.reset_stats();
    EXPECT_EQ(mesh.sp_comm().stats().total_calls(), 0);
  }
}

TEST(Mesh, ProductMustMatchTheWorld) {
  auto w = world();
  const int S = w->size();
  try {
    Mesh mesh(*w, 1, S, 2);
    ADD_FAILURE() << "no error for pp*dp*sp != world size";
  } catch (const InputError& e) {
    const std::string want = "parallel: pp*dp*sp = " + std::to_string(2 * S) +
                             " but the job runs on " + std::to_string(S) +
                             " processes (mpirun -np " + std::to_string(S) + ")";
    EXPECT_EQ(std::string(e.what()).rfind(want, 0), 0u) << e.what();
  }
  EXPECT_THROW(Mesh(*w, 0, S, 1), InputError);
  EXPECT_THROW(Mesh(*w, S, 1, -1), InputError);
  // The error came before any communication, and every rank can still talk.
  EXPECT_EQ(w->stats().total_calls(), 0);
  Mesh ok(*w, 1, S, 1);
  EXPECT_THROW(ok.comm("tp"), StrataError);
  ok.dp_comm().barrier();
}

}  // namespace
}  // namespace strata
