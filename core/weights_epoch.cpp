#include "core/weights_epoch.h"

namespace strata {

namespace {
uint64_t g_epoch = 1;
}

uint64_t weights_epoch() { return g_epoch; }
void bump_weights_epoch() { ++g_epoch; }

}  // namespace strata
