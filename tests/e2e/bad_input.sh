#!/usr/bin/env bash
# Every user-facing input of the strata CLI is checked: a bad job file, --set, flag, command,
# data shard or export option exits with code 2 and a message naming the file (with line and
# column), key or flag, and writes NOTHING (no run directory, no checkpoint, no output file).
# Also: `strata --help` and `strata <command> --help` exit 0 and describe their options.
#
# usage: bash tests/e2e/bad_input.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

prepare_corpus .

# A valid job; every case below breaks exactly one thing. Line numbers matter (asserted).
cat > job.yaml <<'EOF'
model:
  dim: 32
  n_layers: 2
  n_heads: 2
  n_kv_heads: 1
  ffn_dim: 64
data:
  train: data/train_000000.bin
  val: data/val_000000.bin
  seq_len: 32
train:
  steps: 3
  global_batch: 4
  micro_batch: 2
  threads: 2
  run_dir: runs/bad
EOF
# Sanity: the valid job parses (so the failures below are caused by the one change each makes).
run "$STRATA" train job.yaml --print-config
expect_exit 0 "valid job --print-config"
expect_stdout_contains "run_dir: runs/bad"
expect_absent runs
# A real checkpoint, for the eval/export cases.
run "$STRATA" train job.yaml --set train.steps=2 --set train.run_dir=good
expect_exit 0 "training the checkpoint for the eval/export cases"
expect_file good/checkpoints/latest
CKPT=good/checkpoints

# with_file NAME SED_EXPR: a copy of job.yaml with one edit.
with_file() { sed "$2" job.yaml > "$1"; }

BEFORE=""
# expect_rejected WHAT -- CMD...: exit 2, "strata: error:"/"strata:" message, nothing written.
expect_rejected() {
  local what=$1
  shift
  [[ "$1" == "--" ]] && shift
  BEFORE=$(tree_snapshot)
  run "$@"
  expect_exit 2 "$what"
  [[ -s "$E2E_OUT/stderr" ]] || fail "$what: no error message on stderr"
  expect_stderr_matches '^strata:' "$what"
  if [[ "$(tree_snapshot)" != "$BEFORE" ]]; then
    diff <(echo "$BEFORE") <(tree_snapshot) >&2 || true
    fail "$what: files were written or changed by a rejected command"
  fi
  expect_absent runs
}

# ---- job file ----------------------------------------------------------------------------------

with_file unknown_key.yaml 's/^  steps: 3$/  stepz: 3/'
expect_rejected "unknown key" -- "$STRATA" train unknown_key.yaml
expect_stderr_contains "unknown_key.yaml:12:3:" "unknown key names file:line:col"
expect_stderr_contains "unknown key 'train.stepz'"
expect_stderr_contains "(did you mean 'steps'?)"

with_file wrong_section.yaml 's/^  steps: 3$/  lr: 0.1/'
expect_rejected "key in the wrong section" -- "$STRATA" train wrong_section.yaml
expect_stderr_contains "wrong_section.yaml:12:3:"
expect_stderr_contains "did you mean 'optim.lr'?"

with_file wrong_type.yaml 's/^  steps: 3$/  steps: abc/'
expect_rejected "wrong type" -- "$STRATA" train wrong_type.yaml
expect_stderr_contains "wrong_type.yaml:12:3: train.steps: expected an integer, got 'abc'"

with_file float_for_int.yaml 's/^  steps: 3$/  steps: 1.0/'
expect_rejected "float for an integer" -- "$STRATA" train float_for_int.yaml
expect_stderr_contains "float_for_int.yaml:12:3: train.steps:"

with_file out_of_range.yaml 's/^  steps: 3$/  steps: 0/'
expect_rejected "out-of-range value" -- "$STRATA" train out_of_range.yaml
expect_stderr_contains "out_of_range.yaml:12:3: train.steps: expected a value >= 1, got 0"

{ cat job.yaml; printf 'optim:\n  name: adam\n'; } > bad_choice.yaml
expect_rejected "not an allowed word" -- "$STRATA" train bad_choice.yaml
expect_stderr_contains "bad_choice.yaml:18:3: optim.name: expected one of adamw|sgd, got 'adam'"
expect_stderr_contains "did you mean 'adamw'?"

with_file bad_model.yaml 's/^  n_heads: 2$/  n_heads: 3/'
expect_rejected "inconsistent model" -- "$STRATA" train bad_model.yaml
expect_stderr_contains "bad_model.yaml:4:3: model.n_heads:"

with_file duplicate.yaml 's/^  micro_batch: 2$/  steps: 4/'
expect_rejected "duplicate key" -- "$STRATA" train duplicate.yaml
expect_stderr_contains "duplicate.yaml:14:3: duplicate key 'train.steps' (first set at line 12)"

