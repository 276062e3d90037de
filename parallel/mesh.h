#pragma once
// Mesh: the world split into pp x dp x sp axes. sp is innermost, then dp, then pp:
//   world rank = (pp_idx * dp + dp_idx) * sp + sp_idx
// so a sequence-parallel group (the chattiest: LASP-2 exchanges states every layer) holds
// consecutive ranks, which mpirun places on one node. Each axis has its own communicator, and so
// its own CommStats ("pp", "dp", "sp"), next to the world's.
#include <memory>
#include <string>
#include <string_view>

#include "parallel/comm.h"

namespace strata {

class Mesh {
 public:
  // Collective over `world`, which must outlive the mesh. Throws InputError before any
  // communication when pp*dp*sp != world.size() or an axis is < 1.
  Mesh(Comm& world, int pp, int dp, int sp);

  int pp() const { return pp_; }
  int dp() const { return dp_; }
  int sp() const { return sp_; }
  int pp_rank() const { return pp_idx_; }
  int dp_rank() const { return dp_idx_; }
  int sp_rank() const { return sp_idx_; }
  int world_rank() const { return world_.rank(); }
  int world_size() const { return world_.size(); }
  int rank_of(int pp_idx, int dp_idx, int sp_idx) const {
    return (pp_idx * dp_ + dp_idx) * sp_ + sp_idx;
  }

  Comm& world() { return world_; }
  Comm& pp_comm() { return *pp_comm_; }
  Comm& dp_comm() { return *dp_comm_; }
  Comm& sp_comm() { return *sp_comm_; }
  // "pp", "dp", "sp" or "world"; anything else is an internal error.
  Comm& comm(std::string_view axis);

  // "rank 5 (pp 1, dp 0, sp 1)" for log prefixes and error messages.
  std::string rank_name() const;
  // "pp 2 x dp 1 x sp 2 = 4 ranks"
  std::string layout() const;
  // One format_comm_stats line per communicator (world, pp, dp, sp), newline separated.
  std::string format_stats() const;
  void reset_stats();

 private:
  Comm& world_;
  int pp_, dp_, sp_;
  int pp_idx_, dp_idx_, sp_idx_;
  std::unique_ptr<Comm> pp_comm_, dp_comm_, sp_comm_;
};

}  // namespace strata
