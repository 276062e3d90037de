#pragma once
// The passes a parameter unit (embedding, block, head) takes part in. The model announces each
// one at the unit's boundaries (models/model.h BlockHooks); what runs around it (ZeRO's gathers
// and reductions, stop polls) decides by pass what it needs: a forward needs parameters; a full
// backward parameters and gradients; the zero-bubble split's input-gradient pass parameters and
// gradients (norm gains), its weight-gradient pass gradients only.
namespace strata {

enum class UnitPass { forward, backward, backward_input, backward_weight };

inline const char* unit_pass_name(UnitPass p) {
  switch (p) {
    case UnitPass::forward:
      return "forward";
    case UnitPass::backward:
      return "backward";
    case UnitPass::backward_input:
      return "input-gradient backward";
    case UnitPass::backward_weight:
      return "weight-gradient backward";
  }
  return "?";
}

}  // namespace strata