with_file syntax.yaml 's/^  steps: 3$/  steps: [3/'
expect_rejected "YAML syntax error" -- "$STRATA" train syntax.yaml
expect_stderr_matches 'syntax\.yaml:[0-9]+:[0-9]+: YAML syntax error' "syntax error names file:line:col"

printf 'train:\n  steps: 3\n---\ntrain:\n  steps: 4\n' > two_docs.yaml
expect_rejected "two YAML documents" -- "$STRATA" train two_docs.yaml
# (the position is that of the second document: its '---' line 3 or its first key, line 4)
expect_stderr_matches "two_docs\\.yaml:[34]:1: expected one YAML document, found 2"

with_file no_train.yaml '/^  train: data/d'
expect_rejected "data.train missing" -- "$STRATA" train no_train.yaml
expect_stderr_contains "no_train.yaml:7:1: data.train: expected the training token shards"

expect_rejected "missing job file" -- "$STRATA" train does_not_exist.yaml
expect_stderr_contains "cannot read job file 'does_not_exist.yaml'"

mkdir a_directory.yaml
expect_rejected "job file is a directory" -- "$STRATA" train a_directory.yaml
expect_stderr_contains "cannot read job file 'a_directory.yaml'"
rmdir a_directory.yaml

expect_rejected "two job files" -- "$STRATA" train job.yaml job.yaml
expect_stderr_contains "expected at most one job file"

# ---- --set ------------------------------------------------------------------------------------

expect_rejected "unknown --set key" -- "$STRATA" train job.yaml --set train.stepz=3
expect_stderr_contains "--set train.stepz=3: unknown key 'train.stepz' (did you mean 'train.steps'?)"

expect_rejected "malformed --set (no =)" -- "$STRATA" train job.yaml --set train.steps
expect_stderr_contains "--set train.steps: expected section.key=value"

expect_rejected "--set with a bad value" -- "$STRATA" train job.yaml --set train.steps=abc
expect_stderr_contains "--set train.steps=abc: expected an integer, got 'abc'"

expect_rejected "--set of a whole section" -- "$STRATA" train job.yaml --set train=5
expect_stderr_contains "--set train=5"

expect_rejected "--set without its value" -- "$STRATA" train job.yaml --set
expect_stderr_contains "'--set' needs a value"

# ---- cross-key rules, data --------------------------------------------------------------------

expect_rejected "global_batch not divisible" -- "$STRATA" train job.yaml --set train.global_batch=5
expect_stderr_contains "--set train.global_batch=5: expected a multiple of train.micro_batch"
expect_stderr_contains "got 5"

with_file indivisible.yaml 's/^  global_batch: 4$/  global_batch: 3/'
expect_rejected "global_batch not divisible (file)" -- "$STRATA" train indivisible.yaml
expect_stderr_contains "indivisible.yaml:13:3: train.global_batch: expected a multiple of"

expect_rejected "data.train pointing at nothing" -- "$STRATA" train job.yaml --set data.train=nothing/here
expect_stderr_contains "data spec 'nothing/here': no token shards found"

expect_rejected "data.val pointing at nothing" -- "$STRATA" train job.yaml --set data.val=no_val_data
expect_stderr_contains "data spec 'no_val_data': no token shards found"

mkdir bad
head -c 5000 data/train_000000.bin > bad/truncated.bin
expect_rejected "truncated token shard" -- "$STRATA" train job.yaml --set data.train=bad/truncated.bin
expect_stderr_contains "bad/truncated.bin: truncated"

head -c 100 data/train_000000.bin > bad/short.bin
expect_rejected "shard shorter than its header" -- "$STRATA" train job.yaml --set data.train=bad/short.bin
expect_stderr_contains "bad/short.bin: truncated"

cp data/train_000000.bin bad/magic.bin
printf '\x00\x00\x00\x00' | dd of=bad/magic.bin bs=1 seek=0 conv=notrunc status=none
expect_rejected "token shard with a bad magic" -- "$STRATA" train job.yaml --set data.train=bad/magic.bin
expect_stderr_contains "bad/magic.bin: bad magic"

expect_rejected "validation shard with a bad magic" -- "$STRATA" train job.yaml --set data.val=bad/magic.bin
expect_stderr_contains "bad/magic.bin: bad magic"

expect_rejected "token >= vocab_size" -- "$STRATA" train job.yaml --set model.vocab_size=16
expect_stderr_contains "data/train_000000.bin: token at index"

expect_rejected "sequence longer than every shard" -- "$STRATA" train job.yaml --set data.seq_len=10000000
expect_stderr_contains "data/train_000000.bin"
expect_stderr_contains "seq_len+1 = 10000001"

