#!/usr/bin/env bash
# The main job end to end: train on a real log, evaluate, export, start the
# development server on 127.0.0.1, ask it for recommendations, stop it.
# Called by `make demo`; DATASET is ml-100k, beauty, or a path to a log.
set -euo pipefail

VENV=${VENV:-.venv}
DATASET=${DATASET:-ml-100k}
DATA_ROOT=${DATA_ROOT:-$(bash "$(dirname "$0")/data_root.sh")}
BIN="$VENV/bin"

case "$DATASET" in
  ml-100k) DATA="$DATA_ROOT/ml-100k/u.data"; PRESET=movielens; EPOCHS=${EPOCHS:-30} ;;
  beauty)  DATA="$DATA_ROOT/beauty/beauty.txt"; PRESET=beauty; EPOCHS=${EPOCHS:-5} ;;
  *)       DATA="$DATASET"; PRESET=""; EPOCHS=${EPOCHS:-20} ;;
esac
if [[ ! -f "$DATA" ]]; then
  echo "Dataset file not found: $DATA (set DATA_ROOT or DATASET to a log file)." >&2
  exit 1
fi

RUN_DIR="runs/$(basename "$DATASET" | sed 's/[^A-Za-z0-9._-]/_/g')-$(date +%Y%m%d-%H%M%S)"
EXPORT_DIR="$PWD/$RUN_DIR/export"
echo "== Training on $DATA (run directory $RUN_DIR)"
"$BIN/bert4seq-train" --data="$DATA" --model_dir="$RUN_DIR" \
  --export_dir="$EXPORT_DIR" --epochs="$EPOCHS" ${PRESET:+--preset=$PRESET}

# Free ports on the loopback interface for gRPC and REST.
read -r GRPC_PORT REST_PORT < <("$BIN/python" - <<'PY'
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))
PY
)

echo "== Starting bert4seq-serve on 127.0.0.1:$GRPC_PORT (gRPC) and :$REST_PORT (REST)"
"$BIN/bert4seq-serve" --host=127.0.0.1 --port="$GRPC_PORT" \
  --rest_api_port="$REST_PORT" --model_name=bert4seq \
  --model_base_path="$EXPORT_DIR" &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true' EXIT

# The history of the first user in the log, oldest first (last 10 items).
ITEMS=$("$BIN/python" - "$RUN_DIR" <<'PY'
import sys
from bert4seq.data.prepare import PreparedData
data = PreparedData.load(sys.argv[1] + "/data")
print(",".join(data.vocabulary.decode(data.sequences[0][-10:])))
PY
)
echo "== History of user $("$BIN/python" -c "
from bert4seq.data.prepare import PreparedData
print(PreparedData.load('$RUN_DIR/data').user_ids[0])"): $ITEMS"

for attempt in $(seq 1 60); do
  if "$BIN/bert4seq-recommend" --server="127.0.0.1:$GRPC_PORT" \
      --model_name=bert4seq --items="$ITEMS" --k=10 > "$RUN_DIR/recommendations.tsv" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "bert4seq-serve exited before it returned a recommendation; see its log above." >&2
    exit 1
  fi
  sleep 1
done
echo "== Top 10 recommendations over gRPC (item id, score)"
cat "$RUN_DIR/recommendations.tsv"
[[ -s "$RUN_DIR/recommendations.tsv" ]] || { echo "The server returned no recommendations." >&2; exit 1; }

echo "== Metrics: $RUN_DIR/metrics.json; SavedModel: $EXPORT_DIR"
