// The size-1 communicator (a single process is the layout dp=sp=pp=1 of the same code), the
// mesh over it, and World's choice between MPI and self. No MPI is initialised here.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "parallel/comm.h"
#include "parallel/mesh.h"
#include "parallel/mpi_env.h"
#include "parallel/self_comm.h"
#include "parallel/world.h"

namespace strata {
namespace {

std::vector<float> iota(int64_t n, float start) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

TEST(SelfComm, CollectivesAreIdentitiesOrCopies) {
  SelfComm c("dp");
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  EXPECT_STREQ(c.backend(), "self");
  EXPECT_EQ(c.describe(), "dp rank 0/1 (self)");

  std::vector<float> a = iota(5, 1.f);
  c.all_reduce_sum(a.data(), 5);
  EXPECT_EQ(a, iota(5, 1.f));
  c.iall_reduce_sum(a.data(), 5).wait();
  EXPECT_EQ(a, iota(5, 1.f));

  std::vector<float> out(5, -1.f);
  c.reduce_scatter_sum(a.data(), out.data(), 5);
  EXPECT_EQ(out, a);
  std::fill(out.begin(), out.end(), -1.f);
  c.ireduce_scatter_sum(a.data(), out.data(), 5).wait();
  EXPECT_EQ(out, a);

  std::fill(out.begin(), out.end(), -1.f);
  c.all_gather(a.data(), out.data(), 5);
  EXPECT_EQ(out, a);
  c.all_gather(out.data(), out.data(), 5);  // in place: rank 0's chunk is the whole buffer
  EXPECT_EQ(out, a);
  std::fill(out.begin(), out.end(), -1.f);
  c.iall_gather(a.data(), out.data(), 5).wait();
  EXPECT_EQ(out, a);

  c.broadcast(a.data(), 5, 0);
  EXPECT_EQ(a, iota(5, 1.f));
  c.barrier();

  double d[2] = {1.5, -2.0};
  c.all_reduce_sum_double(d, 2);
  c.all_reduce_max_double(d, 2);
  EXPECT_EQ(d[0], 1.5);
  EXPECT_EQ(d[1], -2.0);
  int64_t k[1] = {int64_t{1} << 60};
  c.all_reduce_sum_int64(k, 1);
  c.all_reduce_max_int64(k, 1);
  EXPECT_EQ(k[0], int64_t{1} << 60);
}

TEST(SelfComm, ArgumentsAreCheckedAsOnAnyBackend) {
  SelfComm c;
  std::vector<float> a(4);
  EXPECT_THROW(c.broadcast(a.data(), 4, 1), StrataError);  // root out of range
  EXPECT_THROW(c.send(a.data(), 4, 1, 0), StrataError);    // destination out of range
  EXPECT_THROW(c.all_reduce_sum(a.data(), -1), StrataError);
  EXPECT_THROW(c.reduce_scatter_sum(a.data(), a.data() + 1, 2), StrataError);  // overlap
}

TEST(SelfComm, MessagesToSelfAreBufferedInOrderPerTag) {
  SelfComm c;
  const std::vector<float> m1 = iota(3, 10.f), m2 = iota(3, 20.f), m3 = iota(2, 30.f);
  c.send(m1.data(), 3, 0, 1);
  c.send(m2.data(), 3, 0, 1);
  c.isend(m3.data(), 2, 0, 2).wait();
  std::vector<float> in(3);
  std::vector<float> in2(2);
  c.recv(in2.data(), 2, 0, 2);  // tags are separate queues
  EXPECT_EQ(in2, m3);
  c.recv(in.data(), 3, 0, 1);
  EXPECT_EQ(in, m1);
  c.recv(in.data(), 3, 0, 1);
  EXPECT_EQ(in, m2);

  // A receive posted before its send completes once the send arrives.
  CommHandle h = c.irecv(in.data(), 3, 0, 4);
  EXPECT_FALSE(h.test());
  c.send(m1.data(), 3, 0, 4);
  h.wait();
  EXPECT_EQ(in, m1);

  c.send_recv(m2.data(), 3, 0, in.data(), 3, 0, 5);
  EXPECT_EQ(in, m2);

  // What would hang under MPI is an error here.
  EXPECT_THROW(c.recv(in.data(), 3, 0, 9), StrataError);
  c.send(m3.data(), 2, 0, 6);
  EXPECT_THROW(c.recv(in.data(), 3, 0, 6), StrataError);  // length mismatch
}

TEST(SelfComm, CountsLikeAnyBackend) {
  SelfComm c("sp");
  std::vector<float> full(8), shard(8);
  c.all_reduce_sum(full.data(), 8);
  c.reduce_scatter_sum(full.data(), shard.data(), 8);
  c.all_gather(shard.data(), full.data(), 8);
  const CommStats& s = c.stats();
  EXPECT_EQ(s.axis, "sp");
  EXPECT_EQ(s[CommOp::all_reduce].calls, 1);
  EXPECT_EQ(s[CommOp::all_reduce].bytes, 2 * 8 * 4);
  EXPECT_EQ(s[CommOp::reduce_scatter].bytes + s[CommOp::all_gather].bytes,
            s[CommOp::all_reduce].bytes);
  c.send(full.data(), 3, 0, 0);
  c.recv(full.data(), 3, 0, 0);
  c.barrier();
  EXPECT_EQ(s[CommOp::send].bytes, 12);
  EXPECT_EQ(s[CommOp::recv].bytes, 12);
  EXPECT_EQ(s.total_calls(), 6);
  EXPECT_EQ(format_comm_stats(s),
            "sp: all_reduce 1 call 64B, reduce_scatter 1 call 32B, all_gather 1 call 32B, "
            "send 1 call 12B, recv 1 call 12B, barrier 1 call 0B");
  c.reset_stats();
  EXPECT_EQ(s.total_bytes(), 0);
}

TEST(SelfComm, Split) {
  SelfComm c;
  auto sub = c.split(3, 0, "dp");
  ASSERT_NE(sub, nullptr);
  EXPECT_EQ(sub->size(), 1);
  EXPECT_EQ(sub->axis(), "dp");
  EXPECT_EQ(c.split(-1, 0, "none"), nullptr);
}

TEST(SelfComm, UnwaitedHandlesAreHarmless) {
  SelfComm c;
  std::vector<float> a(4, 2.f);
  { CommHandle h = c.iall_reduce_sum(a.data(), 4); }
  CommHandle h;
  EXPECT_TRUE(h.done());
  h = c.iall_reduce_sum(a.data(), 4);
  h.wait();
  EXPECT_EQ(a[3], 2.f);
}

TEST(Mesh, OneProcessIsTheLayoutOneByOneByOne) {
  SelfComm world;
  Mesh mesh(world, 1, 1, 1);
  EXPECT_EQ(mesh.dp(), 1);
  EXPECT_EQ(mesh.dp_rank(), 0);
  EXPECT_EQ(mesh.dp_comm().size(), 1);
  EXPECT_EQ(mesh.sp_comm().axis(), "sp");
  EXPECT_EQ(mesh.pp_comm().axis(), "pp");
  EXPECT_EQ(&mesh.comm("world"), &world);
  EXPECT_EQ(mesh.rank_name(), "rank 0 (pp 0, dp 0, sp 0)");
  EXPECT_EQ(mesh.layout(), "pp 1 x dp 1 x sp 1 = 1 rank");
  float x = 3.f;
  mesh.comm("dp").all_reduce_sum(&x, 1);
  EXPECT_EQ(x, 3.f);
  EXPECT_EQ(mesh.format_stats(), "world: none\npp: none\ndp: all_reduce 1 call 8B\nsp: none");
}

TEST(Mesh, ProductMustMatchTheWorld) {
  SelfComm world;
  try {
    Mesh mesh(world, 1, 2, 2);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "parallel: pp*dp*sp = 4 but the job runs on 1 processes (mpirun -np 1); launch 4 "
              "processes or change parallel.pp/dp/sp");
  }
  EXPECT_THROW(Mesh(world, 1, 0, 1), InputError);
}

// Environment variables a launcher sets; cleared so the test sees a plain process.
const char* const kLauncherVars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK",
                                     "SLURM_NTASKS"};

TEST(World, APlainProcessRunsOnSelfWithoutMpi) {
  for (const char* v : kLauncherVars) unsetenv(v);
  EXPECT_FALSE(launched_under_mpi());
  World world(nullptr, nullptr);
  EXPECT_FALSE(world.uses_mpi());
  EXPECT_STREQ(world.comm().backend(), "self");
  EXPECT_EQ(world.size(), 1);
  EXPECT_EQ(world.local_size(), 1);
  EXPECT_EQ(world.default_threads_per_rank(), affinity_cpu_count());
  EXPECT_GE(world.default_threads_per_rank(), 1);
  for (const char* v : kLauncherVars) {
    setenv(v, "2", 1);
    EXPECT_TRUE(launched_under_mpi()) << v;
    unsetenv(v);
  }
  setenv("SLURM_NTASKS", "", 1);  // set but empty counts as unset
  EXPECT_FALSE(launched_under_mpi());
  unsetenv("SLURM_NTASKS");
}

}  // namespace
}  // namespace strata
