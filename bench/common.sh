# Shared by the scripts of bench/ (sourced from the repository root): tools, release builds, a
# work folder whose processes (PIDS) are stopped and which is removed on exit, the nginx upstream.

need() { # command, Debian package
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2"
  if ! apt-get install -y -qq "$2" >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
  fi
}
command -v curl >/dev/null 2>&1 || need curl curl

# Builds mca and the baseline in release mode; sets MCA and BASELINE.
build_servers() {
  echo "building (release): mca and the baseline"
  cargo build --release --quiet -p mca-cli
  cargo build --release --quiet --manifest-path bench/baseline/Cargo.toml --target-dir target
  MCA=${MCA:-$PWD/target/release/mca} # MCA=path/to/another/mca compares another build
  BASELINE=$PWD/target/release/mca-bench-baseline
}

WORK=$(mktemp -d /tmp/mca-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# nginx (installed if missing) answering every /v1/customers request on 127.0.0.1:UP_PORT with bench/customer.json
# (one worker, keep-alive, no access log); sets NGINX_PID.
start_nginx() {
  need nginx nginx-light
  local nginx
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  mkdir -p "$WORK/nginx/logs"
  cp bench/customer.json "$WORK/nginx/customer.json"
  chmod 755 "$WORK" "$WORK/nginx" # nginx's workers may run as another user
  chmod 644 "$WORK/nginx/customer.json"
  cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path $WORK/nginx/tmp;
  proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp;
  uwsgi_temp_path $WORK/nginx/tmp;
  scgi_temp_path $WORK/nginx/tmp;
  server {
    listen 127.0.0.1:$UP_PORT;
    location = /v1/customers {
      default_type application/json;
      alias $WORK/nginx/customer.json;
    }
  }
}
EOF
  "$nginx" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx/logs/stderr" &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
}
