#!/usr/bin/env bash
# Starts, on this machine, each service the test suite talks to that does not answer yet:
# PostgreSQL, MariaDB, Redis and RabbitMQ, on their default loopback ports.
# A service that cannot be started here is reported and left alone: the tests that need it
# then skip locally, and fail under CI=true.
set -u

answers() {  # host port
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() {  # name port seconds
    local i
    for ((i = 0; i < $3 * 4; i++)); do
        answers 127.0.0.1 "$2" && { echo "services: $1 is up on :$2"; return 0; }
        sleep 0.25
    done
    echo "services: $1 did not come up on :$2 within $3 s" >&2
    return 1
}

start() {  # name port seconds command...
    local name=$1 port=$2 seconds=$3
    shift 3
    if answers 127.0.0.1 "$port"; then
        return 0
    fi
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "services: $name is not running and $1 is not installed here; its tests will not run" >&2
        return 0
    fi
    echo "services: starting $name"
    "$@" >/dev/null 2>&1 || echo "services: starting $name failed" >&2
    wait_for "$name" "$port" "$seconds" || true
}

start PostgreSQL 5432 30 pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql 2>/dev/null | head -n 1)" main start
start MariaDB 3306 30 start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
start Redis 6379 15 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
start RabbitMQ 5672 90 rabbitmq-server -detached
exit 0
