#include "parallel/mesh.h"

#include "core/error.h"

namespace strata {

Mesh::Mesh(Comm& world, int pp, int dp, int sp) : world_(world), pp_(pp), dp_(dp), sp_(sp) {
  if (pp < 1 || dp < 1 || sp < 1)
    throw InputError("parallel: pp, dp and sp must be at least 1 (got pp=" + std::to_string(pp) +
                     ", dp=" + std::to_string(dp) + ", sp=" + std::to_string(sp) + ")");
  const int64_t product = static_cast<int64_t>(pp) * dp * sp;
  if (product != world.size())
    throw InputError("parallel: pp*dp*sp = " + std::to_string(product) + " but the job runs on " +
                     std::to_string(world.size()) + " processes (mpirun -np " +
                     std::to_string(world.size()) + "); launch " + std::to_string(product) +
                     " processes or change parallel.pp/dp/sp");
  const int r = world.rank();
  sp_idx_ = r % sp;
  dp_idx_ = (r / sp) % dp;
  pp_idx_ = r / (sp * dp);
  // Each split is collective over the world: every rank makes the three calls in this order.
  // color = the indices on the other axes; key = the index on this axis.
  sp_comm_ = world.split(pp_idx_ * dp + dp_idx_, sp_idx_, "sp");
  dp_comm_ = world.split(pp_idx_ * sp + sp_idx_, dp_idx_, "dp");
  pp_comm_ = world.split(dp_idx_ * sp + sp_idx_, pp_idx_, "pp");
  STRATA_CHECK(sp_comm_ && dp_comm_ && pp_comm_, "a mesh axis split returned no communicator");
  STRATA_CHECK(sp_comm_->size() == sp && sp_comm_->rank() == sp_idx_, "sp split");
  STRATA_CHECK(dp_comm_->size() == dp && dp_comm_->rank() == dp_idx_, "dp split");
  STRATA_CHECK(pp_comm_->size() == pp && pp_comm_->rank() == pp_idx_, "pp split");
}

Comm& Mesh::comm(std::string_view axis) {
  if (axis == "pp") return *pp_comm_;
  if (axis == "dp") return *dp_comm_;
  if (axis == "sp") return *sp_comm_;
  if (axis == "world") return world_;
  STRATA_CHECK(false, "unknown mesh axis '" + std::string(axis) + "' (pp, dp, sp or world)");
  return world_;  // not reached
}

std::string Mesh::rank_name() const {
  return "rank " + std::to_string(world_.rank()) + " (pp " + std::to_string(pp_idx_) + ", dp " +
         std::to_string(dp_idx_) + ", sp " + std::to_string(sp_idx_) + ")";
}

std::string Mesh::layout() const {
  return "pp " + std::to_string(pp_) + " x dp " + std::to_string(dp_) + " x sp " +
         std::to_string(sp_) + " = " + std::to_string(world_.size()) +
         (world_.size() == 1 ? " rank" : " ranks");
}

std::string Mesh::format_stats() const {
  return format_comm_stats(world_.stats()) + "\n" + format_comm_stats(pp_comm_->stats()) + "\n" +
         format_comm_stats(dp_comm_->stats()) + "\n" + format_comm_stats(sp_comm_->stats());
}

void Mesh::reset_stats() {
  world_.reset_stats();
  pp_comm_->reset_stats();
  dp_comm_->reset_stats();
  sp_comm_->reset_stats();
}

}  // namespace strata