# checkpoint.resume naming no checkpoint: refused, exit 2, naming the path. The run directory
# must not be created: Trainer::run resumes before it writes anything.
BEFORE=$(tree_snapshot)
run "$STRATA" train job.yaml --set checkpoint.resume=no/such/checkpoint
expect_exit 2 "checkpoint.resume naming nothing"
expect_stderr_contains "checkpoint.resume: no checkpoint found at 'no/such/checkpoint'"
if [[ "$(tree_snapshot)" != "$BEFORE" ]]; then
  fail "a run refused for checkpoint.resume=no/such/checkpoint still wrote: " \
    "$(diff <(echo "$BEFORE") <(tree_snapshot) | grep '^>' | cut -d' ' -f2 | grep -vx '[.]' | tr '\n' ' ')"
fi

# ---- command line -----------------------------------------------------------------------------

expect_rejected "unknown option" -- "$STRATA" train job.yaml --bogus
expect_stderr_contains "strata train: unknown option '--bogus'"

expect_rejected "unknown option of eval" -- "$STRATA" eval --checkpoint x --steps 3
expect_stderr_contains "strata eval: unknown option '--steps'"

expect_rejected "unknown command" -- "$STRATA" frobnicate
expect_stderr_contains "unknown command 'frobnicate'"

expect_rejected "no command" -- "$STRATA"
expect_stderr_contains "usage: strata <command>"

expect_rejected "eval without --checkpoint" -- "$STRATA" eval
expect_stderr_contains "strata eval: --checkpoint PATH is required"

expect_rejected "eval of a missing checkpoint" -- "$STRATA" eval --checkpoint no/such/ckpt
expect_stderr_contains "no/such/ckpt"

expect_rejected "eval --batches not a number" -- "$STRATA" eval --checkpoint $CKPT --batches many
expect_stderr_contains "--batches: expected an integer, got 'many'"

expect_rejected "eval --batches 0" -- "$STRATA" eval --checkpoint $CKPT --batches 0
expect_stderr_contains "--batches"

expect_rejected "eval --set unknown key" -- "$STRATA" eval --checkpoint $CKPT --set train.eval_batchez=1
expect_stderr_contains "unknown key 'train.eval_batchez'"

expect_rejected "eval with data.val empty" -- "$STRATA" eval --checkpoint $CKPT --set data.val=
expect_stderr_contains "data.val"

expect_rejected "export --dtype f16" -- "$STRATA" export --format safetensors --checkpoint $CKPT --output m.safetensors --dtype f16
expect_stderr_contains "strata export: --dtype: expected f32 or bf16, got 'f16'"
expect_absent m.safetensors

expect_rejected "export --format gguf" -- "$STRATA" export --format gguf --checkpoint $CKPT --output m.gguf
expect_stderr_contains "--format"
expect_absent m.gguf

expect_rejected "export without --output" -- "$STRATA" export --checkpoint $CKPT
expect_stderr_contains "--output"

expect_rejected "export of a missing checkpoint" -- "$STRATA" export --checkpoint no/such/ckpt --output m.safetensors
expect_stderr_contains "no/such/ckpt"
expect_absent m.safetensors

expect_rejected "prepare-data without --input" -- "$STRATA" prepare-data --output out
expect_stderr_contains "--input"
expect_absent out

expect_rejected "prepare-data --val-fraction out of range" -- "$STRATA" prepare-data --input corpus --output out --val-fraction 1.5
expect_stderr_contains "--val-fraction"
expect_absent out

expect_rejected "prepare-data --version 3" -- "$STRATA" prepare-data --input corpus --output out --version 3
expect_stderr_contains "--version"
expect_absent out

# ---- help ---------------------------------------------------------------------------------------

BEFORE=$(tree_snapshot)
run "$STRATA" --help
expect_exit 0 "strata --help"
for c in train eval export prepare-data; do expect_stdout_contains "$c" "strata --help"; done

run "$STRATA" train --help
expect_exit 0 "strata train --help"
for o in --set --print-config; do expect_stdout_contains "$o" "train --help"; done

run "$STRATA" eval --help
expect_exit 0 "strata eval --help"
for o in --checkpoint --batches --set; do expect_stdout_contains "$o" "eval --help"; done

run "$STRATA" export --help
expect_exit 0 "strata export --help"
for o in --format --checkpoint --output --dtype bf16; do expect_stdout_contains "$o" "export --help"; done

run "$STRATA" prepare-data --help
expect_exit 0 "strata prepare-data --help"
for o in --input --output --val-fraction --version --shard-tokens; do
  expect_stdout_contains "$o" "prepare-data --help"
done
[[ "$(tree_snapshot)" == "$BEFORE" ]] || fail "--help wrote files"
