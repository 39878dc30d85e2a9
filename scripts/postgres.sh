#!/usr/bin/env bash
# A throw-away PostgreSQL cluster on 127.0.0.1 for tests (no system service).
#   postgres.sh start DIR   -> prints the SQLAlchemy URL
#   postgres.sh stop DIR
set -euo pipefail
action=$1 dir=$2
find_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}
bindir=$(find_bindir || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "installing PostgreSQL from Debian packages" >&2
  if [ "$(id -u)" -ne 0 ]; then echo "PostgreSQL is missing and we are not root: install 'postgresql'" >&2; exit 1; fi
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bindir=$(find_bindir)
fi
# initdb refuses to run as root: run the server as the postgres user when we are root.
run() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$action" in
  start)
    port=${PGPORT_TEST:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    run "$bindir/initdb" -D "$dir/data" -A trust -U scenematch >"$dir/initdb.log" 2>&1
    run "$bindir/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
      -l "$dir/log" -w start >&2
    echo "postgresql+psycopg://scenematch@127.0.0.1:$port/postgres"
    ;;
  stop)
    run "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
