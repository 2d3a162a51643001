#!/usr/bin/env bash
# Installs and configures what the tests and benchmarks need, idempotently, as root on Debian:
#   nginx, wrk, prometheus (Debian packages; tests start their own instances on private ports),
#   wal2json for PostgreSQL logical decoding, wal_level=logical, MariaDB ROW binlog.
# Safe to run again: it changes only what is missing and restarts a server only when it must.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }
need_pkgs=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx)
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ] || need_pkgs+=(prometheus)
command -v openssl >/dev/null || need_pkgs+=(openssl)  # proxy tests: a self-signed https upstream
pgver=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1 || true)
if [ -n "$pgver" ] && [ ! -f "/usr/lib/postgresql/$pgver/lib/wal2json.so" ]; then
  need_pkgs+=("postgresql-$pgver-wal2json")
fi
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# Debian starts the packaged nginx/prometheus services on install; the tests run their own.
pkill -x prometheus 2>/dev/null || true

# ---- PostgreSQL: running, with wal_level=logical for CDC
pg_start() { pg_ctlcluster --skip-systemctl-redirect "$pgver" main start 2>/dev/null || true; }
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
if [ -n "$pgver" ]; then
  pg_up || { log "starting PostgreSQL"; pg_start; }
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  level=$(psql -h 127.0.0.1 -U postgres -d postgres -Atc "show wal_level" 2>/dev/null || echo unknown)
  if [ "$level" != "logical" ]; then
    log "setting PostgreSQL wal_level=logical (was $level) and restarting it"
    psql -h 127.0.0.1 -U postgres -d postgres -qc "ALTER SYSTEM SET wal_level = logical" >/dev/null
    psql -h 127.0.0.1 -U postgres -d postgres -qc "ALTER SYSTEM SET max_slot_wal_keep_size = '2GB'" >/dev/null
    pg_ctlcluster --skip-systemctl-redirect "$pgver" main restart
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
fi

# ---- MariaDB: running, with ROW binlog for CDC
my_up() { mariadb -h 127.0.0.1 -uroot -e "select 1" >/dev/null 2>&1; }
my_start() { start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; }
cnf=/etc/mysql/conf.d/switchover.cnf
if [ -x /usr/sbin/mariadbd ]; then
  my_up || { log "starting MariaDB"; my_start; }
  for _ in $(seq 1 30); do my_up && break; sleep 1; done
  logbin=$(mariadb -h 127.0.0.1 -uroot -Nse "select @@log_bin, @@binlog_format" 2>/dev/null || echo "")
  if [ "$logbin" != "1	ROW" ]; then
    log "enabling MariaDB ROW binlog (was: ${logbin:-unknown}) and restarting it"
    mkdir -p /etc/mysql/conf.d
    cat > "$cnf" <<'CNF'
[mysqld]
log_bin = mysql-bin
binlog_format = ROW
binlog_row_image = FULL
server_id = 1
expire_logs_days = 1
local_infile = 1
CNF
    grep -q '^!includedir /etc/mysql/conf.d' /etc/mysql/my.cnf || printf '\n!includedir /etc/mysql/conf.d/\n' >> /etc/mysql/my.cnf
    mariadb -h 127.0.0.1 -uroot -e "shutdown" 2>/dev/null || true
    for _ in $(seq 1 30); do my_up || break; sleep 1; done
    sleep 1
    my_start
    for _ in $(seq 1 60); do my_up && break; sleep 1; done
  fi
fi
log "services ready"
