#!/usr/bin/env bash
# Install (Debian packages) and start what the live tests need, when missing:
# redis-server, RabbitMQ, Python Celery 5.2.6 with its Redis/AMQP/msgpack/
# cryptography support, openssl, and the Python OpenTelemetry SDK
# (setup-python-otel.sh). Binds services to 127.0.0.1 only.
# Needs root (apt-get). Safe to run again.
set -euo pipefail
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v rabbitmq-server >/dev/null || need_apt+=(rabbitmq-server)
/usr/bin/python3 -c 'import celery, kombu, redis, amqp, cryptography, msgpack' 2>/dev/null \
  || need_apt+=(python3-celery python3-kombu python3-redis python3-amqp python3-cryptography python3-msgpack)
command -v openssl >/dev/null || need_apt+=(openssl)
# The dashboard's browser tests drive Debian's Chromium through playwright-core (never a downloaded browser).
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached
  for _ in $(seq 1 60); do rabbitmqctl -q status >/dev/null 2>&1 && break; sleep 1; done
fi
rabbitmqctl -q await_startup >/dev/null 2>&1 || true
# The OpenTelemetry SDK for the Python side of the tracing interop test (not in bookworm; see the script).
"$(dirname "$0")/setup-python-otel.sh"
echo "node $(node --version), $(redis-server --version | cut -d' ' -f3), python celery $(/usr/bin/python3 -c 'import celery; print(celery.__version__)')"
