# PostgreSQL 15 primary (127.0.0.1:25432) + streaming hot standby (127.0.0.1:25433): the
# test stand-in for a SQL Server AlwaysOn primary + readable secondary (infra-notes §1).
# Sourced by scripts/rig/services.sh; defines pg_up / pg_down and exports the connection env.
# pg_up reuses a rig that is already answering; pg_down stops only what this pg_up started
# (HISX_PG_RIG_STARTED=1).
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
HISX_PG_PRIMARY_PORT=${HISX_PG_PRIMARY_PORT:-25432}
HISX_PG_STANDBY_PORT=${HISX_PG_STANDBY_PORT:-25433}

_pg_base() { echo "${HISX_RIG:-$PWD/.rig}/pg"; }
_pg_as() { runuser -u postgres -- "$@"; }
_pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -t 1; }

_pg_export() {
  local odbc="Driver={PostgreSQL Unicode};Server=127.0.0.1;Database=postgres;UID=postgres;PWD=x;BoolsAsChar=0;UseDeclareFetch=1;Fetch=10000;"
  export HISX_PG_RIG_DIR; HISX_PG_RIG_DIR=$(_pg_base)
  export HISX_PG_BIN=$PG_BIN HISX_PG_PRIMARY_PORT HISX_PG_STANDBY_PORT
  export HISX_PG_PRIMARY_URL="postgresql+psycopg://postgres@127.0.0.1:$HISX_PG_PRIMARY_PORT/postgres"
  export HISX_PG_STANDBY_URL="postgresql+psycopg://postgres@127.0.0.1:$HISX_PG_STANDBY_PORT/postgres"
  export HISX_PG_PRIMARY_ODBC="${odbc}Port=$HISX_PG_PRIMARY_PORT;"
  export HISX_PG_STANDBY_ODBC="${odbc}Port=$HISX_PG_STANDBY_PORT;"
}

pg_up() {
  _pg_export
  if _pg_ready "$HISX_PG_PRIMARY_PORT" && _pg_ready "$HISX_PG_STANDBY_PORT"; then
    echo "rig pg: reusing primary :$HISX_PG_PRIMARY_PORT + standby :$HISX_PG_STANDBY_PORT"
    export HISX_PG_RIG_STARTED=0
    return 0
  fi
  local base pri sby
  base=$(_pg_base); pri=$base/primary; sby=$base/standby
  if _pg_ready "$HISX_PG_PRIMARY_PORT" && [ -f "$sby/standby.signal" ]; then
    # primary up, standby stopped (a failover drill): restart it, never wipe a live rig
    _pg_as "$PG_BIN/pg_ctl" -D "$sby" -l "$base/standby.log" -w start >/dev/null
    echo "rig pg: reusing primary, restarted standby"
    export HISX_PG_RIG_STARTED=0
    return 0
  fi
  if [ "${HISX_PG_RIG_KEEP:-0}" = 1 ] && [ -f "$pri/PG_VERSION" ] && [ -f "$sby/standby.signal" ]; then
    # a kept rig (make bench: the cached city sources live in it): start it as it was
    for d in "$pri" "$sby"; do
      [ -f "$d/postmaster.pid" ] && _pg_as "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1
    done
    _pg_as "$PG_BIN/pg_ctl" -D "$pri" -l "$base/primary.log" -w start >/dev/null
    _pg_as "$PG_BIN/pg_ctl" -D "$sby" -l "$base/standby.log" -w start >/dev/null
    export HISX_PG_RIG_STARTED=1
    echo "rig pg: restarted the kept primary :$HISX_PG_PRIMARY_PORT + standby :$HISX_PG_STANDBY_PORT under $base"
    return 0
  fi
  for d in "$sby" "$pri"; do  # leftovers of a crashed run
    [ -f "$d/postmaster.pid" ] && _pg_as "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1
  done
  rm -rf "$base" && mkdir -p "$base" && chown postgres:postgres "$base"
  _pg_as "$PG_BIN/initdb" -D "$pri" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    --data-checksums >/dev/null
  cat >> "$pri/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $HISX_PG_PRIMARY_PORT
unix_socket_directories = '$base'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
wal_keep_size = '256MB'
fsync = off
CONF
  _pg_as "$PG_BIN/pg_ctl" -D "$pri" -l "$base/primary.log" -w start >/dev/null
  _pg_as "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$HISX_PG_PRIMARY_PORT" -U postgres -D "$sby" \
    -R -X stream -c fast -C -S standby1
  echo "port = $HISX_PG_STANDBY_PORT" >> "$sby/postgresql.conf"
  _pg_as "$PG_BIN/pg_ctl" -D "$sby" -l "$base/standby.log" -w start >/dev/null
  export HISX_PG_RIG_STARTED=1
  echo "rig pg: primary :$HISX_PG_PRIMARY_PORT + standby :$HISX_PG_STANDBY_PORT under $base"
}

pg_down() {
  [ "${HISX_PG_RIG_STARTED:-0}" = 1 ] || return 0
  local base; base=$(_pg_base)
  for d in "$base/standby" "$base/primary"; do
    [ -f "$d/postmaster.pid" ] && _pg_as "$PG_BIN/pg_ctl" -D "$d" -m fast -w stop >/dev/null
  done
  export HISX_PG_RIG_STARTED=0
  return 0
}
