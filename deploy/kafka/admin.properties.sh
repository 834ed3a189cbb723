#!/usr/bin/env bash
# Run a Kafka CLI tool as the broker's super user `admin` (SASL/PLAIN on the INTERNAL listener).
# Used by the kafka service's health check and by operators:
#   docker compose exec kafka bash /opt/riskwatch/admin.properties.sh /opt/kafka/bin/kafka-acls.sh --list
# The password comes from $ADMIN_PASSWORD (set from KAFKA_ADMIN_PASSWORD in docker-compose.yml).
set -euo pipefail
: "${ADMIN_PASSWORD:?ADMIN_PASSWORD is not set}"
props="$(mktemp)"
trap 'rm -f "$props"' EXIT
cat > "$props" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="${ADMIN_PASSWORD}";
PROPS
tool="$1"; shift
exec "$tool" --bootstrap-server "${KAFKA_ADMIN_BOOTSTRAP:-kafka:9092}" --command-config "$props" "$@"
