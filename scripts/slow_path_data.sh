# The slow-path rounds' data, made in parallel (sourced by scripts/slow_path_round{3,4,5,12}.sh, not run):
#   synth_round_data TRAIN   16 training shards under TRAIN (seeds TRAIN_SEED + 0..15, default 100-115, SHARD_EPS
#                            episodes each), validation
#                            ($W/val900: seed 900, VAL_EPS episodes) and held-out combinations ($W/held, HELD_EPS);
# waits for the training shards (their status in the "train data ready" stamp) and leaves the validation and
# held-out jobs running: their pids are VAL and HELD (wait for them before evaluating). Uses L (the lionfs CLI),
# W (the work folder, for the logs) and stamp.
synth_round_data() {
  local train=$1 pids=() i p rc=0
  for i in $(seq 0 15); do
    $L synth --out $train/shard_$(printf %02d $i) --seed $((${TRAIN_SEED:-100} + i)) --episodes $SHARD_EPS --split train > $W/synth_$i.log 2>&1 &
    pids+=($!)
  done
  $L synth --out $W/val900 --split val --episodes $VAL_EPS --seed 900 > $W/synth_val.log 2>&1 &
  VAL=$!
  $L synth --out $W/held --heldout --episodes $HELD_EPS > $W/synth_held.log 2>&1 &
  HELD=$!
  for p in "${pids[@]}"; do wait $p || rc=$?; done
  stamp "train data ready (rc $rc)"
}
